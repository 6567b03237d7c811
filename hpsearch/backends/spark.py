"""The Spark backend: every trial is one Spark job of one task.

- Jobs are submitted from a driver thread pool capped at ``parallelism``, all under one uuid job group,
  each named after its study and trial (Spark UI: "lenet trial 3"), so ``cancel`` is one
  ``cancelJobGroup`` for the whole sweep.
- The executor receives a plain :class:`TrialTask` and returns a plain :class:`TrialResult`; an
  exception in the net comes back as a failed result (never a Spark retry of a bad configuration).
  An exception from the Spark job itself means the executor or its Python worker was lost: the trial
  is re-submitted, at most ``retries`` times.
- The task function consumes its input iterator, so Spark reuses the Python worker: its imports,
  compiled numba code and decoded data set survive from one trial to the next.
- The data set is loaded once on the driver, broadcast once per sweep, and unpickled once per
  Python worker. The driver trains one batch before fanning out, so the numba on-disk cache is warm
  for local workers.
"""
from __future__ import annotations

import functools
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Any

from hpsearch.backends._base import Backend
from hpsearch.records import FAILED, TrialResult, TrialTask

log = logging.getLogger("hpsearch.spark")

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


# --------------------------------------------------------------------------- session

def is_local_master(master: str | None) -> bool:
    return master is None or master.startswith("local")


def spark_session(master: str | None = None, parallelism: int | None = None,
                  app_name: str = "hpsearch", conf: Mapping[str, str] | None = None) -> Any:
    """Get or create the SparkSession. Local masters bind every endpoint (driver, UI) to 127.0.0.1.

    ``conf``: more Spark settings (a study's ``execution.spark_conf``), applied last; never logged.
    """
    from pyspark.sql import SparkSession

    if master is None:
        master = f"local[{parallelism}]" if parallelism else "local[*]"
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)   # workers run this interpreter
    if is_local_master(master) or "127.0.0.1" in master or "localhost" in master:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")   # the UI binds SPARK_LOCAL_IP
    builder = (SparkSession.builder.master(master).appName(app_name)
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.python.worker.reuse", "true")
               .config("spark.task.cpus", "1"))
    if is_local_master(master):
        builder = (builder.config("spark.driver.host", "127.0.0.1")
                   .config("spark.driver.bindAddress", "127.0.0.1"))
    for var in THREAD_VARS:
        builder = builder.config(f"spark.executorEnv.{var}", "1")
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # noqa: BLE001 - Py4J/Spark errors: unreachable master, refused secret
        from hpsearch.errors import BackendError
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise BackendError(f"cannot start Spark on {master}: {first.strip()[:300]}",
                           "check the master URL, and that execution.spark_conf (spark.authenticate, "
                           "its secret, spark.network.crypto.enabled) matches the cluster's") from None
    spark.sparkContext.setLogLevel("FATAL")   # lost tasks are reported by hpsearch, as values
    return spark


