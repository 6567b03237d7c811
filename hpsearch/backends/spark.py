"""The Spark backend: every trial is one Spark job, on classic Spark and on Spark Connect alike.

- Each trial is a one-task job: on Spark Connect (``sc://``, managed and shared clusters, where
  ``sparkContext`` and RDDs do not exist) a DataFrame job (``spark.range(1).mapInArrow(...)``), on
  classic Spark the same task function as an RDD job (:meth:`SparkBackend.collect`: a first job
  2 s sooner). Jobs are submitted from a driver thread pool capped
  at ``parallelism``, each tagged with the sweep's tag and named after its trial ("lenet trial 3"),
  so ``cancel`` is one call for the whole sweep. Naming and cancelling are the one place where the
  two APIs differ besides the job itself (:class:`_JobTags`): classic Spark's session tags do not
  interrupt DataFrame jobs run from other threads (measured: ``interruptTag`` found nothing), its
  SparkContext job tags do.
- The executor receives a plain :class:`TrialTask` and returns a plain :class:`TrialResult`; an
  exception in the net comes back as a failed result (never a Spark retry of a bad configuration).
  An exception from the Spark job itself means the executor or its Python worker was lost: the trial
  is re-submitted, at most ``retries`` times.
- The task function consumes its input, so Spark reuses the Python worker: its imports, compiled
  numba code and decoded data set survive from one trial to the next.
- The data set is pickled once on the driver and added to the session as a file artifact
  (``addArtifacts(file=True)``: classic and Connect alike, no ``broadcast``); every Python worker
  reads and decodes it once (:func:`worker_data`). The driver trains one batch before fanning out,
  so the numba on-disk cache is warm for workers on this machine.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import pickle
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import replace
from typing import Any
from urllib.parse import urlparse

from hpsearch.backends._base import Backend
from hpsearch.backends.common import ONE_THREAD_ENV, job_error, limit_threads, retried
from hpsearch.backends.spark_slots import SlotFeeder, slot_loop
from hpsearch.errors import BackendError
from hpsearch.records import PruningChannel, TrialResult, TrialTask

log = logging.getLogger("hpsearch.spark")

THREAD_VARS = tuple(ONE_THREAD_ENV)
RESULT_SCHEMA = "result binary"


# --------------------------------------------------------------------------- session

def is_connect(spark: Any) -> bool:
    """Whether ``spark`` is a Spark Connect session (no ``sparkContext``, no RDDs)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def _loopback(host: str | None) -> bool:
    from hpsearch.pruning import is_loopback
    return bool(host) and is_loopback(host)


def is_local_master(master: str | None) -> bool:
    """Whether the executors run on this machine: ``local[...]``, or a Connect server on loopback."""
    if master is None or master.startswith("local"):
        return True
    return master.startswith("sc://") and _loopback(urlparse(master).hostname)


@contextmanager
def _env_defaults(values: dict[str, str]) -> Iterator[None]:
    """Set the variables not set yet while the block runs (the JVM reads them as it starts)."""
    added = [k for k in values if k not in os.environ]
    for k in added:
        os.environ[k] = values[k]
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def spark_session(master: str | None = None, parallelism: int | None = None,
                  app_name: str = "hpsearch", conf: Mapping[str, str] | None = None,
                  archive: bool = False) -> Any:
    """Get or create the SparkSession: Spark Connect for ``sc://`` masters, classic otherwise.

    Local masters bind every endpoint (driver, UI) to 127.0.0.1. ``conf``: more Spark settings (a
    study's ``execution.spark_conf``), applied last; never logged. ``archive``: a new driver JVM
    maps Spark's classes from hpsearch's class-data archive (:mod:`hpsearch.backends.jvm_archive`;
    ``conf`` then holds hpsearch's own driver Java options).
    """
    if master is not None and master.startswith("sc://"):
        return _connect_session(master)
    from pyspark.sql import SparkSession

    if master is None:
        master = f"local[{parallelism}]" if parallelism else "local[*]"
    env = {"PYSPARK_PYTHON": sys.executable}          # workers run this interpreter
    if is_local_master(master) or "127.0.0.1" in master or "localhost" in master:
        env["SPARK_LOCAL_IP"] = "127.0.0.1"             # the UI binds SPARK_LOCAL_IP
    builder = (SparkSession.builder.master(master).appName(app_name)
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.python.worker.reuse", "true")
               .config("spark.task.cpus", "1"))
    if is_local_master(master):
        builder = (builder.config("spark.driver.host", "127.0.0.1")
                   .config("spark.driver.bindAddress", "127.0.0.1"))
    builder.config(map={f"spark.executorEnv.{var}": "1" for var in THREAD_VARS})

    def get_or_create(settings: Mapping[str, str]) -> Any:
        with _env_defaults(env):
            return builder.config(map=dict(settings)).getOrCreate()

    try:
        if archive:
            from hpsearch.backends.jvm_archive import start
            spark = start(get_or_create, dict(conf or {}))
        else:
            spark = get_or_create(conf or {})
    except Exception as exc:  # noqa: BLE001 - Py4J/Spark errors: unreachable master, refused secret
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise BackendError(f"cannot start Spark on {master}: {first.strip()[:300]}",
                           "check the master URL, and that execution.spark_conf (spark.authenticate, "
                           "its secret, spark.network.crypto.enabled) matches the cluster's") from None
    spark.sparkContext.setLogLevel("FATAL")   # lost tasks are reported by hpsearch, as values
    return spark


