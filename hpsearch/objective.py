"""The trial objective: train one net for one :class:`TrialTask`. The only module that calls nets.

:func:`execute` is what a worker (a local process or a Spark task) runs. It never raises:
exceptions in the net, a diverged loss and a broken pruning channel all come back as a failed
:class:`TrialResult` with a one-line reason and the formatted traceback.
"""
from __future__ import annotations

import importlib
import math
import os
import socket
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import is_dataclass, replace
from typing import Any

from hpsearch.records import COMPLETE, FAILED, PRUNED, PruningChannel, TrialResult, TrialTask

Report = Callable[[int, float], bool]
"""``report(epoch, value) -> prune?``: called after every epoch with the objective's value."""

_DATA_CACHE: dict[tuple, Any] = {}
_CHANNELS: dict[tuple, Any] = {}


# --------------------------------------------------------------------------- recipes

def available_recipes() -> dict[str, Any]:
    """The recipes the installed nets library offers (empty when nets is not importable)."""
    try:
        import nets
    except ImportError:
        return {}
    return dict(getattr(nets, "RECIPES", {}))


def _is_recipe(obj: Any) -> bool:
    try:
        import nets
        if hasattr(nets, "Recipe") and isinstance(obj, nets.Recipe):
            return True
    except ImportError:
        pass
    return all(hasattr(obj, a) for a in ("name", "defaults", "metrics", "load_data", "build"))


def resolve_recipe(net: str) -> Any:
    """A ``nets.Recipe`` from a built-in name or ``package.module:attr``.

    ``attr`` may be a Recipe or a zero-argument callable returning one.
    """
    if ":" not in net:
        recipes = available_recipes()
        if net not in recipes:
            raise LookupError(f"net '{net}' is not available in the installed nets library")
        return recipes[net]
    module_name, _, attr = net.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise AttributeError(f"module '{module_name}' has no attribute '{attr}'")
        obj = getattr(obj, part)
    if not _is_recipe(obj) and callable(obj):
        obj = obj()
    if not _is_recipe(obj):
        raise TypeError(f"{net} is not a nets.Recipe (got {type(obj).__name__} {obj!r:.40})")
    return obj


# --------------------------------------------------------------------------- data

