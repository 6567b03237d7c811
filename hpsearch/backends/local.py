"""Local backend: trials run in worker processes on this machine, one core each.

Workers are started with ``spawn`` (the driver runs gRPC and SQLite threads, which must not be
forked), get the study's data once when they start, and are reused across trials. Every BLAS,
OpenMP and numba thread pool in a worker is limited to one thread, so ``parallelism`` workers
use ``parallelism`` cores. A worker that dies (segfault, OOM kill) yields a ``lost`` result for
its trial and is replaced; the driver decides whether to retry.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import sys
from collections.abc import Iterable, Iterator
from contextlib import suppress
from multiprocessing.connection import Connection, wait
from typing import Any

from hpsearch.backends._base import Backend
from hpsearch.backends.common import ONE_THREAD_ENV, limit_threads
from hpsearch.records import FAILED, TrialResult, TrialTask
from hpsearch.scoped import environ

_POLL_S = 0.5


def _worker_main(conn: Connection, blob: bytes | None) -> None:
    """A worker's loop: receive a task, run it, send the result; ``None`` or EOF ends the process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    limit_threads()
    from hpsearch.objective import execute
    data = pickle.loads(blob) if blob is not None else None
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            break
        if task is None:
            break
        conn.send(execute(task, data))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)   # as Spark's Python workers end: no interpreter teardown (numba's: 0.2-0.4 s a worker)


class _Worker:
    """One worker process and the driver's end of its pipe."""

    def __init__(self, ctx: Any, blob: bytes | None) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, blob), daemon=True,
                                   name="hpsearch-worker")
        with environ(ONE_THREAD_ENV):
            self.process.start()
        child.close()
        self.task: TrialTask | None = None

    def stop(self, kill: bool = False) -> None:
        if kill and self.process.is_alive():
            self.process.kill()
        else:
            with suppress(OSError):
                self.conn.send(None)
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.conn.close()


class LocalBackend(Backend):
    """Trials in ``parallelism`` local worker processes.

    Args:
        parallelism: how many trials run at once (one process, one core each).
        data: the recipe's loaded data, sent to each worker once when it starts.
        master, study_name: unused (the Spark backend's master URL and job names).
    """

    def __init__(self, *, parallelism: int | None = None, data: Any = None, master: str | None = None,
                 study_name: str = "", spark: Any = None) -> None:
        self.parallelism = max(1, int(parallelism or os.cpu_count() or 1))
        self._blob = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL) if data is not None else None
        self._ctx = mp.get_context("spawn")
        self._idle: list[_Worker] = []
        self._busy: list[_Worker] = []
        self._cancelled = False

    def run(self, tasks: Iterable[TrialTask]) -> Iterator[TrialResult]:
        self._cancelled = False
        pending = iter(tasks)
        exhausted = False
        while True:
            while not exhausted and not self._cancelled and len(self._busy) < self.parallelism:
                task = next(pending, None)
                if task is None:
                    exhausted = True
                else:
                    self._dispatch(task)
            if not self._busy:
                return
            yield from self._collect()

    def _dispatch(self, task: TrialTask) -> None:
        worker = self._idle.pop() if self._idle else _Worker(self._ctx, self._blob)
        worker.task = task
        with suppress(OSError):   # the worker died already; _collect reports it as lost
            worker.conn.send(task)
        self._busy.append(worker)

    def _collect(self) -> Iterator[TrialResult]:
        """Wait for at least one worker to answer or die; yield what came in."""
        waitables = [w.conn for w in self._busy] + [w.process.sentinel for w in self._busy]
        wait(waitables, timeout=_POLL_S)
        for worker in list(self._busy):
            result = self._poll(worker)
            if result is not None:
                self._busy.remove(worker)
                yield result

    def _poll(self, worker: _Worker) -> TrialResult | None:
        task = worker.task
        try:
            if worker.conn.poll():
                result = worker.conn.recv()
                worker.task = None
                self._idle.append(worker)
                return result
        except (EOFError, OSError):
            pass
        if worker.process.is_alive() and not self._cancelled:
            return None
        worker.stop(kill=True)
        code = worker.process.exitcode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        reason = "cancelled" if self._cancelled else f"worker process died ({how})"
        return TrialResult(task.trial_id, task.number, FAILED, reason=reason, lost=True,
                           worker=f"local:{worker.process.pid}")

    def cancel(self) -> None:
        self._cancelled = True
        for worker in self._busy:
            if worker.process.is_alive():
                worker.process.kill()

    def close(self) -> None:
        for worker in self._idle + self._busy:
            worker.stop(kill=worker in self._busy)
        self._idle, self._busy = [], []