def _connect_session(url: str) -> Any:
    try:
        from pyspark.sql import SparkSession   # sets pyspark's Connect mode, as other tools expect
        from pyspark.sql.connect.utils import check_dependencies
        check_dependencies()
    except ImportError as exc:
        raise BackendError(f"Spark Connect ({url}) needs {exc.name or exc}",
                           "pip install 'hpsearch[spark]'") from None
    try:
        return SparkSession.builder.remote(url).getOrCreate()
    except Exception as exc:  # noqa: BLE001 - a bad URL or a server that does not answer
        text = " ".join(str(exc).split())[:200]
        raise BackendError(f"cannot open a Spark Connect session at {_public_url(url)}: {text}",
                           "check the URL (sc://host:15002) and that the server runs") from None


def _public_url(url: str) -> str:
    """``url`` without its parameters (``;token=...`` and the like)."""
    return url.split(";", 1)[0]


def _connect_url(spark: Any) -> str:
    client = getattr(spark, "client", None) or getattr(spark, "_client", None)
    builder = getattr(client, "_builder", None)
    return str(getattr(builder, "url", "") or getattr(builder, "_url", "") or "")


def spark_slots(spark: Any, fallback: int | None = None) -> int:
    """Task slots the session has now (cores / spark.task.cpus), at least 1.

    Connect has no ``defaultParallelism``: its ``spark.default.parallelism`` when set, else the
    cores of a ``local[N]`` master, else ``fallback`` (the parallelism asked for) or 1.
    """
    def conf(key: str) -> str | None:
        try:
            return spark.conf.get(key, None)
        except Exception:  # noqa: BLE001 - a key the server does not expose
            return None

    cpus = max(1, int(conf("spark.task.cpus") or 1))
    if not is_connect(spark):
        return max(1, spark.sparkContext.defaultParallelism // cpus)
    cores = conf("spark.default.parallelism")
    if not cores:
        m = re.fullmatch(r"local\[(\d+|\*)(?:,\d+)?\]", conf("spark.master") or "")
        if m:
            cores = os.cpu_count() if m.group(1) == "*" else m.group(1)
    return max(1, int(cores) // cpus) if cores else max(1, fallback or 1)


def report_host(spark: Any) -> str:
    """The address executors use to reach this process (and so the pruning channel)."""
    if is_connect(spark):
        server = urlparse(_connect_url(spark).replace("sc://", "http://", 1)).hostname or ""
        return "127.0.0.1" if not server or _loopback(server) else _outbound_address(server)
    conf = spark.sparkContext.getConf()
    if is_local_master(spark.sparkContext.master):
        return "127.0.0.1"
    return conf.get("spark.driver.host", None) or socket.gethostbyname(socket.gethostname())


def _outbound_address(host: str) -> str:
    """This machine's address on the route to ``host`` (a UDP connect sends nothing)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, 15002))
            return s.getsockname()[0]
    except OSError:
        return socket.gethostbyname(socket.gethostname())


class _JobTags:
    """Names and cancels the sweep's jobs: the one place where classic Spark and Connect differ.

    Tags are per thread (each trial's driver thread tags its own job). Spark's UI shows them
    (``jobTags``); classic Spark also shows the description.
    """

    def __init__(self, spark: Any, sweep_tag: str) -> None:
        self.spark, self.sweep = spark, sweep_tag
        self.connect = is_connect(spark)

    @contextmanager
    def job(self, name: str) -> Iterator[None]:
        tags = (self.sweep, name.replace(",", " "))
        on = self.spark if self.connect else self.spark.sparkContext
        add, remove = (on.addTag, on.removeTag) if self.connect else (on.addJobTag, on.removeJobTag)
        if not self.connect:
            on.setJobDescription(name)
        for t in tags:
            add(t)
        try:
            yield
        finally:
            for t in tags:
                remove(t)
            if not self.connect:
                on.setJobDescription(None)

    def cancel(self) -> None:
        if self.connect:
            self.spark.interruptTag(self.sweep)
        else:
            self.spark.sparkContext.cancelJobsWithTag(self.sweep)


# --------------------------------------------------------------------------- executor side

_WORKER_DATA: OrderedDict[str, Any] = OrderedDict()
_MAX_DATA_SETS = 2


def worker_data(name: str | None) -> Any:
    """The sweep's data set, read from its session artifact once per Python worker (the last two
    data sets are kept, so a worker that serves two sweeps does not decode one twice)."""
    if name is None:
        return None
    if name not in _WORKER_DATA:
        from pyspark import SparkFiles
        with open(SparkFiles.get(name), "rb") as fh:
            _WORKER_DATA[name] = pickle.load(fh)
        while len(_WORKER_DATA) > _MAX_DATA_SETS:
            _WORKER_DATA.popitem(last=False)
    _WORKER_DATA.move_to_end(name)
    return _WORKER_DATA[name]


def result_row(obj: Any) -> bytes:
    """``obj`` pickled: what every hpsearch Spark task yields (one row of ``RESULT_SCHEMA``)."""
    return pickle.dumps(obj)


def run_partition(data_name: str | None, task: TrialTask, rows: Iterable[int]) -> Iterator[bytes]:
    """The Spark task: consume the input (so the worker is reused), train, return the result."""
    from hpsearch.objective import execute

    for _ in rows:
        pass
    limit_threads()
    yield result_row(execute(task, worker_data(data_name)))


def _in_arrow(fn: Callable[[Iterable[int]], Iterator[bytes]], batches: Iterable[Any]) -> Iterator[Any]:
    """``fn`` as a ``mapInArrow`` function (Spark Connect): its row ids out of the Arrow batches,
    each of its results as a one-row batch. Classic Spark runs ``fn`` as an RDD task, so its
    Python workers never import pyarrow (nor pandas, which pyarrow's ``from_pydict`` imports:
    0.4 s of a worker's start here)."""
    import pyarrow as pa
    schema = pa.schema([("result", pa.binary())])
    for row in fn(k for batch in batches for k in batch.column(0).to_pylist()):
        yield pa.RecordBatch.from_pydict({"result": [row]}, schema=schema)


def _prestart(data_name: str | None, rows: Iterable[int]) -> Iterator[bytes]:
    """A task that readies its Python worker for trials: imports, one thread, the data decoded."""
    import hpsearch.objective  # noqa: F401 - imports nets (numba) and the trial's code

    for _ in rows:
        pass
    limit_threads()
    worker_data(data_name)
    yield result_row(os.getpid())


def _probe(channel: PruningChannel, rows: Iterable[int]) -> Iterator[bytes]:
    """A task that dials the pruning channel and returns why it could not (``None``: it could)."""
    from hpsearch.pruning import ping

    for _ in rows:
        pass
    yield result_row(ping(channel, timeout=10.0))


# --------------------------------------------------------------------------- driver side

_SHIPPED_DIR: list[str] = []


def _shipped_dir() -> str:
    """This process's folder of shipped data sets, removed when it exits: classic Spark fetches an
    added file from its source whenever an executor first needs it, so the source must outlive
    the sweep (a later sweep on the same session may reuse it)."""
    if not _SHIPPED_DIR:
        import atexit
        _SHIPPED_DIR.append(tempfile.mkdtemp(prefix="hpsearch-data-"))
        atexit.register(shutil.rmtree, _SHIPPED_DIR[0], True)
    return _SHIPPED_DIR[0]


def ship_data(spark: Any, data: Any) -> str | None:
    """Pickle ``data`` once and add it to the session as a file artifact; returns its name."""
    if data is None:
        return None
    blob = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
    name = f"hpsearch-data-{hashlib.blake2b(blob, digest_size=12).hexdigest()}.pkl"
    path = os.path.join(_shipped_dir(), name)
    if not os.path.exists(path):
        with open(path + ".part", "wb") as fh:
            fh.write(blob)
        os.replace(path + ".part", path)
    try:
        spark.addArtifacts(path, file=True)
    except Exception as exc:  # noqa: BLE001 - the same content added by an earlier sweep
        if "exist" not in str(exc).lower():
            raise
    return name


def warm_numba(task: TrialTask, data: Any = None) -> None:
    """Train the task's net for two small batches, which compiles (or loads) every numba kernel it
    uses and writes them to the on-disk cache that local Python workers then load."""
    import nets

    from hpsearch.objective import prepare_run

    run = prepare_run(task, data)
    bs = run.config.batch_size
    nets.fit(run.model, run.loss, run.opt, run.data.train.subset(2 * bs), run.data.val.subset(bs),
             replace(run.config, epochs=1))


class SparkBackend(Backend):
    """Trials as one-task Spark jobs; see the module docstring."""

    retry_lost = False   # lost workers are retried here, as Spark jobs; the driver must not retry too
    rungs_ok = True      # trials can run rung by rung, pruned between jobs (spark_rungs)
    _rungs: Any = None   # a spark_rungs.Rungs once they do
    _decide: Callable[..., bool] | None = None
    _pruning_mode = "auto"
    _next_decision: Callable[[int], int] | None = None
    dispatch_ahead = True  # a freed slot is refilled before its result is handed to the driver

    def __init__(self, parallelism: int | None = None, data: Any = None, master: str | None = None,
                 spark: Any = None, study_name: str = "hpsearch", retries: int = 2,
                 dispatch: str = "auto", conf: Mapping[str, str] | None = None) -> None:
        self.spark = spark or spark_session(master, parallelism, app_name=f"hpsearch {study_name}",
                                            conf=conf)
        self.connect = is_connect(self.spark)
        self.master = master if spark is None else None
        self.slots = spark_slots(self.spark, parallelism)
        self.parallelism = max(1, parallelism or self.slots)
        self.study_name = study_name
        self.retries = retries
        self.tag = f"hpsearch-{uuid.uuid4()}"
        self._tags = _JobTags(self.spark, self.tag)
        self.report_host = report_host(self.spark)
        self.local = self._executors_here()
        self._data = data
        self._data_name: str | None = None
        self._shipped = False
        self._ship_lock = threading.Lock()
        self._cancelled = threading.Event()
        self._warmed: set[str] = set()
        self.dispatch = dispatch
        self.wants_channel = dispatch != "jobs"   # slot mode needs the channel, pruning or not
        self._slot_channel: PruningChannel | None = None
        self._feeder = SlotFeeder(self._start_slots, self.parallelism, retries, self._warm)
        self.next_trial = self._feeder.next_trial
        self._slot_pool: ThreadPoolExecutor | None = None
        self._prestarted = threading.Thread(target=self._prestart_workers, daemon=True,
                                            name="hpsearch-prestart")
        # classic local executors run the slots' job as soon as the sweep asks (no probe job before
        # it): the job starts the workers itself, and a job to start them first would delay it
        if not (self.wants_channel and self._dials_itself(self.report_host)):
            self._prestarted.start()

    def _prestart_workers(self) -> None:
        """Ship the data and start every slot's Python worker (imports, data decoded) while the
        driver opens the study and MLflow; the first trials then start on ready workers."""
        try:
            name = self._ship()
            self.collect(functools.partial(_prestart, name), f"{self.study_name} workers start",
                         tasks=self.slots)
        except Exception as exc:  # noqa: BLE001 - only a head start: trials report real problems
            log.info("starting the Python workers ahead failed: %s", job_error(exc))

    def _dials_itself(self, host: str) -> bool:
        """Classic local executors (threads of this process's JVM) dialling a loopback ``host``:
        nothing can be in the way (a Connect server that looks local may be a forwarded port)."""
        return self.local and not self.connect and _loopback(host)

    def _executors_here(self) -> bool:
        if self.connect:
            return is_local_master(self.master or _connect_url(self.spark) or "sc://?")
        return is_local_master(self.spark.sparkContext.master)

    # the data is shipped on first use, so building a backend costs nothing more than the session
    def _ship(self) -> str | None:
        with self._ship_lock:
            if not self._shipped:
                self._data_name = ship_data(self.spark, self._data)
                self._shipped = True
            return self._data_name

    def _warm(self, task: TrialTask) -> None:
        """Compile (or load) the net's numba code on the driver, so local workers find a warm cache."""
        # only the built-in nets: a user's net is user code, which must not run (or crash) here
        if task.net in self._warmed or ":" in task.net or not self.local:
            return
        self._warmed.add(task.net)
        t0 = time.perf_counter()
        try:
            warm_numba(task, self._data)
        except Exception as exc:  # noqa: BLE001 - a bad config shows up in the trial itself
            log.info("warm-up of %s failed: %s", task.net, exc)
        log.info("numba code for %s ready in %.1f s", task.net, time.perf_counter() - t0)

    def collect(self, fn: Callable[[Iterable[int]], Iterator[bytes]], name: str, tasks: int = 1,
                barrier: bool = False) -> list[Any]:
        """Run ``fn`` as one job of ``tasks`` tasks named ``name``; the objects its tasks returned.
        ``fn`` gets its task's row ids (0 .. tasks - 1, one each) and yields pickled objects.
        Connect runs a DataFrame job (``mapInArrow``); classic Spark the same task as an RDD job,
        whose first run took 1.5-1.7 s here against 3.8 s (no SQL planning, code generation or
        Arrow set-up on the JVM), later ones 0.06-0.13 s against 0.12-0.23."""
        with self._tags.job(name):
            if self.connect:
                df = self.spark.range(tasks, numPartitions=tasks).mapInArrow(
                    functools.partial(_in_arrow, fn), RESULT_SCHEMA, barrier=barrier)
                return [pickle.loads(row[0]) for row in df.collect()]
            rdd = self.spark.sparkContext.parallelize(range(tasks), tasks)
            rdd = rdd.barrier() if barrier else rdd
            return [pickle.loads(b) for b in rdd.mapPartitions(fn).collect()]

    def use_pruner(self, decide: Callable[..., bool], mode: str = "auto",
                   next_decision: Callable[[int], int] | None = None) -> bool:
        """Keep the pruner's ``decide``, to prune between jobs where the executors cannot reach the
        channel (:mod:`hpsearch.backends.spark_rungs`); ``True`` when ``mode`` is ``rungs``: no channel."""
        self._decide, self._pruning_mode, self._next_decision = decide, mode, next_decision
        if mode == "rungs":
            self._by_rungs()
            if self._prestarted.ident is None:
                self._prestarted.start()        # no slots after all: start the workers ahead
        return self._rungs is not None

    def _by_rungs(self) -> None:
        from hpsearch.backends.spark_rungs import Rungs
        if not self.rungs_ok:
            raise BackendError("data-parallel trials cannot be pruned between jobs",
                               "set execution.pruning_mode: channel, or pruner: none")
        self._rungs = Rungs(self.collect, self._decide, self._cancelled, self.study_name, self.retries,
                            self._next_decision)

    def check_channel(self, channel: PruningChannel, required: bool = True) -> str | None:
        """One task dials the channel before any trial. When it can, trials run in slot mode (see
        :mod:`hpsearch.backends.spark_slots`). When it cannot: one job per trial if the study does
        not prune (not ``required``), rung by rung if it prunes and allows that (both with a note
        saying so), else BackendError. No probe where nothing can be in the way: classic local
        executors (threads of this process's JVM) dialling the loopback address the driver itself
        listens on (a Connect server that looks local may still be a container's forwarded port)."""
        certain = channel.listens and self._dials_itself(channel.host)
        why = None if certain else \
            self.collect(functools.partial(_probe, channel), f"{self.study_name} channel check")[0]
        if why is None:
            if self.wants_channel and self._rungs is None:
                self._slot_channel = channel
            return None
        if self._prestarted.ident is None:
            self._prestarted.start()
        if not required:
            return (f"Spark executors cannot reach the driver at {channel.host}:{channel.port} ({why}); "
                    "one Spark job per trial instead")
        where = f"Spark executors cannot reach the pruning channel at {channel.host}:{channel.port} ({why})"
        if self._decide is not None and self._pruning_mode == "auto" and self.rungs_ok:
            self._by_rungs()
            return f"{where}; pruning between Spark jobs instead, one job per rung (execution.pruning_mode)"
        raise BackendError(where, "set execution.report_host to an address of this machine that the "
                           "executors can reach (execution.report_bind: the address to listen on)"
                           + (", execution.pruning_mode: rungs to prune between jobs" if self.rungs_ok
                              else "") + ", or run without pruning (pruner: none)")

    def _attempt(self, task: TrialTask) -> TrialResult:
        fn = functools.partial(run_partition, self._data_name, task)
        return self.collect(fn, f"{self.study_name} trial {task.number}")[0]

    def _job(self, task: TrialTask) -> TrialResult:
        """Run one trial as one Spark job, retrying when the worker (not the net) failed."""
        if self._rungs is not None:
            return self._rungs.run(task, self._data_name)
        return retried(task, lambda k: self._attempt(replace(task, attempt=k)), self.retries, self._cancelled,
                       f"trial {task.number}", self.lost_words, self._job_error)

    _job_error = staticmethod(job_error)
    lost_words = ("Spark task lost", "worker lost")   # for the log line, for the trial's reason

    def _start_slots(self, slots: list[str]) -> None:
        assert self._slot_pool is not None
        self._slot_pool.submit(self._slot_job, slots)

    def _slot_job(self, slots: list[str]) -> None:
        """The long-lived job of ``slots``, one task each (on a driver thread); tells the feeder
        when it ended."""
        error = None
        fn = functools.partial(slot_loop, self._slot_channel, self._data_name, slots,
                               None if self.local else self.study_name)
        name = f"slot {slots[0]}" if len(slots) == 1 else f"slots {slots[0]}-{slots[-1]}"
        try:
            self.collect(fn, f"{self.study_name} {name}", tasks=len(slots))
        except Exception as exc:  # noqa: BLE001 - a lost executor or worker, or a cancel
            error = "cancelled" if self._cancelled.is_set() else self._job_error(exc)
        for slot in slots:
            self._feeder.job_ended(slot, error)

    def run(self, tasks: Iterable[TrialTask]) -> Iterator[TrialResult]:
        if self._slot_channel is not None:
            return self._run_slots(tasks)
        return self._run_jobs(tasks)

    def _run_slots(self, tasks: Iterable[TrialTask]) -> Iterator[TrialResult]:
        self._ship()
        self._end_slot_jobs()    # a run before this one: its jobs end first
        self._slot_pool = ThreadPoolExecutor(self.parallelism, thread_name_prefix="hpsearch-slot")
        try:
            yield from self._feeder.run(tasks)
        except BaseException:
            self.cancel()        # Ctrl-C or an abandoned sweep: stop the slots' jobs now
            self._end_slot_jobs()
            raise
        # every trial is back and each slot told there is no more: its job ends meanwhile, and
        # close() (or the next run) waits for it

    def _end_slot_jobs(self) -> None:
        pool, self._slot_pool = self._slot_pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _run_jobs(self, tasks: Iterable[TrialTask]) -> Iterator[TrialResult]:
        it = iter(tasks)
        pending: dict[Future, TrialTask] = {}
        self._ship()
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

            try:
                while len(pending) < self.parallelism and submit_next():
                    pass
                while pending:
                    done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                    for fut in done:
                        pending.pop(fut)
                        # refill the slot first, then hand the result over: the driver's bookkeeping
                        # (Optuna tell, MLflow runs) overlaps the next trial instead of delaying it.
                        # The trial asked here does not see this one result (as if parallelism + 1).
                        submit_next()
                        yield fut.result()
            except BaseException:
                # Ctrl-C, or the driver abandoned the sweep: stop the running jobs now, so that
                # the pool's threads end (and are not retried) before the pool waits for them
                self.cancel()
                raise

    def cancel(self) -> None:
        self._cancelled.set()
        self._feeder.cancelled = True
        self._tags.cancel()

    def close(self) -> None:
        if self._prestarted.is_alive():        # the sweep ended before its workers were ready
            self._tags.cancel()
            self._prestarted.join(10)
        self._end_slot_jobs()
