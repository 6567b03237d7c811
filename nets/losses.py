"""Losses as forward(pred, target) -> float and backward() -> dpred (buffers reused)."""
from __future__ import annotations

import numpy as np

from nets.kernels import losses as kl
from nets.layers import make_room


class Loss:
    def __init__(self) -> None:
        self._bufs: dict[tuple, np.ndarray] = {}

    def _buf(self, key: str, like: np.ndarray) -> np.ndarray:
        k = (key, like.shape, like.dtype.str)
        b = self._bufs.get(k)
        if b is None:
            make_room(self._bufs)
            b = self._bufs[k] = np.empty_like(like)
        return b


class NLLLoss(Loss):
    """Log-softmax + negative log-likelihood, fused; takes logits and integer labels."""

    name = "nll"

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        self.logp = self._buf("logp", logits)
        self.labels = labels
        return kl.logsoftmax_nll_forward(self.logp, logits, labels)

    def backward(self) -> np.ndarray:
        d = self._buf("d", self.logp)
        kl.logsoftmax_nll_backward(d, self.logp, self.labels)
        return d


class MSELoss(Loss):
    """Mean squared error over all elements (BigDL MSECriterion, torch MSELoss)."""

    name = "mse"

    def forward(self, pred: np.ndarray, target: np.ndarray) -> float:
        # the gradient is computed in the same pass (one read of pred and target instead of two)
        self.pred, self.target = pred, target
        self.d = self._buf("d", pred)
        return kl.mse_forward_grad(self.d, pred, target)

    def backward(self) -> np.ndarray:
        return self.d


class SeqNLLLoss(Loss):
    """Softmax cross-entropy of next-token logits, ignoring padding (target 0); the mean over real tokens.

    logits: (B, T, V) with targets (B, T), or packed (N, V) rows (a TimeLinear with a SeqMask) whose order
    is the row-major order of the non-padding targets. The gradient is zero at padding positions.
    Validation reports cross-entropy per real word (`val_loss`) and perplexity (`val_ppl`).
    """

    name = "seq_nll"
    pad = 0
    eval_batch_size = 64         # sequences per validation batch (the logits are N x vocabulary)

    def forward(self, logits: np.ndarray, targets: np.ndarray) -> float:
        t = np.asarray(targets).reshape(-1)
        rows = np.flatnonzero(t != self.pad)
        self.full_shape = logits.shape if logits.ndim == 3 else None
        V = self.V = logits.shape[-1]
        self.dtype = logits.dtype
        if logits.ndim == 3:
            if logits.shape[:2] != np.shape(targets):
                raise ValueError(f"logits {logits.shape} do not match targets {np.shape(targets)}")
            z = self._buf2("z", (len(rows), V), logits.dtype)
            np.take(logits.reshape(-1, V), rows, axis=0, out=z)
        elif logits.shape[0] != len(rows):
            raise ValueError(f"{logits.shape[0]} packed rows for {len(rows)} non-padding targets")
        else:
            z = logits
        self.rows, self.tgt = rows, t[rows].astype(np.int64)
        N = len(rows)
        self.n = N
        if N == 0:
            return 0.0
        # one fused pass per row: the loss, and its gradient (softmax - onehot) / N for backward
        e = self.e = self._buf2("e", z.shape, z.dtype)
        total = kl.softmax_nll_rows(e, np.ascontiguousarray(z), self.tgt, 1.0 / N)
        return total / N

    def backward(self) -> np.ndarray:
        N, e = self.n, getattr(self, "e", None)
        if self.full_shape is None:
            return e if N else np.zeros((0, self.V), self.dtype)
        d = self._buf2("d", self.full_shape, self.dtype)
        d.fill(0)
        if N:
            d.reshape(-1, self.full_shape[-1])[self.rows] = e
        return d

    def _buf2(self, key: str, shape: tuple, dtype) -> np.ndarray:
        """A view of one growing buffer per key (the number of real tokens changes every batch)."""
        dtype, n = np.dtype(dtype), int(np.prod(shape))
        cap = self._bufs.get(key)
        if cap is None or cap.size < n or cap.dtype != dtype:
            cap = self._bufs[key] = np.empty(max(n, 1), dtype)
        return cap[:n].reshape(shape)

    def evaluate(self, model, split, batch_size: int = 1000) -> dict:
        """Cross-entropy per real (non-padding) target word over the split, and its perplexity."""
        total, words = 0.0, 0
        bs = min(batch_size, self.eval_batch_size)
        for i in range(0, len(split), bs):
            idx = np.arange(i, min(i + bs, len(split)), dtype=np.int64)
            xb, yb = split.batch(idx, model.dtype)
            value = self.forward(model.forward(xb), yb)
            total += value * self.n
            words += self.n
        ce = total / max(words, 1)
        return {"val_loss": ce, "val_ppl": float(np.exp(min(ce, 700.0))), "val_words": words}


LOSSES = {"nll": NLLLoss, "mse": MSELoss, "seq_nll": SeqNLLLoss}
