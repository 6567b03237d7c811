"""What the backends share: the one thread limiter and a failed Spark job's line."""
from __future__ import annotations

import os
import sys

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
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:  # pragma: no cover
        pass
    if "numba" in sys.modules:
        try:
            sys.modules["numba"].set_num_threads(1)
        except (ValueError, AttributeError):
            pass
    _THREADS_LIMITED = True


def job_error(exc: BaseException) -> str:
    """One line for a failed Spark job: the Python worker's own words when Spark relays them."""
    text = " ".join(str(exc).split())
    for phrase in ("Python worker exited unexpectedly (crashed)", "Lost executor", "cancelled",
                   "canceled"):
        if phrase.lower() in text.lower():
            return "cancelled" if phrase == "canceled" else phrase
    return text[:200]
