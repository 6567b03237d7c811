"""Validation metrics: loss, and top-1 / top-5 accuracy (in %) for classifiers; the cost of a net:
trainable parameters and inference time."""
from __future__ import annotations

import time

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


COST_METRICS = {"params": "minimize", "infer_ms": "minimize", "train_s": "minimize"}
"""What every net reports each epoch besides its own metrics, and each one's direction."""

INFER_BATCH, INFER_REPEATS = 200, 7


def infer_ms(model, split: Split, batch: int = INFER_BATCH, repeats: int = INFER_REPEATS) -> float:
    """Milliseconds per 1,000 samples of inference on this core, measured the same way for every net:
    one fixed batch (the split's first `batch` samples, cycled when it has fewer), one warm-up pass,
    then the median of `repeats` timed forward passes (the median shrugs off a preempted pass).
    BLAS is held to one thread meanwhile (several threads on a shared machine made it bimodal)."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):
        return _infer_ms(model, split, batch, repeats)


def _infer_ms(model, split: Split, batch: int, repeats: int) -> float:
    idx = np.arange(batch, dtype=np.int64) % max(1, len(split))
    xb = np.array(split.batch(idx, model.dtype)[0])
    model.forward(xb)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model.forward(xb)
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3 * 1000.0 / batch


def cost(model, split: Split, train_s: float, speed: float | None = None) -> dict:
    """`params` (trainable parameters), `infer_ms` (see `infer_ms`; `speed` when it was measured
    already: a net's forward pass costs the same whatever its weights) and `train_s` (training
    seconds so far, evaluation excluded)."""
    ms = infer_ms(model, split) if speed is None else speed
    return {"params": float(model.n_params), "infer_ms": ms, "train_s": train_s}
