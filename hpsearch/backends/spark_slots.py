"""Slot mode of the Spark backend: one long-lived task per slot, fed trials through the channel.

A one-task Spark job costs 0.1-0.2 s on a warm classic session and about 0.2 s on Spark Connect, so
one job per trial caps a slot at about 85% busy on one-second trials. When the executors can reach
the driver's channel (:mod:`hpsearch.pruning`, checked by a probe job before any trial, or
certain: classic local executors), the backend instead runs long-lived slot tasks: all of them as
one job at the start (``"<study> slots 0-15"``: one job starts its tasks in about a third of the
time sixteen one-task jobs take), a slot started again as a job of its own (``"<study> slot 3"``).
Each slot's task loops:

    Next(slot, result of the last trial) -> the next trial, or none: the slot's job ends

so a trial costs one call to the driver (about a millisecond) instead of a job. The driver answers
a ``Next`` as soon as it gets it: the slot is refilled before the result is handed on, as in job
mode. Every trial still shows by name: the driver logs ``trial N -> slot K`` (logger
``hpsearch.spark``), the task writes ``hpsearch: <study> trial N started`` to its executor's stderr
(the Spark UI's executor logs), and its pruning reports carry its trial id.

A lost slot (its Python worker or executor died, its job failed) loses the one trial it held: that
trial is run again on the next free slot (at most ``retries`` times more), and the slot's job is
started again. On a cluster Spark retries a failed task within its job (the driver sees the slot ask
again with its trial unfinished); in ``local[N]`` a failed task fails its job, so a worker lost in
the first job costs every slot of it its trial (each run again) before each slot restarts alone. A
trial that raised is a failed result, never retried.

Tasks and results cross as JSON (weights base64), like every other message on the channel.
"""
from __future__ import annotations

import base64
import concurrent.futures
import logging
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import fields, replace
from typing import Any

from hpsearch.errors import BackendError
from hpsearch.records import FAILED, PruningChannel, TrialResult, TrialTask

log = logging.getLogger("hpsearch.spark")

NEXT_TIMEOUT_S = 24 * 3600.0   # a slot waits this long for the driver's answer at most


# --------------------------------------------------------------------------- wire format

def task_json(task: TrialTask) -> dict[str, Any]:
    """``task`` as JSON (its channel stays out: the slot has it; ``report`` says whether to use it)."""
    body = {f.name: getattr(task, f.name) for f in fields(task) if f.name != "channel"}
    body["report"] = task.channel is not None
    return body


def task_from_json(body: dict[str, Any], channel: PruningChannel) -> TrialTask:
    body = dict(body)
    report = body.pop("report")
    body["per_layer"] = tuple(tuple(p) for p in body.get("per_layer", ()))
    body["objectives"] = tuple(body.get("objectives", ()))
    return TrialTask(**body, channel=channel if report else None)


def result_json(result: TrialResult) -> dict[str, Any]:
    body = {f.name: getattr(result, f.name) for f in fields(result)}
    body["history"] = list(result.history)
    if result.weights is not None:
        body["weights"] = base64.b64encode(result.weights).decode("ascii")
    return body


def result_from_json(body: dict[str, Any]) -> TrialResult:
    body = dict(body)
    body["history"] = tuple(body.get("history", ()))
    if body.get("weights") is not None:
        body["weights"] = base64.b64decode(body["weights"])
    return TrialResult(**body)


# --------------------------------------------------------------------------- executor side

def slot_loop(channel: PruningChannel, data_name: str | None, slots: list[str], label: str | None,
              rows: Iterable[int]) -> Iterator[bytes]:
    """The Spark task of one slot: ask the driver for trials and run them until it has none. The
    job's input row K (one per task) makes its task slot ``slots[K]``. ``label``: the study's name,
    for a line per trial on the executor's stderr (``None``: no line; local executors write to the
    user's terminal)."""
    from hpsearch.backends.common import limit_threads
    from hpsearch.backends.spark import result_row, worker_data
    from hpsearch.objective import execute
    from hpsearch.pruning import call

    ids = list(rows)
    slot = slots[ids[0] if ids else 0]
    limit_threads()
    body: dict[str, Any] = {"slot": slot, "result": None}
    ran = 0
    while True:
        # wait for the channel only the first time: a driver that went away ends the slot
        answer = call(channel, "Next", body, timeout=NEXT_TIMEOUT_S, wait_for_ready=ran == 0)
        if answer.get("task") is None:
            break
        task = task_from_json(answer["task"], channel)
        if label is not None:
            print(f"hpsearch: {label} trial {task.number} started (attempt {task.attempt + 1})",
                  file=sys.stderr, flush=True)
        body = {"slot": slot, "result": result_json(execute(task, worker_data(data_name))),
                "trial": [task.number, task.attempt]}
        ran += 1
    yield result_row(ran)


# --------------------------------------------------------------------------- driver side

