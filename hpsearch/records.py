"""The plain, picklable records that cross process boundaries (local workers, Spark tasks).

A :class:`TrialTask` goes from the driver to a worker; a :class:`TrialResult` comes back. Both
hold only builtins (str, int, float, dict, tuple, bytes), so they pickle anywhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

COMPLETE = "complete"
PRUNED = "pruned"
FAILED = "failed"
STATES = (COMPLETE, PRUNED, FAILED)


@dataclass(frozen=True)
class PruningChannel:
    """Where a worker reports epochs and asks whether to prune: the driver's channel
    (:mod:`hpsearch.pruning`). ``secret`` admits the sweep's own tasks; ``cert`` is the sweep's TLS
    certificate (``None`` on loopback). Neither ever shows in a ``repr``."""

    host: str
    port: int
    secret: str = field(repr=False)
    cert: bytes | None = field(default=None, repr=False)
    listens: bool = field(default=False, repr=False)   # the driver listens on ``host`` itself


@dataclass(frozen=True)
class TrialTask:
    """One trial to train.

    Attributes:
        number: the Optuna trial number (shown to users); ``trial_id`` is the storage's key.
        net: a built-in recipe name or ``package.module:attr``.
        params: searched hyperparameters; ``fixed``: the study's fixed ones.
        metric: the objective metric; ``direction``: ``minimize``/``maximize``; ``objectives``:
            every objective metric of a multi-objective study (empty otherwise).
        channel: the pruning channel, or ``None`` when the study does not prune.
        per_layer: the space's per-layer lists, ``(param, depth param, net param)`` (see
            :data:`hpsearch.space.Layout`): how :meth:`net_params` folds ``units_1..n`` into a list.
    """

    trial_id: int
    number: int
    net: str
    params: dict[str, Any]
    fixed: dict[str, Any]
    metric: str
    direction: str
    seed: int
    epochs: int | None = None
    data_path: str | None = None
    data_limit: int | None = None
    channel: PruningChannel | None = None
    attempt: int = 0
    per_layer: tuple[tuple[str, str, str], ...] = ()
    objectives: tuple[str, ...] = ()     # every objective metric of a multi-objective study

    def train_params(self) -> dict[str, Any]:
        """The hyperparameters of the run, flat (as logged): fixed ones overridden by the searched ones."""
        return {**self.fixed, **self.params}

    def net_params(self) -> dict[str, Any]:
        """The hyperparameters handed to nets: :meth:`train_params` with the per-layer draws folded
        into lists (``units_1, units_2`` -> ``hidden: [.., ..]``)."""
        from hpsearch.space import net_params
        return net_params(self.train_params(), self.per_layer)


@dataclass(frozen=True)
class TrialResult:
    """What came of a trial. Exceptions in the net come back here as values, never raised.

    Attributes:
        state: ``complete``, ``pruned`` or ``failed``.
        value: the objective at the last epoch (``None`` when failed before any epoch).
        history: one dict per epoch (``epoch``, ``loss``, ``val_...``, ``samples_per_s``, ``seconds``).
        reason: why it failed or was pruned, one line; ``traceback``: the formatted traceback.
        lost: ``True`` when the worker itself died (the trial may be retried), not the config.
        weights: the trained model as a ``nets.save`` file (bytes) for completed trials.
        first_batch_s: seconds from ``started`` to the end of the first training step.
        checkpoint: after one rung of a trial run rung by rung, the training state (a
            ``nets.TrainState``) the next rung continues from; ``None`` otherwise.
    """

    trial_id: int
    number: int
    state: str
    value: float | None = None
    history: tuple[dict[str, float], ...] = ()
    reason: str | None = None
    traceback: str | None = None
    seconds: float = 0.0
    started: float = 0.0
    worker: str = ""
    lost: bool = False
    weights: bytes | None = field(default=None, repr=False)
    first_batch_s: float | None = None   # seconds from the trial's start to its first trained batch
    checkpoint: Any = field(default=None, repr=False)

    @property
    def epochs(self) -> int:
        return len(self.history)
