"""The trial objective: train one net for one :class:`TrialTask`. The only module that calls nets.

:func:`execute` is what a worker (a local process or a Spark task) runs. It never raises:
exceptions in the net, a diverged loss and a broken pruning channel all come back as a failed
:class:`TrialResult` with a one-line reason and the formatted traceback.
"""
from __future__ import annotations

import math
import os
import socket
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

from hpsearch.recipes import load_data, resolve_recipe
from hpsearch.records import COMPLETE, FAILED, PRUNED, TrialResult, TrialTask

Report = Callable[..., bool]
"""``report(epoch, value) -> prune?``: called after every epoch with the objective's value; in a
multi-objective study ``report(epoch, value, values)`` with every objective's value too."""

# --------------------------------------------------------------------------- pruning channel

def never_prune(epoch: int, value: float, values: list[float] | None = None) -> bool:
    """The report of a trial without a pruning channel: never asks to stop."""
    return False


# --------------------------------------------------------------------------- the trial

class _BadMetric(Exception):
    pass


def run_trial(task: TrialTask, report: Report = never_prune, data: Any = None,
              rung: tuple[Any, int] | None = None) -> TrialResult:
    """Train ``task``'s net, calling ``report`` after every epoch. Never raises (but see below).

    Args:
        task: what to train.
        report: ``report(epoch, value) -> prune?``.
        data: the recipe's data (a path, ``None`` for its bundled sample, or a loaded object).
        rung: ``(start, until)``: train only epochs ``start.epoch + 1 .. until`` (``start``: the
            ``checkpoint`` of the trial's previous rung, ``None`` for its first), as one rung of a
            trial that the driver prunes between jobs. Unless it is the trial's last, the result holds
            these epochs' history and the ``checkpoint`` the next rung continues from (no weights).

    Returns:
        a complete, pruned or failed :class:`TrialResult`. ``KeyboardInterrupt`` and
        ``SystemExit`` propagate; every other exception becomes a failed result.
    """
    started, t0 = time.time(), time.perf_counter()
    where = f"{socket.gethostname()}:{os.getpid()}"

    def done(**kw: Any) -> TrialResult:
        return TrialResult(trial_id=task.trial_id, number=task.number, started=started,
                           seconds=time.perf_counter() - t0, worker=where, **kw)

    try:
        out = _train(task, report, data, rung)
        at = out.pop("first_batch_at", None)
        return done(first_batch_s=None if at is None else at - started, **out)
    except Exception as exc:  # noqa: BLE001 - every failure of the net is a value
        return done(state=FAILED, reason=failure_reason(exc), traceback=traceback.format_exc(),
                    history=tuple(getattr(exc, "_hpsearch_history", ())),
                    value=getattr(exc, "_hpsearch_value", None))


def objective_value(task: TrialTask, epoch: int, metrics: dict[str, float],
                    metric: str | None = None) -> float:
    """The task's metric (or ``metric``) from one epoch's metrics; a missing or non-finite one fails
    the trial."""
    metric = metric or task.metric
    if metric not in metrics:
        raise _BadMetric(f"the net reported no '{metric}' (it reported "
                         f"{', '.join(sorted(metrics))})")
    value = float(metrics[metric])
    if not math.isfinite(value):
        raise _BadMetric(f"{metric} became {value} at epoch {epoch}")
    return value


def prepare_run(task: TrialTask, data: Any = None) -> Any:
    """``task``'s training run, set up by ``nets.prepare`` (a ``nets.Run``: model, loss, optimizer,
    settings, data). ``data`` is what this worker holds: loaded data (read with the default data
    settings), a path, or None (the task's ``data_path``). A trial that searches data settings reads
    its own, through this process's cache."""
    import nets
    recipe = resolve_recipe(task.net)
    if data is None or set(task.params) & set(getattr(recipe, "data_keys", ()) or ()):
        data = data if isinstance(data, str) else task.data_path
    return nets.prepare(recipe, task.net_params(), data, seed=task.seed,
                        load=lambda path, settings: load_data(recipe, path, task.data_limit, settings))


def _train(task: TrialTask, report: Report, data: Any, rung: tuple[Any, int] | None = None) -> dict[str, Any]:
    run = prepare_run(task, data)
    last = rung is None or rung[1] >= run.config.epochs
    if rung is not None:
        run.config.start, run.config.epochs = rung[0], min(rung[1], run.config.epochs)
    seen: list[dict[str, float]] = []

    def on_epoch_end(epoch: int, metrics: dict[str, float]) -> bool:
        seen.append({"epoch": epoch, **metrics})
        value = objective_value(task, epoch, metrics)
        if not task.objectives:
            return bool(report(epoch, value))
        return bool(report(epoch, value, [objective_value(task, epoch, metrics, m) for m in task.objectives]))

    first: list[float] = []

    def on_batch(done: int, total: int) -> None:
        if not first:
            first.append(time.time())

    try:
        hist = run.fit(on_epoch_end, on_batch=on_batch)
    except Exception as exc:
        exc._hpsearch_history = tuple(seen)  # type: ignore[attr-defined]
        if seen and task.metric in seen[-1]:
            exc._hpsearch_value = float(seen[-1][task.metric])  # type: ignore[attr-defined]
        raise
    history = tuple(plain_metrics(h) for h in (hist.epochs or seen))
    value = float(history[-1][task.metric]) if history else None
    at = first[0] if first else None
    if hist.stopped:
        return {"state": PRUNED, "value": value, "history": history, "first_batch_at": at,
                "reason": f"pruned after epoch {len(history)}"}
    if not last:
        return {"state": COMPLETE, "value": value, "history": history, "first_batch_at": at,
                "checkpoint": hist.state}
    if ":" in task.net:          # a user's net: record where nets.load finds its recipe again
        run.model.arch.setdefault("builder", task.net)
    return {"state": COMPLETE, "value": value, "history": history, "weights": model_bytes(run.model),
            "first_batch_at": at}


def plain_metrics(h: dict[str, Any]) -> dict[str, float]:
    """One epoch's numeric metrics as plain floats (what a TrialResult's history holds)."""
    return {k: float(v) for k, v in h.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def model_bytes(model: Any) -> bytes | None:
    """The model as a ``nets.save`` file, as bytes (so it crosses process boundaries)."""
    import nets
    with tempfile.TemporaryDirectory(prefix="hpsearch-") as tmp:
        path = os.path.join(tmp, "model.npz")
        nets.save(model, path)
        with open(path, "rb") as fh:
            return fh.read()


def failure_reason(exc: BaseException) -> str:
    """The one-line reason a failed trial reports for ``exc``."""
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    if name == "DivergedError":
        return f"diverged: {text}"
    if isinstance(exc, _BadMetric):
        return text
    return f"{name}: {text}" if text else name


def execute(task: TrialTask, data: Any = None) -> TrialResult:
    """Worker entry point: run ``task``, reporting through its pruning channel if it has one."""
    from hpsearch.pruning import Reporter
    try:
        report = Reporter(task.channel, task.trial_id) if task.channel else never_prune
    except Exception as exc:  # noqa: BLE001
        return TrialResult(task.trial_id, task.number, FAILED, worker=socket.gethostname(),
                           reason=f"pruning channel unreachable: {failure_reason(exc)}",
                           traceback=traceback.format_exc(), lost=True)
    return run_trial(task, report, data)
