"""The driver: ask Optuna for trials, dispatch them to a backend, tell the results, track them.

Only the driver writes final trial states (to Optuna) and runs (to MLflow). A sweep:

1. checks everything the run needs (spec, data, backend) before it creates anything;
2. opens or creates the study; trials left RUNNING by a driver that died are failed and their
   params re-queued (``enqueue_trial``); they do not count towards the budget;
3. asks a trial only when a worker is free, so the sampler sees every result told before it;
4. stops asking when the budget (trials that reached a verdict, and/or wall time) is met, and
   waits for the running trials;
5. ends the MLflow parent run with the best value and params.
"""
from __future__ import annotations

import signal
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from hpsearch.errors import SpecError, StorageError
from hpsearch.storage import REQUEUED
from hpsearch.records import COMPLETE, FAILED, PRUNED, PruningChannel, TrialResult, TrialTask
from hpsearch.backends import parallelism_notes
from hpsearch.space import DefineByRun, layout

if TYPE_CHECKING:
    import optuna

    from concurrent.futures import Future

    from hpsearch.backends import Backend
    from hpsearch.spec import StudySpec
    from hpsearch.tracking import Tracker

MAX_ATTEMPTS = 2  # a trial whose worker died is retried once

DRIVER_JVM = {"spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1"}
"""Spark settings of a sweep's session unless the study sets them. The driver JVM compiles with C1
only: the trials run in Python workers, so it needs no peak JIT, and its start-up took 6.2 s of CPU
instead of 10.7 (local[2], 2 cores), CPU that the data, MLflow and the workers need meanwhile."""


# --------------------------------------------------------------------------- results

@dataclass(frozen=True)
class TrialSummary:
    """One trial as ``show`` and ``best`` report it."""

    number: int
    state: str
    params: dict[str, Any]
    value: float | None
    epochs: int
    seconds: float | None
    reason: str | None = None
    run_id: str | None = None
    values: tuple[float, ...] | None = None   # every objective's, in a multi-objective study

    @classmethod
    def of(cls, t: optuna.trial.FrozenTrial) -> TrialSummary:
        seconds = t.user_attrs.get("seconds")
        if seconds is None and t.datetime_start and t.datetime_complete:
            seconds = (t.datetime_complete - t.datetime_start).total_seconds()
        epochs = t.user_attrs.get("epochs", len(t.intermediate_values))
        values = tuple(t.values) if t.values is not None and len(t.values) > 1 else None
        return cls(t.number, t.state.name, dict(t.params), t.values[0] if t.values else None,
                   int(epochs), None if seconds is None else float(seconds),
                   t.user_attrs.get("fail_reason"), t.user_attrs.get("mlflow_run_id"), values)


@dataclass(frozen=True)
class Progress:
    """A snapshot of a running sweep, for live views."""

    done: int
    target: int | None
    running: int
    complete: int
    pruned: int
    failed: int
    best_value: float | None
    best_number: int | None
    elapsed_s: float
    eta_s: float | None
    metric: str = ""


@dataclass(frozen=True)
class SweepSummary:
    """What a sweep did: the counts, the best trial, the top trials, where it was stored."""

    study: str
    storage: str
    tracking_uri: str | None
    parent_run_id: str | None
    added: int
    counts: dict[str, int]
    budget_met: bool
    best: TrialSummary | None
    top: tuple[TrialSummary, ...]
    seconds: float
    requeued: int = 0
    metric: str = ""
    direction: str = "minimize"
    notes: tuple[str, ...] = ()
    objectives: tuple[str, ...] = ()     # several: ``top`` is the Pareto set


class Observer:
    """Receives the sweep's events (the CLI's live view and log lines). All no-ops by default."""

    def note(self, text: str) -> None:
        """A one-line message (resume, budget, warnings)."""

    def started(self, task: TrialTask, progress: Progress) -> None:
        """A trial was dispatched."""

    def finished(self, result: TrialResult, progress: Progress) -> None:
        """A trial reached its verdict (told to Optuna and logged to MLflow)."""



# --------------------------------------------------------------------------- public API

