"""Losses as forward(pred, target) -> float and backward() -> dpred (buffers reused)."""
from __future__ import annotations

import numpy as np

from nets.kernels import losses as kl


class Loss:
    def __init__(self) -> None:
        self._bufs: dict[tuple, np.ndarray] = {}

    def _buf(self, key: str, like: np.ndarray) -> np.ndarray:
        k = (key, like.shape, like.dtype.str)
        b = self._bufs.get(k)
        if b is None:
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
        self.pred, self.target = pred, target
        return kl.mse_forward(pred, target)

    def backward(self) -> np.ndarray:
        d = self._buf("d", self.pred)
        kl.mse_backward(d, self.pred, self.target)
        return d


LOSSES = {"nll": NLLLoss, "mse": MSELoss}
