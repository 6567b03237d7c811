"""The driver's MLflow writes for trial verdicts: kept on disk first, written by one background thread.

A verdict is told to Optuna (the record of truth) and then handed to a :class:`Writer`: the record
(params, every epoch's metrics, tags, status, times, and the weights as a file) is appended to the
study's :class:`Spool`, and the writer's thread writes it to MLflow in order (a tracking server
gets several threads, a trial's calls in order on one of them). A write that fails
(the tracking server stopped, restarting, unreachable) leaves the record in the spool and is retried
with backoff (1 s doubling to 30 s) while the sweep runs; at the sweep's end the writer waits a
grace period for it, and what is still not written is written by the next ``hpsearch run`` of the
study (:meth:`hpsearch.tracking.Tracker.reconcile`). Writing a record twice leaves one run: the run
is found by its trial tags before one is created, metrics carry fixed timestamps (MLflow ignores an
identical metric logged again), params are logged with the same values. Only stdlib here.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

LOG = logging.getLogger("hpsearch.tracking")
BACKOFF_S = (1.0, 30.0)    # first retry after 1 s, doubling, at most 30 s apart
STOP_WAIT_S = 15.0    # after Ctrl-C: how long the record being written may still take
QUICK_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
"""MLflow's HTTP settings during a sweep: each call is made once (MLflow's own retries would block
the driver for minutes against a stopped server); the writer retries with its own backoff."""


def spool_dir(storage: str, study: str) -> Path:
    """Where a study's unwritten MLflow records wait: beside a SQLite study store
    (``lenet.optuna.db`` -> ``lenet.optuna.db.mlflow-spool/``), else in the user's state directory
    (``$XDG_STATE_HOME/hpsearch/mlflow-spool/<hash of the storage URL and study>``)."""
    if storage.startswith("sqlite:///"):
        from hpsearch.storage import sqlite_path
        path = sqlite_path(storage)
        if path is not None:
            return path.resolve().parent / (path.name + ".mlflow-spool")
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    digest = hashlib.sha256(f"{storage}\n{study}".encode()).hexdigest()[:16]
    return state / "hpsearch" / "mlflow-spool" / digest


class Spool:
    """A study's folder in the spool directory: an append-only JSON-lines file of records (each with a
    unique ``key``) and ``{"done": key}`` lines, plus ``<key>.npz`` for a record with weights. Removed
    once every record is done."""

    def __init__(self, directory: Path, study: str) -> None:
        self.dir = directory / study
        self.path = self.dir / "records.jsonl"
        self._lock = threading.Lock()
        self._open: set[str] = set(self._read())

    def _read(self) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (FileNotFoundError, NotADirectoryError):
            return records
        for line in lines:
            try:
                item = json.loads(line)
            except ValueError:
                continue                # a line cut short by a killed driver: its record is not done
            if "done" in item:
                records.pop(item["done"], None)
            elif "key" in item:
                records[item["key"]] = item
        return records

    def pending(self) -> list[dict[str, Any]]:
        """The records not yet written, oldest first."""
        with self._lock:
            return list(self._read().values())

    def add(self, record: dict[str, Any], weights: bytes | None) -> None:
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            if weights is not None:
                (self.dir / f"{record['key']}.npz").write_bytes(weights)
            self._append(record)
            self._open.add(record["key"])

    def weights(self, record: dict[str, Any]) -> bytes | None:
        if not record.get("weights"):
            return None
        try:
            return (self.dir / f"{record['key']}.npz").read_bytes()
        except OSError:
            return None

    def done(self, key: str) -> None:
        with self._lock:
            self._open.discard(key)
            if self._open:
                self._append({"done": key})
                return
            for p in self.dir.glob("*"):     # nothing left: no folder
                p.unlink(missing_ok=True)
            for d in (self.dir, self.dir.parent):
                try:
                    d.rmdir()
                except OSError:
                    break

    def __len__(self) -> int:
        return len(self._open)

    def _append(self, item: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(item, separators=(",", ":")) + "\n")


class Writer:
    """Background threads that write records with ``write(record, weights)``; a record that fails
    stays in the spool and is retried with backoff. ``down`` is true from a failure until the next
    success (the driver then skips its own MLflow call).

    ``lanes`` threads write at once (a tracking server answers several requests in parallel, and a
    remote one's round trips then overlap): a trial's calls (its run's creation, then its record)
    go to one lane, in order; a sweep's record (no ``number``) is written after every record queued
    before it, on any lane."""

    def __init__(self, write: Callable[[dict[str, Any], bytes | None], None], spool: Spool,
                 lanes: int = 1) -> None:
        self.write, self.spool = write, spool
        self.down = False
        self.error = ""
        self._deadline: float | None = None
        self._wake = threading.Event()
        self._queues: list[queue.SimpleQueue[Any]] = [queue.SimpleQueue() for _ in range(max(1, lanes))]
        self._first: list[queue.SimpleQueue[Callable[[], None]]] = [queue.SimpleQueue() for _ in self._queues]
        self._threads = [threading.Thread(target=self._run, args=(i,), name=f"hpsearch-mlflow-{i}", daemon=True)
                         for i in range(len(self._queues))]
        for thread in self._threads:
            thread.start()

    def put(self, record: dict[str, Any], weights: bytes | None = None) -> None:
        """Spool ``record`` (durable before this returns) and queue it for the thread."""
        self.keep(record, weights)
        self.send(record, weights)

    def keep(self, record: dict[str, Any], weights: bytes | None = None) -> None:
        """Spool ``record`` only: a rerun writes it if this process dies before :meth:`send`."""
        try:
            self.spool.add(record, weights)
        except OSError as exc:           # no spool (read-only disk): the write is still queued
            LOG.warning("MLflow spool %s: %s", self.spool.dir, exc)

    def send(self, record: dict[str, Any], weights: bytes | None = None) -> None:
        """Queue a spooled ``record`` for its lane."""
        number = record.get("number")
        if isinstance(number, int):
            self._queues[number % len(self._queues)].put((record, weights, ()))
            return
        others = [threading.Event() for _ in self._queues[1:]]   # the sweep's: after the other lanes
        for q, passed in zip(self._queues[1:], others):
            q.put(passed)
        self._queues[0].put((record, weights, others))

    def first(self, call: Callable[[], None], key: int = 0) -> None:
        """Run ``call`` on trial ``key``'s lane ahead of every record not yet being written (a
        trial's run, created while the trial runs); it must not raise."""
        self._first[key % len(self._queues)].put(call)
        self._queues[key % len(self._queues)].put(_FIRST)

    def trip(self, exc: BaseException) -> None:
        """The driver's own MLflow call failed: MLflow is down until a lane writes again."""
        self.down, self.error = True, _one_line(exc)

    def close(self, grace_s: float) -> int:
        """Write what is queued; while MLflow is down, retry for at most ``grace_s`` seconds.
        Returns how many records are left in the spool for the next run."""
        self._deadline = time.monotonic() + grace_s
        for q in self._queues:
            q.put(None)
        self._wake.set()
        try:
            for thread in self._threads:
                thread.join()
        except KeyboardInterrupt:
            # Ctrl-C while the last records are written (the plots, say): the records being
            # written are finished, the rest stay in the spool for the next run; no thread is left
            # running MLflow code while the interpreter exits
            self._deadline, self._stopping = time.monotonic(), True
            self._wake.set()
            end = time.monotonic() + STOP_WAIT_S
            for thread in self._threads:
                thread.join(max(0.0, end - time.monotonic()))
            raise
        return len(self.spool)

    _stopping = False

    def _run(self, lane: int) -> None:
        while (item := self._queues[lane].get()) is not None:
            if isinstance(item, threading.Event):       # a sweep's record waits for this point
                item.set()
                continue
            while not self._stopping:
                try:
                    self._first[lane].get_nowait()()
                except queue.Empty:
                    break
            if item is not _FIRST and not self._stopping:
                for passed in item[2]:
                    passed.wait()
                if not self._stopping:       # Ctrl-C while it waited: the rest stays spooled
                    self._write(item[0], item[1])

    def _write(self, record: dict[str, Any], weights: bytes | None) -> None:
        delay = BACKOFF_S[0]
        while not (self.down and self._left() <= 0):
            try:
                self.write(record, weights)
            except Exception as exc:  # noqa: BLE001 - any MLflow or network error: retried
                if _permanent(exc):
                    LOG.warning("MLflow refused the run of %s (not retried): %s", record["key"], _one_line(exc))
                    break
                if not self.down:
                    LOG.warning("MLflow: cannot write (%s); the runs wait in %s and are retried",
                                _one_line(exc), self.spool.dir)
                self.down, self.error = True, _one_line(exc)
                if self._wake.wait(min(delay, max(0.0, self._left()))):
                    self._wake.clear()          # close() woke it: its deadline now applies
                delay = min(2 * delay, BACKOFF_S[1])
                continue
            self.down = False
            break
        else:
            return                              # left in the spool for the next run
        self.spool.done(record["key"])

    def _left(self) -> float:
        """Seconds until the deadline (infinite before close())."""
        return float("inf") if self._deadline is None else self._deadline - time.monotonic()


_FIRST = ("first",)     # a queue entry that only wakes the thread for the calls of Writer.first


def _permanent(exc: BaseException) -> bool:
    """A request MLflow rejects as such (HTTP 400): retrying cannot help."""
    return getattr(exc, "get_http_status_code", lambda: None)() == 400


def _one_line(exc: BaseException) -> str:
    from hpsearch.errors import redact
    return redact(f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
