"""The training loop: one readable function, two injected hooks.

`on_epoch_end(epoch, metrics) -> bool` stops training when it returns True (pruning lives there);
`reduce_grads(grads)` may average the flat gradient buffer across workers (data parallelism).
A fit can stop after some epochs and be continued exactly: its `History.state` (a `TrainState`) given as
the next fit's `TrainConfig.start` (the driver of a pruned sweep runs one job per slice this way).
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
class TrainState:
    """Where a fit ended, everything its continuation depends on: epochs done, the weights, the
    optimizer's state (step count and arrays), the data-order generator's state, training seconds."""

    epoch: int
    params: np.ndarray
    opt: dict
    rng: dict
    train_s: float = 0.0


@dataclass
class TrainConfig:
    epochs: int = 2          # passes over the training split (the last epoch to train, with `start`)
    batch_size: int = 12     # samples per step
    seed: int = 0            # data order; the model's init seed is the model's own
    eval_batch_size: int = 250     # evaluation batch (bounded buffers: memory stays small)
    start: TrainState | None = None   # continue an earlier fit (its History.state) from its next epoch


@dataclass
class History:
    epochs: list[dict] = field(default_factory=list)   # one dict of metrics per finished epoch
    stopped: bool = False                              # on_epoch_end asked to stop
    first_batch_s: float = float("nan")                # seconds from fit() start to the first step done
    seconds: float = 0.0
    state: TrainState | None = None                    # where it ended (to continue it: TrainConfig.start)


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
    first, train_s = _restore(cfg.start, model, opt, rng)
    speed: float | None = None     # infer_ms: the forward pass's cost, not the weights': once a fit
    for epoch in range(first, cfg.epochs + 1):
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
            if epoch == first and b == 0:
                hist.first_batch_s = time.perf_counter() - t0
            if on_batch is not None:
                on_batch(b + 1, nb)
        secs = time.perf_counter() - te
        train_s += secs
        metrics = _measured(model, loss, train, val, cfg, train_s, speed, {
            "epoch": epoch, "loss": total / n, "samples_per_s": n / secs, "seconds": secs})
        speed = metrics["infer_ms"]
        hist.epochs.append(metrics)
        if on_epoch_end is not None and on_epoch_end(epoch, dict(metrics)):
            hist.stopped = epoch < cfg.epochs
            break
    hist.seconds = time.perf_counter() - t0
    hist.state = TrainState(first - 1 + len(hist.epochs), model.params.copy(), opt.checkpoint(),
                            rng.bit_generator.state, train_s)
    return hist


def _measured(model, loss, train, val, cfg, train_s, speed, metrics: dict) -> dict:
    """An epoch's `metrics` with the validation metrics and the costs (`speed`: infer_ms measured
    earlier in this fit, or None)."""
    if val is not None and len(val):
        metrics.update(evaluate(model, loss, val, cfg.eval_batch_size))
    return {**metrics, **cost(model, val if val is not None and len(val) else train, train_s, speed)}


def _restore(start: TrainState | None, model: Model, opt: Optimizer, rng: np.random.Generator):
    """Put the weights, optimizer and data order back where `start` left them; (first epoch, train_s)."""
    if start is None:
        return 1, 0.0
    model.params[...] = start.params
    opt.restore(start.opt)
    rng.bit_generator.state = start.rng
    return start.epoch + 1, start.train_s