class SlotFeeder:
    """The driver's side: ``Next`` calls come in on the channel's threads (:meth:`next_trial`);
    :meth:`run` answers them on the driver's thread, pulling tasks from the sweep lazily."""

    def __init__(self, start_job: Callable[[list[str]], None], slots: int, retries: int,
                 warm: Callable[[TrialTask], None]) -> None:
        self.start_job, self.slots, self.retries, self.warm = start_job, slots, retries, warm
        self.events: queue.Queue = queue.Queue()
        self.cancelled = False
        self.closed = False
        self.lock = threading.Lock()

    # called by the channel (a gRPC thread): blocks until the driver answers
    def next_trial(self, request: dict[str, Any]) -> dict[str, Any]:
        reply: concurrent.futures.Future = concurrent.futures.Future()
        with self.lock:
            if self.closed:             # the sweep is over (or stopped): no more trials
                return {"task": None}
            self.events.put(("next", str(request["slot"]), request, reply))
        return reply.result()

    # called by a slot's job thread when its job ended (``error``: why it failed, or None)
    def job_ended(self, slot: str, error: str | None) -> None:
        self.events.put(("ended", slot, error, None))

    def run(self, tasks: Iterable[TrialTask]) -> Iterator[TrialResult]:
        """Run ``tasks`` on the slots; yields each result as it comes in (see the module doc)."""
        while not self.events.empty():   # a run before this one: its slot jobs' ends
            self.events.get_nowait()
        run = _SlotRun(self, iter(tasks))
        self.closed = False
        try:
            yield from run.loop()
        finally:
            run.drain()


class _SlotRun:
    """One :meth:`SlotFeeder.run`: which slot holds which trial, the retries, the live jobs."""

    def __init__(self, feeder: SlotFeeder, tasks: Iterator[TrialTask]) -> None:
        self.f, self.tasks = feeder, tasks
        self.exhausted = False
        self.held: dict[str, TrialTask] = {}
        self.retry: deque[TrialTask] = deque()
        self.alive: set[str] = set()
        self.failures: dict[str, int] = {}     # a slot's job failures in a row, without a trial

    def loop(self) -> Iterator[TrialResult]:
        self._start([str(k) for k in range(self.f.slots)])
        # until every trial is back: slots still in their job are then told there is no more
        # (drain), and the backend waits for their jobs to end while the sweep records its end
        while self.alive and (self.held or self.retry or not (self.exhausted or self.f.cancelled)):
            try:
                events = [self.f.events.get(timeout=0.5)]
            except queue.Empty:
                continue
            # slots that finish together (trials of one length) wait for their next trial only
            # while the others are asked for, not while every result before theirs is recorded
            while True:
                try:
                    events.append(self.f.events.get_nowait())
                except queue.Empty:
                    break
            done: list[TrialResult] = []
            for kind, slot, payload, reply in events:
                done += self._on_next(slot, payload, reply) if kind == "next" else self._on_ended(slot, payload)
            yield from done
        if self.retry or not (self.exhausted or self.f.cancelled):
            raise BackendError(f"every Spark slot job failed ({self.last_error})",
                               "see the executors' logs; hpsearch --verbose shows the driver's")

    last_error = ""

    def _start(self, slots: list[str]) -> None:
        self.alive.update(slots)
        self.f.start_job(slots)

    def _next(self) -> TrialTask | None:
        if self.f.cancelled:
            return None
        if self.retry:
            return self.retry.popleft()
        if self.exhausted:
            return None
        task = next(self.tasks, None)
        if task is None:
            self.exhausted = True
        else:
            self.f.warm(task)
        return task

    def _on_next(self, slot: str, request: dict, reply: Any) -> Iterator[TrialResult]:
        done, payload = None, request.get("result")
        held = self.held.get(slot)
        if payload is not None and (held is None or [held.number, held.attempt] != request.get("trial")):
            # a task its failed job left running (local[N] fails the whole job for one lost worker):
            # the driver already counted its trial lost and runs it again, so this result is dropped
            log.warning("slot %s: trial %s came back from a task of a failed job; its rerun counts",
                        slot, request.get("trial"))
            reply.set_result({"task": None})
            return
        if payload is not None:
            done = result_from_json(payload)
            self.held.pop(slot, None)
        elif slot in self.held:          # the slot's task was started again by Spark: it lost its trial
            done = self._lost(self.held.pop(slot), "its Spark task was restarted")
        self.failures.pop(slot, None)
        task = self._next()       # refill the slot first: the driver's bookkeeping overlaps the trial
        if task is not None:
            self.held[slot] = task
            log.info("trial %d -> slot %s", task.number, slot)
        reply.set_result({"task": None if task is None else task_json(task)})
        if done is not None:
            yield done

    def _on_ended(self, slot: str, error: str | None) -> Iterator[TrialResult]:
        self.alive.discard(slot)
        if error is not None:
            self.last_error = error
            log.warning("slot %s: Spark job lost: %s", slot, error[:160])
        lost = self.held.pop(slot, None)
        if lost is not None:
            done = self._lost(lost, error or "its Spark job ended")
            if done is not None:
                yield done
        elif error is not None:
            self.failures[slot] = self.failures.get(slot, 0) + 1
        more = self.retry or not self.exhausted
        if more and not self.f.cancelled and self.failures.get(slot, 0) <= self.f.retries:
            self._start([slot])

    def _lost(self, task: TrialTask, why: str) -> TrialResult | None:
        """Queue ``task`` again, or its failed result when it was lost too often (or cancelled)."""
        if self.f.cancelled:
            return TrialResult(task.trial_id, task.number, FAILED, reason="cancelled", lost=True)
        if task.attempt < self.f.retries:
            log.warning("trial %d: Spark task lost (attempt %d of %d): %s", task.number,
                        task.attempt + 1, self.f.retries + 1, why[:160])
            self.retry.append(replace(task, attempt=task.attempt + 1))
            return None
        return TrialResult(task.trial_id, task.number, FAILED, lost=True,
                           reason=f"worker lost {self.f.retries + 1} times; last error: {why}")

    def drain(self) -> None:
        """Answer every call still waiting (no more trials), so the channel's threads are free."""
        with self.f.lock:
            self.f.closed = True
        while True:
            try:
                kind, _slot, _payload, reply = self.f.events.get_nowait()
            except queue.Empty:
                return
            if kind == "next":
                reply.set_result({"task": None})