def run_study(spec: StudySpec, *, extend: int | None = None, space: DefineByRun | None = None,
              observer: Observer | None = None, spark: Any = None) -> SweepSummary:
    """Run (or resume, or extend) a study until its budget is met.

    Args:
        spec: a validated study (see :func:`hpsearch.load_spec`).
        extend: run this many trials more than the study already has, whatever the budget.
        space: a define-by-run space ``space(trial) -> params`` used instead of the spec's.
        observer: gets progress events.
        spark: an existing SparkSession for the spark backend (reused across sweeps); by default
            the backend gets or creates one for ``execution.master``.

    Raises:
        HpsearchError: bad input or setup, before anything was created.
    """
    if extend is not None and extend < 1:
        raise SpecError(spec.file, "--extend", f"must be >= 1; got {extend}")
    if space is None and not spec.space:
        raise SpecError(spec.file, "search_space", "is missing (the spec was loaded with define_by_run)",
                        "pass space=... to run_study, or add search_space to the file")
    from hpsearch.scoped import quiet_libraries
    sweep = _Sweep(spec, space, observer or Observer(), spark)
    sweep.start()         # Spark and the MLflow check start before quiet_libraries imports MLflow
    with quiet_libraries():
        return sweep.run(extend)


def trial_summaries(spec: StudySpec) -> list[TrialSummary]:
    """Every trial of the study, in order (the store must exist)."""
    from hpsearch.storage import load_existing_study
    study = load_existing_study(spec.storage, spec.name)
    return [TrialSummary.of(t) for t in study.get_trials(deepcopy=False)]


def best_trial(spec: StudySpec) -> TrialSummary | tuple[TrialSummary, ...]:
    """The best completed trial; in a multi-objective study, the Pareto set (the non-dominated
    completed trials, by number). StorageError when there is no completed trial yet."""
    from hpsearch.storage import load_existing_study
    study = load_existing_study(spec.storage, spec.name)
    if _multi(study):
        front = _top(study)
        if front:
            return front
    best = _best(study)
    if best is None:
        raise StorageError(f"study '{spec.name}' has no completed trial yet",
                           "run it: hpsearch run " + spec.file)
    return TrialSummary.of(best)


def chosen_trial(spec: StudySpec, trial: int | None = None) -> TrialSummary:
    """Completed trial number ``trial``, or the best one; a multi-objective study has no single
    best, so there ``trial`` is needed (HpsearchError listing the Pareto set otherwise)."""
    from hpsearch.errors import HpsearchError
    if trial is None:
        best = best_trial(spec)
        if isinstance(best, tuple):
            raise HpsearchError(f"study '{spec.name}' has {len(best)} trial(s) on its Pareto front "
                                f"({', '.join(str(t.number) for t in best)}) and no single best",
                                "pick one with --trial N (hpsearch best lists them)")
        return best
    found = [t for t in trial_summaries(spec) if t.number == trial]
    if not found or found[0].state != "COMPLETE":
        raise HpsearchError(f"--trial {trial}: study '{spec.name}' has no completed trial {trial}",
                            "hpsearch show lists its trials")
    return found[0]


# --------------------------------------------------------------------------- helpers

def _multi(study: optuna.Study) -> bool:
    return len(study.directions) > 1


