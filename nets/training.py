"""The training loop: one readable function, two injected hooks.

`on_epoch_end(epoch, metrics) -> bool` stops training when it returns True (pruning lives there);
`reduce_grads(grads)` may average the flat gradient buffer across workers (data parallelism).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from nets.data.splits import Split
from nets.errors import DivergedError
from nets.losses import Loss
from nets.metrics import cost, evaluate
from nets.model import Model
from nets.optim import Optimizer


@dataclass
class TrainConfig:
    epochs: int = 2          # passes over the training split
    batch_size: int = 12     # samples per step
    seed: int = 0            # data order; the model's init seed is the model's own
    eval_batch_size: int = 250     # evaluation batch (bounded buffers: memory stays small)


@dataclass
class History:
    epochs: list[dict] = field(default_factory=list)   # one dict of metrics per finished epoch
    stopped: bool = False                              # on_epoch_end asked to stop
    first_batch_s: float = float("nan")                # seconds from fit() start to the first step done
    seconds: float = 0.0


def fit(model: Model, loss: Loss, opt: Optimizer, train: Split, val: Split | None, cfg: TrainConfig,
        on_epoch_end: Callable[[int, dict], bool] | None = None,
        reduce_grads: Callable[[np.ndarray], None] | None = None,
        on_batch: Callable[[int, int], None] | None = None) -> History:
    with np.errstate(over="ignore", invalid="ignore"):   # divergence is caught on the loss below
        return _fit(model, loss, opt, train, val, cfg, on_epoch_end, reduce_grads, on_batch)


def _fit(model, loss, opt, train, val, cfg, on_epoch_end, reduce_grads, on_batch) -> History:
    hist, t0 = History(), time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    n, bs = len(train), cfg.batch_size
    xbuf = np.empty((bs, int(np.prod(train.sample_shape))), model.dtype)
    train_s = 0.0
    for epoch in range(1, cfg.epochs + 1):
        te, total = time.perf_counter(), 0.0
        order = rng.permutation(n)
        nb = (n + bs - 1) // bs
        for b in range(nb):
            idx = order[b * bs:(b + 1) * bs]
            xb, yb = train.batch(idx, model.dtype, xbuf)
            value = loss.forward(model.forward(xb), yb)
            if not math.isfinite(value):
                raise DivergedError(epoch, b, value)
            model.backward(loss.backward())
            if reduce_grads is not None:
                reduce_grads(model.grads)
            opt.step(model.params, model.grads)
            total += value * len(idx)
            if epoch == 1 and b == 0:
                hist.first_batch_s = time.perf_counter() - t0
            if on_batch is not None:
                on_batch(b + 1, nb)
        secs = time.perf_counter() - te
        train_s += secs
        metrics = {"epoch": epoch, "loss": total / n, "samples_per_s": n / secs, "seconds": secs}
        if val is not None and len(val):
            metrics.update(evaluate(model, loss, val, cfg.eval_batch_size))
        metrics.update(cost(model, val if val is not None and len(val) else train, train_s))
        hist.epochs.append(metrics)
        if on_epoch_end is not None and on_epoch_end(epoch, dict(metrics)):
            hist.stopped = epoch < cfg.epochs
            break
    hist.seconds = time.perf_counter() - t0
    return hist
