"""The Backend contract: where trials run.

Lifecycle, as the driver uses it::

    backend = make_backend("local", parallelism=2, data=data)
    for result in backend.run(tasks):   # tasks: a lazy iterator of TrialTask
        ...                             # tell Optuna, log to MLflow
    backend.close()

``run`` pulls a task from ``tasks`` whenever a worker slot is free (so the driver asks Optuna for
a trial only when it can start it, and the sampler sees every result told before it), and yields
each :class:`TrialResult` as soon as it is in. When ``tasks`` is exhausted, ``run`` yields the
results of the trials still running and returns. ``cancel`` (from another thread or a signal
handler) stops every running trial at once; their results come back failed with ``lost=True``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator

from hpsearch.records import PruningChannel, TrialResult, TrialTask


class Backend(ABC):
    """Runs trials somewhere (worker processes, Spark tasks) and streams their results back."""

    parallelism: int = 1
    report_host: str = "127.0.0.1"
    """The address workers dial to reach the driver's pruning channel."""
    retry_lost: bool = True
    """Whether the driver retries (once) a trial whose worker was lost; ``False`` when the
    backend retries lost workers itself."""

    @abstractmethod
    def run(self, tasks: Iterable[TrialTask]) -> Iterator[TrialResult]:
        """Run tasks, at most ``parallelism`` at a time, yielding results as they finish."""

    def use_pruner(self, decide: Callable[..., bool], mode: str = "auto",
                   next_decision: Callable[[int], int] | None = None) -> bool:
        """Called before any trial when the study prunes: ``decide(trial_id, epoch, value,
        values=None) -> prune?`` asks its pruner, ``mode`` is ``execution.pruning_mode``,
        ``next_decision(epoch)`` the next epoch at which the pruner may stop a trial. ``True``:
        the backend asks ``decide`` itself, between jobs, and needs no channel. Default: ``False``
        (workers report through the channel)."""
        return False

    def check_channel(self, channel: PruningChannel, required: bool = True) -> str | None:
        """Before any trial: raise BackendError when the workers cannot reach the channel and it
        is ``required`` (the study prunes), or return a note saying how the backend does without
        it. Default: workers run on this machine, where the channel listens."""
        return None

    def cancel(self) -> None:
        """Stop every running trial now. Default: nothing to stop."""

    def close(self) -> None:
        """Release workers. Called once, after ``run`` is done or abandoned."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
