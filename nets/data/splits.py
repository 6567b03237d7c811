"""Training/validation splits and batching: raw samples stay compact (uint8 for images) and are
converted to the model's float dtype one batch at a time, into reused buffers."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit


@njit(cache=True)
def gather_scale(out, src, idx, scale, shift):
    # out: (B, D) float  src: (N, D) any numeric  idx: (B,) -> out[i] = src[idx[i]] * scale + shift
    B, D = out.shape
    s = out.dtype.type(scale)
    t = out.dtype.type(shift)
    for i in range(B):
        r = idx[i]
        for d in range(D):
            out[i, d] = src[r, d] * s + t


@dataclass(eq=False)
class Split:
    """Samples `x` (N, ...) and labels `y` (N,), or `y=None` when the target is the input itself
    (autoencoder). A batch is x[idx] * scale + shift, reshaped to (B,) + sample_shape."""

    x: np.ndarray
    y: np.ndarray | None
    sample_shape: tuple[int, ...]
    scale: float = 1.0
    shift: float = 0.0

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, idx: np.ndarray, dtype=np.float32, out: np.ndarray | None = None):
        B = len(idx)
        flat = self.x.reshape(len(self.x), -1)
        if out is None or out.shape[0] != B:
            out = np.empty((B, flat.shape[1]), dtype)
        gather_scale(out, flat, idx, self.scale, self.shift)
        xb = out.reshape((B,) + self.sample_shape)
        if self.y is None:
            return xb, out
        return xb, self.y[idx]

    def inputs(self, dtype=np.float32) -> np.ndarray:
        """All samples, preprocessed (for evaluation and prediction)."""
        return self.batch(np.arange(len(self), dtype=np.int64), dtype)[0]

    def subset(self, n: int) -> "Split":
        return Split(self.x[:n], None if self.y is None else self.y[:n], self.sample_shape,
                     self.scale, self.shift)


@dataclass(eq=False)
class Data:
    """What a recipe's `load_data` returns: the splits plus where they came from."""

    train: Split
    val: Split
    source: str = ""
    info: dict | None = None
