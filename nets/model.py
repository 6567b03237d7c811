"""A sequential model over one flat parameter buffer and one flat gradient buffer."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from nets.kernels import losses as kl
from nets.layers import Layer


class Model:
    """Layers applied in order. `params`/`grads` are flat buffers; each layer holds views into them.

    `head` says what `predict` returns: "logsoftmax" (classifier log-probabilities) or None (raw output).
    `arch` is the JSON-able description that `nets.load` uses to rebuild the model.
    """

    def __init__(self, layers: Sequence[Layer], input_shape: tuple[int, ...], *,
                 dtype=np.float32, seed: int = 0, head: str | None = None, arch: dict | None = None):
        self.layers = list(layers)
        self.input_shape = tuple(input_shape)
        self.dtype = np.dtype(dtype)
        self.head = head
        self.arch = arch or {}
        shape = self.input_shape
        for layer in self.layers:
            layer.dtype = self.dtype
            shape = layer.build(shape)
        self.output_shape = shape
        sizes = [int(np.prod(s)) for layer in self.layers for _, s, _ in layer.specs]
        self.params = np.zeros(sum(sizes), self.dtype)
        self.grads = np.zeros(sum(sizes), self.dtype)
        self._bind()
        if self.layers:
            self.layers[0].need_dx = False
        rng = np.random.default_rng(seed)
        for layer in self.layers:
            layer.init(rng)

    def _bind(self) -> None:
        off = 0
        for layer in self.layers:
            start = off
            for name, shape, _ in layer.specs:
                n = int(np.prod(shape))
                layer.p[name] = self.params[off:off + n].reshape(shape)
                layer.g[name] = self.grads[off:off + n].reshape(shape)
                off += n
            layer.p_all = self.params[start:off]     # the layer's parameters, in declaration order
            layer.g_all = self.grads[start:off]

    @property
    def n_params(self) -> int:
        return self.params.size

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dy: np.ndarray) -> None:
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
            if dy is None:
                break

    def predict(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Outputs for `x` (already preprocessed, shape (N,) + input_shape), in batches."""
        outs = []
        for i in range(0, len(x), batch_size):
            xb = np.ascontiguousarray(x[i:i + batch_size], dtype=self.dtype)
            out = self.forward(xb)
            if self.head == "logsoftmax":
                logp = np.empty_like(out)
                kl.logsoftmax_nll_forward(logp, out, np.zeros(len(out), np.int64))
                out = logp
            outs.append(out.copy())
        if not outs:
            return np.zeros((0,) + tuple(self.output_shape), self.dtype)
        return np.concatenate(outs)
