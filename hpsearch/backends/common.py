"""What the backends share: the one thread limiter, a failed Spark job's line and its retries."""
from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from contextlib import suppress

from hpsearch.records import FAILED, TrialResult, TrialTask

log = logging.getLogger("hpsearch.spark")

ONE_THREAD_ENV = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                   "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                                   "NUMEXPR_NUM_THREADS")}
"""The variables that limit every BLAS, OpenMP and numba pool to one thread (a worker's env)."""

_THREADS_LIMITED = False


def limit_threads() -> None:
    """One thread for every pool in this worker process: the env covers pools loaded later,
    threadpoolctl and numba the ones already loaded. Once per process (threadpoolctl scans
    the loaded libraries)."""
    global _THREADS_LIMITED
    if _THREADS_LIMITED:
        return
    os.environ.update(ONE_THREAD_ENV)
    with suppress(ImportError):
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    if "numba" in sys.modules:
        with suppress(ValueError, AttributeError):
            sys.modules["numba"].set_num_threads(1)
    _THREADS_LIMITED = True


def job_error(exc: BaseException) -> str:
    """One line for a failed Spark job: the Python worker's own words when Spark relays them."""
    text = " ".join(str(exc).split())
    for phrase in ("Python worker exited unexpectedly (crashed)", "Lost executor", "cancelled",
                   "canceled"):
        if phrase.lower() in text.lower():
            return "cancelled" if phrase == "canceled" else phrase
    return text[:200]


def retried(task: TrialTask, attempt: Callable[[int], TrialResult], retries: int,
            cancelled: threading.Event, name: str, words: tuple[str, str] = ("Spark task lost", "worker lost"),
            error_of: Callable[[BaseException], str] = job_error, where: str = "") -> TrialResult:
    """``attempt(k)`` (k = 0, 1, ...: a Spark job) run again while its job fails (a worker lost,
    not the net: the net's errors come back as results), at most ``retries`` times more; then a
    lost result, ``words[1]`` in its reason (``words[0]`` in the log line of each failure)."""
    error = ""
    for k in range(retries + 1):
        if cancelled.is_set():
            break
        try:
            return attempt(k)
        except Exception as exc:  # noqa: BLE001 - the job failed: a worker was lost or cancelled
            error = error_of(exc)
            if not cancelled.is_set():
                log.warning("%s: %s (attempt %d of %d): %s", name, words[0], k + 1, retries + 1, error[:160])
    reason = "cancelled" if cancelled.is_set() else f"{words[1]} {retries + 1} times{where}; last error: {error}"
    return TrialResult(task.trial_id, task.number, FAILED, reason=reason, lost=True)