def subsample(data: Any, limit: int | None) -> Any:
    """Keep the first ``limit`` training samples and ``max(100, limit // 4)`` validation ones.

    Works on ``nets.Data`` (splits with ``subset(n)``); other data objects are returned whole.
    """
    if limit is None or not is_dataclass(data):
        return data
    train, val = getattr(data, "train", None), getattr(data, "val", None)
    if not hasattr(train, "subset"):
        return data
    changes = {"train": train.subset(limit)}
    if hasattr(val, "subset"):
        changes["val"] = val.subset(max(100, limit // 4))
    return replace(data, **changes)


def data_settings(recipe: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The data settings among ``params`` (and the recipe's defaults): its ``data_keys``."""
    keys = getattr(recipe, "data_keys", ()) or ()
    merged = {**recipe.defaults, **params}
    return {k: merged[k] for k in keys if k in merged}


def load_data(recipe: Any, path: str | None, limit: int | None = None,
              settings: dict[str, Any] | None = None) -> Any:
    """The recipe's data, read once per process per settings, and subsampled to ``limit``."""
    settings = settings or {}
    key = (recipe.name, path, limit, tuple(sorted((k, repr(v)) for k, v in settings.items())))
    if key not in _DATA_CACHE:
        data = recipe.load_data(path, **settings) if settings else recipe.load_data(path)
        _DATA_CACHE[key] = subsample(data, limit)
    return _DATA_CACHE[key]


# --------------------------------------------------------------------------- pruning channel

class GrpcReporter:
    """Reports epochs to the driver's Optuna gRPC storage proxy and asks ``should_prune()``.

    The driver serves the proxy; the worker never writes a final state (only intermediate values).
    """

    def __init__(self, channel: PruningChannel, trial_id: int) -> None:
        import optuna
        study = _channel_study(channel)
        self.trial = optuna.trial.Trial(study, trial_id)

    def __call__(self, epoch: int, value: float) -> bool:
        self.trial.report(value, epoch)
        return self.trial.should_prune()


def _channel_study(channel: PruningChannel) -> Any:
    """The study seen through the proxy, cached per worker process."""
    key = (channel.host, channel.port, channel.study_name, channel.pruner,
           tuple(sorted(channel.pruner_options.items())))
    if key not in _CHANNELS:
        import warnings

        import optuna
        from optuna.storages import GrpcStorageProxy

        from hpsearch.samplers import make_pruner
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            storage = GrpcStorageProxy(host=channel.host, port=channel.port)
            storage.wait_server_ready(timeout=60)
            _CHANNELS[key] = optuna.load_study(
                study_name=channel.study_name, storage=storage,
                pruner=make_pruner(channel.pruner, dict(channel.pruner_options)),
                sampler=optuna.samplers.RandomSampler())
    return _CHANNELS[key]


def _never_prune(epoch: int, value: float) -> bool:
    return False


# --------------------------------------------------------------------------- the trial

class _BadMetric(Exception):
    pass


def run_trial(task: TrialTask, report: Report = _never_prune, data: Any = None) -> TrialResult:
    """Train ``task``'s net, calling ``report`` after every epoch. Never raises (but see below).

    Args:
        task: what to train.
        report: ``report(epoch, value) -> prune?``.
        data: the recipe's data (a path, ``None`` for its bundled sample, or a loaded object).

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
        out = _train(task, report, data)
        at = out.pop("first_batch_at", None)
        return done(first_batch_s=None if at is None else at - started, **out)
    except Exception as exc:  # noqa: BLE001 - every failure of the net is a value
        return done(state=FAILED, reason=_reason(exc), traceback=traceback.format_exc(),
                    history=tuple(getattr(exc, "_hpsearch_history", ())),
                    value=getattr(exc, "_hpsearch_value", None))


def objective_value(task: TrialTask, epoch: int, metrics: dict[str, float]) -> float:
    """The task's metric from one epoch's metrics; a missing or non-finite one fails the trial."""
    if task.metric not in metrics:
        raise _BadMetric(f"the net reported no '{task.metric}' (it reported "
                         f"{', '.join(sorted(metrics))})")
    value = float(metrics[task.metric])
    if not math.isfinite(value):
        raise _BadMetric(f"{task.metric} became {value} at epoch {epoch}")
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
    return nets.prepare(recipe, task.train_params(), data, seed=task.seed,
                        load=lambda path, settings: load_data(recipe, path, task.data_limit, settings))


def _train(task: TrialTask, report: Report, data: Any) -> dict[str, Any]:
    run = prepare_run(task, data)
    seen: list[dict[str, float]] = []

    def on_epoch_end(epoch: int, metrics: dict[str, float]) -> bool:
        seen.append({"epoch": epoch, **metrics})
        return bool(report(epoch, objective_value(task, epoch, metrics)))

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
    history = tuple(_plain_metrics(h) for h in (hist.epochs or seen))
    value = float(history[-1][task.metric]) if history else None
    at = first[0] if first else None
    if hist.stopped:
        return {"state": PRUNED, "value": value, "history": history, "first_batch_at": at,
                "reason": f"pruned after epoch {len(history)}"}
    if ":" in task.net:          # a user's net: record where nets.load finds its recipe again
        run.model.arch.setdefault("builder", task.net)
    return {"state": COMPLETE, "value": value, "history": history, "weights": _weights(run.model),
            "first_batch_at": at}


def _plain_metrics(h: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in h.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _weights(model: Any) -> bytes | None:
    """The model as a ``nets.save`` file, as bytes (so it crosses process boundaries)."""
    import nets
    with tempfile.TemporaryDirectory(prefix="hpsearch-") as tmp:
        path = os.path.join(tmp, "model.npz")
        nets.save(model, path)
        with open(path, "rb") as fh:
            return fh.read()


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    if name == "DivergedError":
        return f"diverged: {text}"
    if isinstance(exc, _BadMetric):
        return text
    return f"{name}: {text}" if text else name


def execute(task: TrialTask, data: Any = None) -> TrialResult:
    """Worker entry point: run ``task``, reporting through its pruning channel if it has one."""
    try:
        report = GrpcReporter(task.channel, task.trial_id) if task.channel else _never_prune
    except Exception as exc:  # noqa: BLE001
        return TrialResult(task.trial_id, task.number, FAILED, worker=socket.gethostname(),
                           reason=f"pruning channel unreachable: {_reason(exc)}",
                           traceback=traceback.format_exc(), lost=True)
    return run_trial(task, report, data)
