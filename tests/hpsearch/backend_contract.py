"""A contract every Backend must meet, run against each implementation (see test_local_backend).

A subclass provides the ``backend`` fixture: ``backend(parallelism) -> Backend`` whose workers get
the LeNet sample (first 200 images) as data.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from hpsearch.records import COMPLETE, FAILED, TrialResult, TrialTask


def task(number: int, net: str = "lenet", **params) -> TrialTask:
    return TrialTask(trial_id=number, number=number, net=net, params={"lr": 0.05, **params},
                     fixed={"epochs": 1, "batch_size": 32}, metric="val_loss",
                     direction="minimize", seed=number, data_limit=200)


def cancelled_after(backend: Any, tasks: list[TrialTask], after_s: float = 4.0) -> list[TrialResult]:
    """Run ``tasks`` on ``backend`` and cancel it ``after_s`` in: every result comes back
    ``cancelled`` less than 5 s after the cancel. Returns the results."""
    timer = threading.Timer(after_s, backend.cancel)
    timer.start()
    t0 = time.monotonic()
    results = list(backend.run(tasks))
    assert time.monotonic() - t0 - after_s < 5.0
    assert results and [r.reason for r in results] == ["cancelled"] * len(results)
    return results


class BackendContract:
    """Runs tasks lazily, at most `parallelism` at a time; errors come back as values."""

    def test_runs_every_task_once(self, backend) -> None:
        with backend(2) as b:
            results = list(b.run([task(i) for i in range(4)]))
        assert sorted(r.number for r in results) == [0, 1, 2, 3]
        assert all(r.state == COMPLETE and r.epochs == 1 and r.weights for r in results)

    def test_pulls_tasks_only_when_a_slot_is_free(self, backend) -> None:
        """A new task only after a result frees a slot. A backend that refills a freed slot before
        it hands the result over (``dispatch_ahead``: Spark, every mode) may be ahead by one task a
        slot: slots that finish together are all refilled before the first of their results."""
        pulled = []

        def tasks() -> Iterator[TrialTask]:
            for i in range(6):
                pulled.append(i)
                yield task(i)

        with backend(2) as b:
            ahead = 2 if getattr(b, "dispatch_ahead", False) else 0
            for seen, _result in enumerate(b.run(tasks())):
                assert len(pulled) <= 2 + seen + ahead
        assert pulled == [0, 1, 2, 3, 4, 5]

    def test_exceptions_come_back_as_values(self, backend) -> None:
        with backend(1) as b:
            (result,) = b.run([task(0, net="recipes_for_tests:fragile", mode="raise")])
        assert result.state == FAILED and not result.lost
        assert result.reason == "RuntimeError: fragile net refuses to build"
        assert "Traceback" in result.traceback

    def test_a_dead_worker_is_lost_not_fatal(self, backend) -> None:
        with backend(1) as b:
            results = list(b.run([task(0, net="recipes_for_tests:fragile", mode="die"), task(1)]))
        lost, ok = sorted(results, key=lambda r: r.number)
        assert lost.state == FAILED and lost.lost
        assert ok.state == COMPLETE
