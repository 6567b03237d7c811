"""The driver's journal file: Optuna's JournalFileBackend, written the way one driver needs.

Optuna's file backend takes a symlink lock and fsyncs for every log line (one per parameter, user
attribute, state change) and JournalStorage reads each line back from the file. One driver owns a
study (:func:`hpsearch.storage.driver_lock`), so here each line is appended at once under a plain
``flock`` and read back from memory while no other process appends; the file is fsynced at most
once a second while lines come, and when the driver closes it. A killed driver loses nothing it
wrote (the lines are in the page cache); a power cut can lose the last lines, never the lines
before them, as SQLite with ``synchronous=NORMAL`` would. Readers (``hpsearch show``) use Optuna's
own read path, which skips a partial last line.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from typing import Any

from optuna.storages.journal import JournalFileBackend

SYNC_EVERY_S = 1.0


class DriverJournal(JournalFileBackend):
    """A journal file that this process appends to and reads its own lines back from memory.

    Before the first append, a partial last line (a writer killed mid-line) is cut off, so the
    next line does not join it. Once another process appends too (the file is not as this one
    left it), every read goes back to the file, as Optuna's backend does.
    """

    def __init__(self, file_path: str) -> None:
        super().__init__(file_path)
        self._fd: int | None = None
        self._alone = True                   # only this process has appended since it first did
        self._base = 0                       # lines in the file when this process first wrote
        self._mine: list[dict[str, Any]] = []
        self._size = 0                       # bytes in the file, as this process left it
        self._synced = time.monotonic()

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        if self._fd is not None and self._alone and os.fstat(self._fd).st_size != self._size:
            self._alone = False
        if self._fd is None or not self._alone or log_number_from < self._base:
            return super().read_logs(log_number_from)
        return iter(self._mine[log_number_from - self._base:])

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        lines = [(json.dumps(log, separators=(",", ":")) + "\n").encode() for log in logs]
        fd = self._fd if self._fd is not None else self._open_for_append()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            size = os.fstat(fd).st_size
            self._alone = self._alone and size == self._size
            view = memoryview(b"".join(lines))
            while view:
                view = view[os.write(fd, view):]
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        self._size = size
        if self._alone:                      # where each line starts, for Optuna's reader
            n = self._base + len(self._mine)
            for i, line in enumerate(lines):
                self._size += len(line)
                self._log_number_offset[n + i + 1] = self._size
            self._mine.extend(logs)
        if time.monotonic() - self._synced > SYNC_EVERY_S:
            self.sync()

    def sync(self) -> None:
        """fsync what was appended (at most a second old anyway)."""
        if self._fd is not None:
            os.fdatasync(self._fd)
        self._synced = time.monotonic()

    def _open_for_append(self) -> int:
        """Open the file to append past the last line read (every line replayed so far)."""
        self._base = max(self._log_number_offset)
        self._size = self._log_number_offset[self._base]
        fd = os.open(self._file_path, os.O_WRONLY | os.O_APPEND)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_size != self._size and self._tail_is_partial():
                os.truncate(fd, self._size)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BaseException:
            os.close(fd)                     # which releases the lock
            raise
        self._fd = fd
        return fd

    def _tail_is_partial(self) -> bool:
        with open(self._file_path, "rb") as f:
            f.seek(self._size)
            return b"\n" not in f.read()

    def close(self) -> None:
        """fsync and close the file (reads then go to the file, as for a reader)."""
        if self._fd is not None:
            self.sync()
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        try:                       # at exit, modules (contextlib too) may be half torn down
            self.close()
        except Exception:  # noqa: BLE001, S110 - nothing to report to at interpreter exit
            pass