def _best(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best completed trial (None in a multi-objective study: there the Pareto set is)."""
    from optuna.trial import TrialState
    if _multi(study):
        return None
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        return None
    sign = 1 if study.direction.name == "MINIMIZE" else -1
    return min(done, key=lambda t: (sign * t.value, t.number))


def _top(study: optuna.Study, n: int = 5) -> tuple[TrialSummary, ...]:
    """The ``n`` best completed trials; a multi-objective study's whole Pareto set."""
    from optuna.trial import TrialState
    if _multi(study):
        from hpsearch.pareto import front_trials
        return tuple(TrialSummary.of(t) for t in front_trials(study))
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    sign = 1 if study.direction.name == "MINIMIZE" else -1
    return tuple(TrialSummary.of(t) for t in sorted(done, key=lambda t: (sign * t.value, t.number))[:n])


def _counted(trials: list[optuna.trial.FrozenTrial]) -> int:
    """Trials that reached a verdict (re-queued ones do not count: their params run again)."""
    return sum(1 for t in trials if t.state.is_finished() and not t.user_attrs.get(REQUEUED))


@contextmanager
def _shielded() -> Iterator[None]:
    """Defer Ctrl-C / SIGTERM until the block is done, so the driver's bookkeeping (ask, tell,
    MLflow run) is never cut in half. Only in the main thread (where signals are delivered)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: got.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if got:
            raise KeyboardInterrupt


# --------------------------------------------------------------------------- the sweep

def process_started() -> float:
    """``time.perf_counter()``'s reading when this process started (Linux, to 10 ms: from /proc;
    elsewhere: now)."""
    import os
    try:
        with open("/proc/self/stat") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])     # field 22: starttime
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return time.perf_counter() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.perf_counter()


class Phases:
    """When each step of a sweep ended (start-up and end), in seconds since the sweep began, or since
    :attr:`origin` when set (the CLI sets it to the process start) (``--verbose`` prints them as
    they come: logger ``hpsearch.phases`` at INFO)."""

    origin: float | None = None    # a ``time.perf_counter()`` reading to count from

    def __init__(self) -> None:
        self.t0 = time.perf_counter() if Phases.origin is None else Phases.origin
        self.seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def mark(self, name: str, took: float | None = None, offset: float = 0.0) -> None:
        import logging
        at = time.perf_counter() - self.t0 + offset
        with self._lock:
            if name in self.seen:
                return
            self.seen[name] = at
        logging.getLogger("hpsearch.phases").info(
            "%5.2f s  %s%s", at, name, "" if took is None else f" (took {took:.2f} s)")

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        yield
        self.mark(name, time.perf_counter() - t)

    def mark_at(self, name: str, wall: float) -> None:
        """``name`` happened at ``wall`` (``time.time()``, e.g. on a worker)."""
        self.mark(name, None, offset=wall - time.time())

    def timed_call(self, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        with self.timed(name):
            return fn(*args, **kwargs)


@dataclass
class _Budget:
    """The budget and its bookkeeping: trials with a verdict, the target, the deadline, the times."""

    target: int | None = None
    deadline: float | None = None
    counted: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {COMPLETE: 0, PRUNED: 0, FAILED: 0})
    seconds: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def met(self) -> bool:
        return self.target is not None and self.counted >= self.target

    def full(self, running: int) -> bool:
        """No new trial: those counted and those running reach the target."""
        return self.target is not None and self.counted + running >= self.target

    def timed_out(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def count(self, result: TrialResult) -> None:
        self.counted += 1
        self.counts[result.state] += 1
        self.seconds.append(result.seconds)

    def eta(self, parallelism: int) -> float | None:
        """Seconds left: the mean trial time for the trials left, or the deadline if sooner."""
        eta = None
        if self.target is not None and self.seconds:
            left = max(0, self.target - self.counted)
            eta = left * (sum(self.seconds) / len(self.seconds)) / max(1, parallelism)
        if self.deadline is not None:
            to_deadline = max(0.0, self.deadline - time.monotonic())
            eta = to_deadline if eta is None else min(eta, to_deadline)
        return eta


class _Trials:
    """Ask and tell: the trials in flight and their retries, each verdict told and tracked, and
    the best value so far."""

    def __init__(self, sweep: _Sweep, study: optuna.Study, dists: Any, tracking: Future) -> None:
        self.sweep, self.spec, self.budget = sweep, sweep.spec, sweep.budget
        self.study, self.dists, self._tracking = study, dists, tracking
        self._tracker: Tracker | None = None
        self._unopened: list[tuple[int, float]] = []   # trials asked before the tracker was ready
        self.channel: PruningChannel | None = None   # the pruning channel, once it serves
        self.in_flight: dict[int, tuple[Any, TrialTask]] = {}
        self.retries: deque[TrialTask] = deque()
        best = _best(study)
        self.best_value = None if best is None else best.value
        self.best_number = None if best is None else best.number
        self.best_weights: bytes | None = None

    def progress(self) -> Progress:
        b = self.budget
        return Progress(done=b.counted, target=b.target, running=len(self.in_flight),
                        complete=b.counts[COMPLETE], pruned=b.counts[PRUNED], failed=b.counts[FAILED],
                        best_value=self.best_value, best_number=self.best_number,
                        elapsed_s=time.monotonic() - b.started, eta_s=b.eta(self.sweep.parallelism),
                        metric=self.spec.objective.metric)

    @property
    def tracker(self) -> Tracker:
        """The sweep's MLflow tracker. Its parent run starts (and earlier trials' runs are repaired)
        on a thread of its own while the first trials run; the first verdict waits for it."""
        if self._tracker is None:
            tracker, fixed = self._tracking.result()
            if fixed:
                self.sweep.note(f"MLflow: {fixed} run(s) of earlier trials created or repaired")
            self._tracker = tracker
            for number, asked in self._unopened:
                tracker.open_trial_run(number, asked)
        return self._tracker

    def _open(self, number: int) -> None:
        """Trial ``number``'s MLflow run, created by the writer while the trial runs (once the
        tracker is ready)."""
        if self._tracker is None and not self._tracking.done():
            self._unopened.append((number, time.time()))
        else:
            self.tracker.open_trial_run(number, time.time())

    # ---------------------------------------------------------------- ask

    def ask(self) -> TrialTask | None:
        """A new trial and its task (None when a define-by-run space raised: a failed trial)."""
        with _shielded():
            return self._new_task()

    def _new_task(self) -> TrialTask | None:
        from hpsearch.space import suggest
        spec, study = self.spec, self.study
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = study.ask(fixed_distributions=self.dists) if self.dists is not None else study.ask()
        task = TrialTask(trial_id=trial._trial_id, number=trial.number, net=spec.net, params={},
                         fixed=dict(spec.fixed), metric=spec.objective.metric,
                         objectives=spec.objective.metrics,
                         direction=spec.objective.direction, seed=spec.seed + trial.number,
                         epochs=spec.epochs, data_path=spec.data.path, data_limit=spec.data.limit,
                         channel=self.channel, per_layer=self.sweep.per_layer)
        self.in_flight[trial.number] = (trial, task)
        self._open(trial.number)
        try:
            task = replace(task, params=suggest(trial, self.sweep.space))
        except Exception as exc:  # noqa: BLE001 - a user's define-by-run space
            import traceback
            self.handle(TrialResult(
                task.trial_id, task.number, FAILED, reason=f"search space function raised "
                f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(), started=time.time()))
            return None
        self.in_flight[trial.number] = (trial, task)
        return task

    # ---------------------------------------------------------------- tell

    def handle(self, result: TrialResult) -> None:
        """Retry a lost trial, or tell and track its verdict."""
        with _shielded():
            if not self._retried(result):
                self._record(result)

    def _retried(self, result: TrialResult) -> bool:
        trial, task = self.in_flight[result.number]
        if not (result.lost and self.sweep.retry_lost and task.attempt + 1 < MAX_ATTEMPTS
                and result.reason != "cancelled"):
            return False
        self.sweep.note(f"trial {task.number}: {result.reason}; retrying it")
        retry = replace(task, attempt=task.attempt + 1)
        self.in_flight[result.number] = (trial, retry)
        self.retries.append(retry)
        return True

    def _record(self, result: TrialResult) -> None:
        trial, task = self.in_flight.pop(result.number)
        if result.state == COMPLETE and result.value is None:
            result = replace(result, state=FAILED, reason="the net ran no epoch")
        run_id = self.tracker.create_trial_run(result.number, result.started)   # None: MLflow down
        weights = self._maybe_best(result)
        # the run is spooled before Optuna has the verdict and written after: killed in between,
        # the rerun writes it whole
        send = self.tracker.log_trial(run_id, task.train_params(), result, weights)
        self._tell(trial, result, run_id)
        send()
        self._note_down()
        self.budget.count(result)
        self.sweep.obs.finished(result, self.progress())

    def _note_down(self) -> None:
        why = self.tracker.down
        if why:
            self.sweep.note(f"MLflow cannot be written ({why}); trials go on, their runs are kept "
                            f"in {self.tracker.spool.dir} and written when it is back", once=True)

    def _tell(self, trial: Any, result: TrialResult, run_id: str | None) -> None:
        from optuna.trial import TrialState
        attrs = {"mlflow_run_id": run_id, "epochs": result.epochs, "seconds": round(result.seconds, 3),
                 "worker": result.worker}
        if result.reason and result.state == FAILED:
            attrs["fail_reason"] = result.reason[:2000]
        for k, v in attrs.items():
            if v is not None:
                trial.set_user_attr(k, v)
        state = {COMPLETE: TrialState.COMPLETE, PRUNED: TrialState.PRUNED}.get(result.state, TrialState.FAIL)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if state == TrialState.COMPLETE:
                    self.study.tell(trial, objective_values(self.spec, result))
                else:
                    self.study.tell(trial, state=state)
            except RuntimeError as exc:
                # GridSampler.after_trial calls study.stop() when the grid is done, which Optuna
                # only allows inside optimize(); the state is stored before that (in a finally).
                if "Study.stop" not in str(exc):
                    raise

    def _maybe_best(self, result: TrialResult) -> bytes | None:
        """The weights to log when this result is the best so far (this sweep or earlier)."""
        if result.state != COMPLETE or result.value is None:
            return None
        if self.spec.objective.multi:       # no single best: any complete trial may be on the front
            return result.weights if self.spec.tracking.log_weights else None
        better = self.best_value is None or (result.value < self.best_value
                                             if self.spec.objective.direction == "minimize"
                                             else result.value > self.best_value)
        if not better:
            return None
        self.best_value, self.best_number = result.value, result.number
        if not self.spec.tracking.log_weights or result.weights is None:
            return None
        self.best_weights = result.weights
        return result.weights

    def abandon(self, reason: str) -> None:
        """Fail (and re-queue) the trials still running when the sweep is stopped."""
        for number, (trial, task) in list(self.in_flight.items()):
            result = TrialResult(task.trial_id, number, FAILED, reason=f"{reason}; params re-queued",
                                 started=time.time())
            trial.set_user_attr(REQUEUED, True)
            run_id = self.tracker.create_trial_run(number, wait_s=0.0)   # a stop does not wait
            send = self.tracker.log_trial(run_id, task.train_params(), result)
            self._tell(trial, result, run_id)
            send()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.study.enqueue_trial(dict(task.params), skip_if_exists=False)
        self.in_flight.clear()


class _Sweep:
    """One sweep of one study: set up, lock the study, feed the backend, summarize."""

    def __init__(self, spec: StudySpec, space: DefineByRun | None, observer: Observer,
                 spark: Any = None) -> None:
        self.spark = spark
        self.parallelism = spec.execution.parallelism or 1   # the backend's, once it exists
        self.spec = spec
        self.space = space
        self.obs = observer
        self.budget = _Budget()
        self.notes: list[str] = []
        self.retry_lost = True
        self.per_layer = layout(spec.space) if space is None else ()
        self.phases = Phases()
        self._tracking: Any = None   # a future: the tracking server checked, MLflow imported
        self._session: Any = None    # a future: the SparkSession (start)

    def start(self) -> None:
        """Check that the spec can run, then start the SparkSession it needs and the tracking check
        (in the background: on Spark Connect and the local backend the study waited for MLflow)."""
        from hpsearch.tracking import prepare_tracking
        self.phases.mark("sweep started")
        self.spec.check_runnable()
        self._session = self._start_spark()
        self._tracking = self._background("MLflow checked", prepare_tracking, self.spec.tracking.uri)

    def note(self, text: str, once: bool = False) -> None:
        if not (once and text in self.notes):
            self.notes.append(text)
            self.obs.note(text)

    # ---------------------------------------------------------------- setup (validate first)

    def _prepare(self) -> tuple[Backend, Any]:
        from hpsearch.backends import make_backend
        from hpsearch.recipes import load_spec_data, resolve_recipe
        from hpsearch.space import Conditional, distributions, is_conditional
        spec = self.spec
        session = self._session                # it starts while the data is read
        with self.phases.timed("data"):
            recipe = resolve_recipe(spec.net)
            data = load_spec_data(spec, recipe)
        if session is not None:
            self._warm_numba(data)
        if self.space is None and is_conditional(spec.space):
            self.space = Conditional(spec.space)   # define-by-run: a trial holds its active params only
        dists = distributions(spec.space) if self.space is None else None
        if session is not None:
            with self.phases.timed("wait for Spark"):
                self.spark = session.result()
        backend = make_backend(spec.execution.backend, parallelism=spec.execution.parallelism,
                               data=data, master=spec.execution.master, study_name=spec.name,
                               spark=self.spark, data_parallel=spec.execution.data_parallel,
                               conf=spec.execution.spark_conf, dispatch=spec.execution.dispatch)
        self.phases.mark("backend ready")
        self.parallelism = backend.parallelism
        self.retry_lost = getattr(backend, "retry_lost", True)
        for text in parallelism_notes(backend.parallelism, getattr(backend, "slots", None),
                                      spec.budget.trials, spec.sampler.name):
            self.note(text)
        return backend, dists

    def _start_spark(self) -> Any:
        """A future of the SparkSession this sweep needs (``None``: none, or one was passed in)."""
        ex = self.spec.execution
        if ex.backend != "spark" or self.spark is not None:
            return None
        from hpsearch.backends.spark import spark_session
        self.note(f"starting Spark ({ex.master or 'local'}) ...")
        cores = ex.parallelism and ex.parallelism * (ex.data_parallel.workers if ex.data_parallel else 1)
        conf = {**DRIVER_JVM, **(ex.spark_conf or {})}
        return self._background("Spark session", spark_session, ex.master, cores,
                                app_name=f"hpsearch {self.spec.name}", conf=conf,
                                archive=not (ex.spark_conf or {}).keys() & DRIVER_JVM.keys())

    def _warm_numba(self, data: Any) -> None:
        """Compile (or load from numba's cache) a built-in net's code on the driver while Spark
        starts, for local workers to find the cache warm; the backend's own warm-up before the first
        trial then finds it compiled (numba compiles under one lock: the two never race)."""
        from hpsearch.backends.spark import is_local_master
        spec, ex = self.spec, self.spec.execution
        if ex.data_parallel or ":" in spec.net or not is_local_master(ex.master):
            return
        task = TrialTask(trial_id=-1, number=-1, net=spec.net, params={}, fixed=dict(spec.fixed),
                         metric=spec.objective.metric, direction=spec.objective.direction,
                         seed=spec.seed, epochs=1, data_path=spec.data.path, data_limit=spec.data.limit)
        self._background("numba code ready", _warm_quietly, task, data)

    def _background(self, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` on a thread of its own, timed as phase ``name``; a future."""
        from concurrent.futures import ThreadPoolExecutor
        pool = ThreadPoolExecutor(1, thread_name_prefix="hpsearch-start")
        future = pool.submit(self.phases.timed_call, name, fn, *args, **kwargs)
        pool.shutdown(wait=False)
        return future

    # ---------------------------------------------------------------- the run

    def run(self, extend: int | None) -> SweepSummary:
        from hpsearch.storage import driver_lock
        backend, dists = self._prepare()
        try:
            # a tracking server that does not answer fails the run before the study store exists
            self._tracking.result()
            study = _open_study(self.spec)
            self.phases.mark("study open")
            with driver_lock(study):
                return self._run_locked(study, backend, dists, extend)
        finally:
            with self.phases.timed("backend closed"):
                backend.close()

    def _run_locked(self, study: optuna.Study, backend: Backend, dists: Any,
                    extend: int | None) -> SweepSummary:
        from hpsearch.storage import requeue_orphans
        requeued = requeue_orphans(study, dists, complete=getattr(self.space, "complete", None))
        if requeued:
            self.note(f"resumed: {requeued} trial(s) left running by a stopped driver were "
                      f"marked failed and their params re-queued")
        b = self.budget
        b.counted = _counted(study.get_trials(deepcopy=False))
        b.target = b.counted + extend if extend is not None else self.spec.budget.trials
        if b.met():
            self._flush_spool(study)
            self.note(f"budget met: {b.counted} of {b.target} trials done; nothing to run "
                      f"(use --extend N to add N trials)")
            from hpsearch.tracking import resolve_uri
            return self._summary(study, resolve_uri(self.spec.tracking.uri), None, requeued, budget_met=True)
        timeout = self.spec.budget.timeout_s
        b.deadline = None if timeout is None else time.monotonic() + timeout
        return self._sweep(study, backend, dists, requeued)

    def _flush_spool(self, study: optuna.Study) -> None:
        """Runs an earlier sweep could not write to MLflow, written now (nothing else to run)."""
        from hpsearch.mlflow_writer import Spool, spool_dir
        if not len(Spool(spool_dir(self.spec.storage, self.spec.name), self.spec.name)):
            return
        from hpsearch.errors import redact
        from hpsearch.tracking import Tracker
        try:
            fixed = Tracker(self.spec, self.spec.tracking.uri).reconcile(study.get_trials(deepcopy=False))
        except Exception as exc:  # noqa: BLE001 - MLflow still down: the spool waits for the next run
            self.note(redact(f"MLflow: runs of earlier trials still wait in the spool ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:200]})"))
            return
        self.note(f"MLflow: {fixed} run(s) of earlier trials created or repaired")

    def _sweep(self, study: optuna.Study, backend: Backend, dists: Any, requeued: int) -> SweepSummary:
        # MLflow writes the parent run while the pruning channel is checked and the first trials
        # run (their verdicts wait for it: _Trials.tracker); it repairs the runs of the trials that
        # were finished before this sweep, which no later verdict changes
        finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        tracking = self._background("MLflow parent run started", self._start_tracker, finished)
        with self._channel(study, backend) as channel:
            problem = self._check_channel(backend, channel)
            trials = _Trials(self, study, dists, tracking)
            trials.channel = channel if self.spec.pruner.name != "none" else None
            if self.spec.tracking.plots:      # the plots' imports, off the end of the sweep
                from hpsearch.plots import preload
                threading.Thread(target=preload, name="hpsearch-plots", daemon=True).start()
            status = "FAILED"
            try:
                if problem is not None:
                    raise problem
                self._loop(study, backend, trials)
                status = "FINISHED"
            except KeyboardInterrupt:
                status = "KILLED"
                backend.cancel()
                with _shielded():
                    trials.abandon("interrupted (Ctrl-C or SIGTERM)")
                raise
            finally:
                self.phases.mark("last trial back")
                tracker = trials.tracker
                tracker.on_plots = lambda took: self.phases.mark("plots drawn", took)
                with self.phases.timed("MLflow written"):
                    left = tracker.end_sweep(_best(study), self.budget.counts, status, trials.best_weights)
                if left:
                    self.note(f"MLflow: {left} run(s) could not be written ({tracker.down or 'down'}); "
                              f"they wait in {tracker.spool.dir}: the next `hpsearch run` of this study "
                              "writes them")
                if self.spec.objective.multi:
                    from hpsearch.pareto_log import log_front
                    log_front(tracker, study, self.spec, self.note)
        return self._summary(study, tracker.uri, tracker.parent_id, requeued, budget_met=False)

    def _start_tracker(self, finished: list[optuna.trial.FrozenTrial]) -> tuple[Tracker, int]:
        """The sweep's MLflow writer with its parent run started, and how many runs of earlier
        (``finished``) trials it created or repaired."""
        from hpsearch.tracking import Tracker
        tracker = Tracker(self.spec, self.spec.tracking.uri)
        tracker.start_sweep({"trials": self.budget.target, "timeout_s": self.spec.budget.timeout_s})
        return tracker, tracker.reconcile(finished)

    def _check_channel(self, backend: Backend, channel: PruningChannel | None) -> BaseException | None:
        """Whether the workers reach the pruning channel: what ``check_channel`` raised (Ctrl-C
        too), for the sweep to raise once its parent run exists, or None."""
        if channel is None:
            return None
        try:
            # before any trial: executors can report (or get trials: slot mode); or the backend
            # says how it does without the channel
            how = backend.check_channel(channel, required=self.spec.pruner.name != "none")
        except BaseException as exc:  # noqa: BLE001 - raised again by the caller
            return exc
        if how:
            self.note(how)
        self.phases.mark("pruning channel checked")
        return None

    def _channel(self, study: optuna.Study, backend: Backend) -> Any:
        from contextlib import nullcontext

        from hpsearch.pruning import serve, study_decider
        next_trial = getattr(backend, "next_trial", None) if getattr(backend, "wants_channel", False) \
            else None
        if self.spec.pruner.name == "none" and next_trial is None:
            return nullcontext(None)
        from hpsearch.samplers import next_decision
        ex, decide, p = self.spec.execution, study_decider(study), self.spec.pruner
        if backend.use_pruner(decide, ex.pruning_mode, next_decision(p.name, p.options)):
            return nullcontext(None)                   # it asks the pruner itself, between jobs
        # listen on the one address executors dial: loopback in local mode, the driver's address
        # (spark.driver.host) on a cluster; never on every interface unless the study says so
        host = ex.report_host or backend.report_host
        return serve(decide, bind=ex.report_bind or host, advertise=host,
                     next_trial=next_trial, slots=backend.parallelism)

    def _loop(self, study: optuna.Study, backend: Backend, trials: _Trials) -> None:
        while True:
            for result in backend.run(self._tasks(study, trials)):
                self.phases.mark_at("first trial started (on its worker)", result.started or time.time())
                trials.handle(result)
            if not trials.retries:
                return

    def _tasks(self, study: optuna.Study, trials: _Trials) -> Iterator[TrialTask]:
        """Tasks, lazily: retries first, then new trials while the budget allows."""
        b = self.budget
        while True:
            if trials.retries:
                task = trials.retries.popleft()
                self.obs.started(task, trials.progress())
                yield task
                continue
            if b.timed_out():
                if not b.met():
                    self.note("timeout reached: no new trials; waiting for the running ones", once=True)
                return
            if b.full(len(trials.in_flight)):
                return
            if getattr(study.sampler, "is_exhausted", lambda _s: False)(study):
                self.note("grid sampler: every grid point has been tried", once=True)
                return
            task = trials.ask()
            if task is not None:
                self.phases.mark("first trial dispatched")
                self.obs.started(task, trials.progress())
                yield task

    # ---------------------------------------------------------------- reporting

    def _summary(self, study: optuna.Study, uri: str | None, parent: str | None, requeued: int,
                 budget_met: bool) -> SweepSummary:
        best, b = _best(study), self.budget
        return SweepSummary(
            study=self.spec.name, storage=self.spec.storage, tracking_uri=uri, parent_run_id=parent,
            added=sum(b.counts.values()), counts=dict(b.counts), budget_met=budget_met,
            best=TrialSummary.of(best) if best else None, top=_top(study),
            seconds=time.monotonic() - b.started, requeued=requeued,
            metric=self.spec.objective.metric, direction=self.spec.objective.direction,
            notes=tuple(self.notes), objectives=self.spec.objective.metrics)


def _warm_quietly(task: TrialTask, data: Any) -> None:
    """:func:`~hpsearch.backends.spark.warm_numba`; a failure is only logged (a bad configuration
    shows up in the trials themselves)."""
    import logging

    from hpsearch.backends.spark import warm_numba
    try:
        warm_numba(task, data)
    except Exception as exc:  # noqa: BLE001
        logging.getLogger("hpsearch.spark").info("warm-up of %s failed: %s", task.net, exc)


def objective_values(spec: StudySpec, result: TrialResult) -> float | list[float]:
    """What a complete trial tells Optuna: its value, or every objective's at its last epoch."""
    if not spec.objective.multi:
        return result.value
    return [float(result.history[-1][m]) for m in spec.objective.metrics]


def _open_study(spec: StudySpec) -> optuna.Study:
    """Open the study (or create it), its sampler seeded past the trials it already has."""
    import optuna

    from hpsearch.samplers import make_pruner, make_sampler
    from hpsearch.storage import open_storage
    storage = open_storage(spec.storage, create=True)
    try:
        study = optuna.load_study(study_name=spec.name, storage=storage)
        have = [d.name.lower() for d in study.directions]
        if have != list(spec.objective.all_directions):
            raise StorageError(f"study '{spec.name}' in {spec.storage} is {', '.join(have)}d, the "
                               f"spec says {', '.join(spec.objective.all_directions)}",
                               "use another name or storage")
        n = len(study.get_trials(deepcopy=False))
    except KeyError:
        n = 0
    opts = dict(spec.sampler.options)
    seed = opts.pop("seed", spec.seed) + n  # a resumed sweep does not replay the same draws
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = make_sampler(spec.sampler.name, opts, seed, spec.space)
        pruner = make_pruner(spec.pruner.name, dict(spec.pruner.options))
    return optuna.create_study(study_name=spec.name, storage=storage, sampler=sampler,
                               pruner=pruner, directions=list(spec.objective.all_directions),
                               load_if_exists=True)
