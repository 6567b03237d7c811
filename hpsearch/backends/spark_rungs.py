"""Pruning without the channel: each trial of a pruned study as a sequence of Spark jobs, one per rung.

Where the executors cannot reach the driver's pruning channel (a Spark Connect client behind NAT or a
firewall, seen from a managed cluster), the driver asks the pruner itself, between jobs:

- each job trains one rung of one trial, starting from the training state the previous job returned
  (weights, optimizer state, data order, training seconds: a ``nets.TrainState``), and returns the
  rung's per-epoch metrics and the new state. A rung runs to the next epoch at which the pruner may
  stop the trial (``next_decision``: successive halving and Hyperband decide only at their rungs,
  epochs 1, 3, 9, ...; other pruners after any epoch, so one epoch per job);
- between jobs the driver reports each epoch's value to the study, in order (``decide``: what the
  channel calls) and either stops the trial (pruned) or submits its next rung. A trial stops where the
  channel would have stopped it: an answer to prune at an epoch before the rung's last (which the
  schedule says cannot come) would cut the trial's history there, the later epochs merely wasted;
- a job that fails (a lost executor or Python worker) is run again from the same state, at most
  ``retries`` times: only that rung is redone. An exception in the net is a failed trial, never retried;
- cancelling the sweep interrupts the running rung jobs (the sweep's tag) and starts no next rung.

The trial's result is the one a single-job trial returns (history, value, weights when complete,
state, seconds: the rungs' training time, worker, first_batch_s). The cost: one Spark job per rung
(0.2 s each on a warm local worker) and the state shipped both ways (LeNet: 0.1-0.3 MB).
"""
from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

from hpsearch.backends.common import limit_threads, retried
from hpsearch.records import COMPLETE, FAILED, PRUNED, TrialResult, TrialTask


def rung_partition(data_name: str | None, task: TrialTask, start: Any, until: int,
                   rows: Iterable[int]) -> Iterator[bytes]:
    """The Spark task of one rung: train epochs ``start.epoch + 1 .. until`` and return the result."""
    from hpsearch.backends.spark import result_row, worker_data
    from hpsearch.objective import run_trial

    for _ in rows:      # consume the input, so Spark reuses the Python worker
        pass
    limit_threads()
    yield result_row(run_trial(task, data=worker_data(data_name), rung=(start, until)))


class Rungs:
    """Runs trials rung by rung for the Spark backend, asking ``decide`` between rungs.

    ``collect(fn, name)`` runs one job (the backend's, so it carries the sweep's tag); ``cancelled``
    is set when the sweep is cancelled; ``next_decision(epoch)``: the next epoch after ``epoch`` at
    which the pruner may stop a trial (default: the next epoch).
    """

    def __init__(self, collect: Callable[..., list[Any]], decide: Callable[..., bool],
                 cancelled: threading.Event, study_name: str, retries: int,
                 next_decision: Callable[[int], int] | None = None) -> None:
        self.collect, self.decide, self.cancelled = collect, decide, cancelled
        self.study_name, self.retries = study_name, retries
        self.next_decision = next_decision or (lambda epoch: epoch + 1)

    def run(self, task: TrialTask, data_name: str | None) -> TrialResult:
        """Train ``task`` to its end, or until the pruner stops it, a rung (one job) at a time."""
        task = replace(task, channel=None)     # nothing on the executors dials the driver
        rungs: list[TrialResult] = []
        start = None
        while True:
            rung = self._rung(task, data_name, start)
            rungs.append(rung)
            if rung.lost:
                return _joined(task, rungs, state=FAILED, reason=rung.reason, lost=True)
            verdict = self._verdict(task, rungs)
            if verdict is not None:
                return verdict
            start = rung.checkpoint

    def _verdict(self, task: TrialTask, rungs: list[TrialResult]) -> TrialResult | None:
        """The trial's result once its last rung is in, or the pruner stopped it; else None."""
        rung = rungs[-1]
        try:
            pruned_at = self._report(task, rung)
        except Exception as exc:  # noqa: BLE001 - the study's storage or pruner raised
            from hpsearch.objective import failure_reason
            return _joined(task, rungs, state=FAILED, reason=f"pruner raised {failure_reason(exc)}")
        if pruned_at is not None:
            return _joined(task, rungs, state=PRUNED, upto=pruned_at, reason=f"pruned after epoch {pruned_at}")
        if rung.state != COMPLETE or rung.checkpoint is None:      # failed, or the trial's last rung
            return _joined(task, rungs, state=rung.state, reason=rung.reason, traceback=rung.traceback,
                           weights=rung.weights)
        return None

    def _report(self, task: TrialTask, rung: TrialResult) -> int | None:
        """Report the rung's epochs to the pruner, in order; the epoch it stopped the trial at, if any.
        As through the channel, an answer after the trial's last epoch changes nothing."""
        last = rung.state == COMPLETE and rung.checkpoint is None
        for i, h in enumerate(rung.history):
            metrics = [task.metric, *task.objectives]
            if not all(math.isfinite(h.get(m, math.nan)) for m in metrics):
                return None          # the epoch that failed the trial: never reported
            values = [h[m] for m in task.objectives] if task.objectives else None
            prune = self.decide(task.trial_id, int(h["epoch"]), h[task.metric], values)
            if prune and not (last and i == len(rung.history) - 1):
                return int(h["epoch"])
        return None

    def _rung(self, task: TrialTask, data_name: str | None, start: Any) -> TrialResult:
        """One rung as one Spark job, run again from the same state when the job itself failed."""
        done = 0 if start is None else start.epoch
        until = self.next_decision(done)
        epochs = task.train_params().get("epochs")
        if isinstance(epochs, int):
            until = max(done + 1, min(until, epochs))
        name = f"{self.study_name} trial {task.number} " + \
            (f"epoch {until}" if until == done + 1 else f"epochs {done + 1}-{until}")
        def attempt(k: int) -> TrialResult:
            fn = functools.partial(rung_partition, data_name, replace(task, attempt=k), start, until)
            return self.collect(fn, name)[0]
        return retried(task, attempt, self.retries, self.cancelled, name, where=f" (epochs {done + 1}-{until})")


def _joined(task: TrialTask, rungs: list[TrialResult], state: str, upto: int | None = None,
            **fields: Any) -> TrialResult:
    """The trial's result from its rungs' results: the history up to epoch ``upto`` (all of it)."""
    history = tuple(h for r in rungs for h in r.history if upto is None or h["epoch"] <= upto)
    value = float(history[-1][task.metric]) if history and task.metric in history[-1] else None
    ran = [r for r in rungs if r.worker]
    workers = list(dict.fromkeys(r.worker for r in ran))
    return TrialResult(task.trial_id, task.number, state, value=value, history=history,
                       seconds=sum(r.seconds for r in rungs), started=ran[0].started if ran else 0.0,
                       worker=" ".join(workers), first_batch_s=ran[0].first_batch_s if ran else None,
                       **fields)