def spark_slots(sc: Any) -> int:
    """Task slots the session has now (cores / spark.task.cpus), at least 1."""
    cpus = int(sc.getConf().get("spark.task.cpus", "1"))
    return max(1, sc.defaultParallelism // max(1, cpus))


def driver_host(sc: Any) -> str:
    """The address executors use to reach the driver (and so the pruning channel)."""
    return sc.getConf().get("spark.driver.host", None) or socket.gethostbyname(socket.gethostname())


# --------------------------------------------------------------------------- executor side

_THREADS_LIMITED = False


def _limit_threads() -> None:
    """One BLAS/numba thread per task (once per Python worker: threadpoolctl scans libraries)."""
    global _THREADS_LIMITED
    if _THREADS_LIMITED:
        return
    for var in THREAD_VARS:
        os.environ[var] = "1"
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:  # pragma: no cover
        pass
    _THREADS_LIMITED = True


def _worker_data(bc: Any) -> Any:
    """The broadcast data set. PySpark keeps one Broadcast object per id in each Python worker and
    caches its unpickled value on it, so with reused workers it is decoded once per worker."""
    return None if bc is None else bc.value


def run_partition(bc: Any, rows: Iterable[TrialTask]) -> Iterator[TrialResult]:
    """The Spark task: consume the input (so the worker is reused), train, return results as values."""
    from hpsearch.objective import execute

    tasks = list(rows)
    _limit_threads()
    data = _worker_data(bc)
    for task in tasks:
        yield execute(task, data)


# --------------------------------------------------------------------------- driver side

def _job_error(exc: BaseException) -> str:
    """One line for a failed Spark job: the Python worker's own words when Spark relays them."""
    text = " ".join(str(exc).split())
    for phrase in ("Python worker exited unexpectedly (crashed)", "Lost executor", "cancelled"):
        if phrase.lower() in text.lower():
            return phrase
    return text[:200]


def warm_numba(task: TrialTask, data: Any = None) -> None:
    """Train the task's net for two small batches, which compiles (or loads) every numba kernel it
    uses and writes them to the on-disk cache that local Python workers then load."""
    import nets

    from hpsearch.objective import load_data, resolve_recipe

    recipe = resolve_recipe(task.net)
    if data is None or isinstance(data, str):
        data = load_data(recipe, data or task.data_path, task.data_limit)
    params = nets.recipes.resolve_params(recipe, task.train_params())
    bs = params["batch_size"]
    tiny = nets.Data(data.train.subset(2 * bs), data.val.subset(bs), data.source)
    nets.train(recipe, params, tiny, epochs=1, seed=task.seed)


class SparkBackend(Backend):
    """Trials as one-task Spark jobs; see the module docstring."""

    retry_lost = False   # lost workers are retried here, as Spark jobs; the driver must not retry too
    dispatch_ahead = True  # a freed slot is refilled before its result is handed to the driver

    def __init__(self, parallelism: int | None = None, data: Any = None, master: str | None = None,
                 spark: Any = None, study_name: str = "hpsearch", retries: int = 2) -> None:
        self.spark = spark or spark_session(master, parallelism, app_name=f"hpsearch {study_name}")
        self.sc = self.spark.sparkContext
        self.slots = spark_slots(self.sc)
        self.parallelism = max(1, parallelism or self.slots)
        self.study_name = study_name
        self.retries = retries
        self.group = f"hpsearch-{uuid.uuid4()}"
        self.report_host = "127.0.0.1" if is_local_master(self.sc.master) else driver_host(self.sc)
        self._data = data
        self._bc = None
        self._cancelled = threading.Event()
        self._warmed: set[str] = set()

    # the broadcast is made on first use, so building a backend costs nothing more than the session
    def _broadcast(self) -> Any:
        if self._bc is None and self._data is not None:
            self._bc = self.sc.broadcast(self._data)
        return self._bc

    def _warm(self, task: TrialTask) -> None:
        """Compile (or load) the net's numba code on the driver, so local workers find a warm cache."""
        # only the built-in nets: a user's net is user code, which must not run (or crash) here
        if task.net in self._warmed or ":" in task.net or not is_local_master(self.sc.master):
            return
        self._warmed.add(task.net)
        t0 = time.perf_counter()
        try:
            warm_numba(task, self._data)
        except Exception as exc:  # noqa: BLE001 - a bad config shows up in the trial itself
            log.info("warm-up of %s failed: %s", task.net, exc)
        log.info("numba code for %s ready in %.1f s", task.net, time.perf_counter() - t0)

    def _job(self, task: TrialTask) -> TrialResult:
        """Run one trial as one Spark job, retrying when the worker (not the net) failed."""
        error = ""
        for attempt in range(self.retries + 1):
            if self._cancelled.is_set():
                break
            self.sc.setJobGroup(self.group, f"{self.study_name} trial {task.number}", True)
            rdd = self.sc.parallelize([replace(task, attempt=attempt)], 1)
            try:
                return rdd.mapPartitions(functools.partial(run_partition, self._bc)).collect()[0]
            except Exception as exc:  # noqa: BLE001 - the job failed: a worker was lost or cancelled
                error = _job_error(exc)
                if not self._cancelled.is_set():
                    log.warning("trial %d: Spark task lost (attempt %d of %d): %s", task.number,
                                attempt + 1, self.retries + 1, error[:120])
        reason = "cancelled" if self._cancelled.is_set() else \
            f"worker lost {self.retries + 1} times; last error: {error}"
        return TrialResult(task.trial_id, task.number, FAILED, reason=reason, lost=True)

    def run(self, tasks: Iterable[TrialTask]) -> Iterator[TrialResult]:
        it = iter(tasks)
        pending: dict[Future, TrialTask] = {}
        self._broadcast()
        with ThreadPoolExecutor(self.parallelism, thread_name_prefix="hpsearch-trial") as pool:
            def submit_next() -> bool:
                if self._cancelled.is_set():
                    return False
                task = next(it, None)
                if task is None:
                    return False
                self._warm(task)
                pending[pool.submit(self._job, task)] = task
                return True

            while len(pending) < self.parallelism and submit_next():
                pass
            while pending:
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for fut in done:
                    pending.pop(fut)
                    # refill the slot first, then hand the result over: the driver's bookkeeping
                    # (Optuna tell, MLflow runs: ~0.2 s) overlaps the next trial instead of delaying
                    # it. The trial asked here does not see this one result (as if parallelism + 1).
                    submit_next()
                    yield fut.result()

    def cancel(self) -> None:
        self._cancelled.set()
        self.sc.cancelJobGroup(self.group)

    def close(self) -> None:
        if self._bc is not None:
            try:
                self._bc.unpersist()
            except Exception:  # noqa: BLE001 - the session may be gone already
                pass
            self._bc = None
