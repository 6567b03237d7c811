"""Validation metrics: loss, and top-1 / top-5 accuracy (in %) for classifiers."""
from __future__ import annotations

import numpy as np

from nets.data.splits import Split
from nets.losses import Loss


def topk_correct(scores: np.ndarray, labels: np.ndarray, k: int) -> int:
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return int((top == labels[:, None]).any(axis=1).sum())


def evaluate(model, loss: Loss, split: Split, batch_size: int = 250) -> dict:
    custom = getattr(loss, "evaluate", None)      # a loss with metrics of its own (sequence models)
    if custom is not None:
        return custom(model, split, batch_size)
    n, total, c1, c5 = len(split), 0.0, 0, 0
    for i in range(0, n, batch_size):
        idx = np.arange(i, min(i + batch_size, n), dtype=np.int64)
        xb, yb = split.batch(idx, model.dtype)
        out = model.forward(xb)
        total += loss.forward(out, yb) * len(idx)
        if split.y is not None:
            c1 += topk_correct(out, yb, 1)
            c5 += topk_correct(out, yb, 5)
    m = {"val_loss": total / n}
    if split.y is not None:
        m["val_top1"] = 100.0 * c1 / n
        m["val_top5"] = 100.0 * c5 / n
    return m
