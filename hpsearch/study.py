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

import os
import signal
import socket
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.errors import SpecError, StorageError
from hpsearch.records import COMPLETE, FAILED, PRUNED, PruningChannel, TrialResult, TrialTask
from hpsearch.backends._parallelism import parallelism_notes
from hpsearch.space import DefineByRun

if TYPE_CHECKING:
    import optuna

    from hpsearch.backends import Backend
    from hpsearch.spec import StudySpec
    from hpsearch.tracking import Tracker

MAX_ATTEMPTS = 2  # a trial whose worker died is retried once
REQUEUED = "hpsearch_requeued"
_LOCK = "hpsearch_driver"


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

    @classmethod
    def of(cls, t: optuna.trial.FrozenTrial) -> TrialSummary:
        seconds = t.user_attrs.get("seconds")
        if seconds is None and t.datetime_start and t.datetime_complete:
            seconds = (t.datetime_complete - t.datetime_start).total_seconds()
        epochs = t.user_attrs.get("epochs", len(t.intermediate_values))
        return cls(t.number, t.state.name, dict(t.params), t.value, int(epochs),
                   None if seconds is None else float(seconds), t.user_attrs.get("fail_reason"),
                   t.user_attrs.get("mlflow_run_id"))


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
    sweep = _Sweep(spec, space, observer or Observer(), spark)
    return sweep.run(extend)


def trial_summaries(spec: StudySpec) -> list[TrialSummary]:
    """Every trial of the study, in order (the store must exist)."""
    from hpsearch.storage import load_existing_study
    study = load_existing_study(spec.storage, spec.name)
    return [TrialSummary.of(t) for t in study.get_trials(deepcopy=False)]


def best_trial(spec: StudySpec) -> TrialSummary:
    """The best completed trial; StorageError when there is none yet."""
    from hpsearch.storage import load_existing_study
    study = load_existing_study(spec.storage, spec.name)
    best = _best(study)
    if best is None:
        raise StorageError(f"study '{spec.name}' has no completed trial yet",
                           "run it: hpsearch run " + spec.file)
    return TrialSummary.of(best)


# --------------------------------------------------------------------------- helpers

def _best(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    from optuna.trial import TrialState
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        return None
    sign = 1 if study.direction.name == "MINIMIZE" else -1
    return min(done, key=lambda t: (sign * t.value, t.number))


def _top(study: optuna.Study, n: int = 5) -> tuple[TrialSummary, ...]:
    from optuna.trial import TrialState
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    sign = 1 if study.direction.name == "MINIMIZE" else -1
    return tuple(TrialSummary.of(t) for t in sorted(done, key=lambda t: (sign * t.value, t.number))[:n])


def _counted(trials: list[optuna.trial.FrozenTrial]) -> int:
    """Trials that reached a verdict (re-queued ones do not count: their params run again)."""
    return sum(1 for t in trials if t.state.is_finished() and not t.user_attrs.get(REQUEUED))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


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


def _load_data(spec: StudySpec, recipe: Any) -> Any:
    """The data, read once on the driver; a data problem is the spec's ``data.path`` error."""
    from hpsearch.objective import data_settings, load_data
    try:
        return load_data(recipe, spec.data.path, spec.data.limit, data_settings(recipe, spec.fixed))
    except Exception as exc:  # noqa: BLE001 - nets.DataError and whatever a custom loader raises
        where = spec.data.path or f"the bundled data of {spec.net}"
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise SpecError(spec.file, "data.path", f"cannot read {where}: {text}",
                        "check the files (see the nets data formats)") from None


# --------------------------------------------------------------------------- the sweep

@dataclass
class _State:
    in_flight: dict[int, tuple[Any, TrialTask]] = field(default_factory=dict)
    retries: deque = field(default_factory=deque)
    counts: dict[str, int] = field(default_factory=lambda: {COMPLETE: 0, PRUNED: 0, FAILED: 0})
    seconds: list[float] = field(default_factory=list)
    best_value: float | None = None
    best_number: int | None = None
    best_weights: bytes | None = None
    counted: int = 0
    target: int | None = None
    deadline: float | None = None
    started: float = field(default_factory=time.monotonic)


class _Sweep:
    """One sweep of one study: the driver's state and its steps."""

    def __init__(self, spec: StudySpec, space: DefineByRun | None, observer: Observer,
                 spark: Any = None) -> None:
        self.spark = spark
        self.parallelism = spec.execution.parallelism or 1   # the backend's, once it exists
        self.spec = spec
        self.space = space
        self.obs = observer
        self.s = _State()
        self.notes: list[str] = []
        self.retry_lost = True

    # ---------------------------------------------------------------- setup (validate first)

    def _prepare(self) -> tuple[Backend, Any]:
        from hpsearch.backends import make_backend
        from hpsearch.objective import resolve_recipe
        from hpsearch.space import distributions
        spec = self.spec
        spec.check_runnable()
        recipe = resolve_recipe(spec.net)
        data = _load_data(spec, recipe)
        dists = distributions(spec.space) if self.space is None else None
        if spec.execution.backend == "spark" and self.spark is None:
            self._note(f"starting Spark ({spec.execution.master or 'local'}); this takes 10-20 s ...")
            if spec.execution.spark_conf:             # the session, with the study's settings
                from hpsearch.backends.spark import spark_session
                self.spark = spark_session(spec.execution.master, spec.execution.parallelism,
                                           app_name=f"hpsearch {spec.name}", conf=spec.execution.spark_conf)
        backend = make_backend(spec.execution.backend, parallelism=spec.execution.parallelism,
                               data=data, master=spec.execution.master, study_name=spec.name,
                               spark=self.spark, data_parallel=spec.execution.data_parallel)
        self.parallelism = backend.parallelism
        for text in parallelism_notes(backend.parallelism, getattr(backend, "slots", None),
                                      spec.budget.trials, spec.sampler.name):
            self._note(text)
        return backend, dists

    def _open_study(self) -> optuna.Study:
        import optuna

        from hpsearch.samplers import make_pruner, make_sampler
        from hpsearch.storage import open_storage
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        spec = self.spec
        storage = open_storage(spec.storage, create=True)
        try:
            study = optuna.load_study(study_name=spec.name, storage=storage)
            if study.direction.name.lower() != spec.objective.direction:
                raise StorageError(f"study '{spec.name}' in {spec.storage} is "
                                   f"{study.direction.name.lower()}d, the spec says "
                                   f"{spec.objective.direction}", "use another name or storage")
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
                                   pruner=pruner, direction=spec.objective.direction,
                                   load_if_exists=True)

    def _lock(self, study: optuna.Study) -> None:
        held = study.user_attrs.get(_LOCK)
        me = {"host": socket.gethostname(), "pid": os.getpid()}
        if (isinstance(held, dict) and held != me and held.get("host") == me["host"]
                and isinstance(held.get("pid"), int) and _pid_alive(held["pid"])):
            raise StorageError(f"study '{self.spec.name}' is being run by process {held['pid']}",
                               "wait for it to finish, or stop it first")
        study.set_user_attr(_LOCK, me)

    def _requeue_orphans(self, study: optuna.Study, dists: Any) -> int:
        """Fail the trials a dead driver left RUNNING and queue their params again.

        A trial killed while it was being asked (some params not yet drawn) never started:
        it is failed, and nothing is queued for it.
        """
        from optuna.trial import TrialState
        orphans = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        for t in orphans:
            started = dists is None or set(dists) <= set(t.params)
            reason = ("the driver stopped before this trial finished; its params were re-queued"
                      if started else "the driver stopped while asking this trial; nothing re-queued")
            trial_id = t._trial_id  # Optuna's own fail_stale_trials uses the same key
            study._storage.set_trial_user_attr(trial_id, "fail_reason", reason)
            study._storage.set_trial_user_attr(trial_id, REQUEUED, True)
            study._storage.set_trial_state_values(trial_id, TrialState.FAIL)
            if started:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    study.enqueue_trial(dict(t.params), skip_if_exists=False)
        if orphans:
            self._note(f"resumed: {len(orphans)} trial(s) left running by a stopped driver were "
                       f"marked failed and their params re-queued")
        return len(orphans)

    def _note(self, text: str) -> None:
        self.notes.append(text)
        self.obs.note(text)

    # ---------------------------------------------------------------- the run

    def run(self, extend: int | None) -> SweepSummary:
        from hpsearch.tracking import check_reachable
        backend, dists = self._prepare()
        try:
            # a tracking server that does not answer fails the run before the study store exists
            check_reachable(self.spec.tracking.uri)
            study = self._open_study()
            self._lock(study)
            try:
                return self._run_locked(study, backend, dists, extend)
            finally:
                study.set_user_attr(_LOCK, None)
        finally:
            backend.close()

    def _run_locked(self, study: optuna.Study, backend: Backend, dists: Any,
                    extend: int | None) -> SweepSummary:
        requeued = self._requeue_orphans(study, dists)
        s = self.s
        s.counted = _counted(study.get_trials(deepcopy=False))
        s.target = s.counted + extend if extend is not None else self.spec.budget.trials
        if s.target is not None and s.counted >= s.target:
            self._note(f"budget met: {s.counted} of {s.target} trials done; nothing to run "
                       f"(use --extend N to add N trials)")
            from hpsearch.tracking import resolve_uri
            return self._summary(study, resolve_uri(self.spec.tracking.uri), None, requeued, budget_met=True)
        timeout = self.spec.budget.timeout_s
        s.deadline = None if timeout is None else time.monotonic() + timeout
        best = _best(study)
        if best is not None:
            s.best_value, s.best_number = best.value, best.number
        return self._sweep(study, backend, dists, requeued)

    def _sweep(self, study: optuna.Study, backend: Backend, dists: Any, requeued: int) -> SweepSummary:
        from hpsearch.tracking import Tracker
        tracker = Tracker(self.spec, self.spec.tracking.uri)
        tracker.start_sweep({"trials": self.s.target, "timeout_s": self.spec.budget.timeout_s})
        fixed = tracker.reconcile(study.get_trials(deepcopy=False))
        if fixed:
            self._note(f"MLflow: {fixed} run(s) of earlier trials created or repaired")
        status = "FAILED"
        try:
            with self._channel(study, backend.report_host) as channel:
                self._loop(study, backend, dists, tracker, channel)
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            backend.cancel()
            with _shielded():
                self._abandon(study, tracker, "interrupted (Ctrl-C or SIGTERM)")
            raise
        finally:
            tracker.end_sweep(_best(study), self.s.counts, status, self.s.best_weights)
        return self._summary(study, tracker.uri, tracker.parent_id, requeued, budget_met=False)

    def _channel(self, study: optuna.Study, host: str) -> Any:
        from contextlib import nullcontext

        from hpsearch.pruning import proxy_server
        if self.spec.pruner.name == "none":
            return nullcontext(None)
        # listen on the one address executors dial: loopback in local mode, the driver's address
        # (spark.driver.host) on a cluster; never on every interface
        return proxy_server(study._storage, bind=host, advertise=host)

    def _loop(self, study: optuna.Study, backend: Backend, dists: Any, tracker: Tracker,
              channel: tuple[str, int] | None) -> None:
        self.retry_lost = getattr(backend, "retry_lost", True)
        while True:
            for result in backend.run(self._tasks(study, dists, channel, tracker)):
                self._handle(study, tracker, result)
            if not self.s.retries:
                return

    def _tasks(self, study: optuna.Study, dists: Any, channel: tuple[str, int] | None,
               tracker: Tracker) -> Iterator[TrialTask]:
        """Tasks, lazily: retries first, then new trials while the budget allows."""
        s = self.s
        while True:
            if s.retries:
                task = s.retries.popleft()
                self.obs.started(task, self._progress())
                yield task
                continue
            if s.deadline is not None and time.monotonic() >= s.deadline:
                if s.counted < (s.target or 0) or s.target is None:
                    self._note_once("timeout reached: no new trials; waiting for the running ones")
                return
            if s.target is not None and s.counted + len(s.in_flight) >= s.target:
                return
            if getattr(study.sampler, "is_exhausted", lambda _s: False)(study):
                self._note_once("grid sampler: every grid point has been tried")
                return
            task = self._ask(study, dists, channel, tracker)
            if task is not None:
                self.obs.started(task, self._progress())
                yield task

    def _note_once(self, text: str) -> None:
        if text not in self.notes:
            self._note(text)

    def _ask(self, study: optuna.Study, dists: Any, channel: tuple[str, int] | None,
             tracker: Tracker) -> TrialTask | None:
        """A new trial and its task (None when a define-by-run space raised: a failed trial)."""
        with _shielded():
            return self._new_task(study, dists, channel, tracker)

    def _new_task(self, study: optuna.Study, dists: Any, channel: tuple[str, int] | None,
                  tracker: Tracker) -> TrialTask | None:
        from hpsearch.space import suggest
        spec = self.spec
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = study.ask(fixed_distributions=dists) if dists is not None else study.ask()
        task = TrialTask(trial_id=trial._trial_id, number=trial.number, net=spec.net, params={},
                         fixed=dict(spec.fixed), metric=spec.objective.metric,
                         direction=spec.objective.direction, seed=spec.seed + trial.number,
                         epochs=spec.epochs, data_path=spec.data.path, data_limit=spec.data.limit,
                         channel=self._pruning(channel))
        self.s.in_flight[trial.number] = (trial, task)
        try:
            task = replace(task, params=suggest(trial, self.space))
        except Exception as exc:  # noqa: BLE001 - a user's define-by-run space
            import traceback
            self._handle(study, tracker, TrialResult(
                task.trial_id, task.number, FAILED, reason=f"search space function raised "
                f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(), started=time.time()))
            return None
        self.s.in_flight[trial.number] = (trial, task)
        return task

    def _pruning(self, channel: tuple[str, int] | None) -> PruningChannel | None:
        if channel is None:
            return None
        p = self.spec.pruner
        return PruningChannel(channel[0], channel[1], self.spec.name, p.name, dict(p.options))

    # ---------------------------------------------------------------- results

    def _handle(self, study: optuna.Study, tracker: Tracker, result: TrialResult) -> None:
        with _shielded():
            self._record(study, tracker, result)

    def _record(self, study: optuna.Study, tracker: Tracker, result: TrialResult) -> None:
        s = self.s
        trial, task = s.in_flight[result.number]
        if (result.lost and self.retry_lost and task.attempt + 1 < MAX_ATTEMPTS
                and result.reason != "cancelled"):
            self._note(f"trial {task.number}: {result.reason}; retrying it")
            retry = replace(task, attempt=task.attempt + 1)
            s.in_flight[result.number] = (trial, retry)
            s.retries.append(retry)
            return
        del s.in_flight[result.number]
        if result.state == COMPLETE and result.value is None:
            result = replace(result, state=FAILED, reason="the net ran no epoch")
        run_id = tracker.start_trial(result.number, task.params, result.started)
        self._tell(study, trial, result, run_id)
        weights = self._maybe_best(result)
        tracker.finish_trial(run_id, task.train_params(), result, weights)
        s.counted += 1
        s.counts[result.state] += 1
        s.seconds.append(result.seconds)
        self.obs.finished(result, self._progress())

    def _tell(self, study: optuna.Study, trial: Any, result: TrialResult, run_id: str) -> None:
        from optuna.trial import TrialState
        attrs = {"mlflow_run_id": run_id, "epochs": result.epochs, "seconds": round(result.seconds, 3),
                 "worker": result.worker}
        if result.reason and result.state == FAILED:
            attrs["fail_reason"] = result.reason[:2000]
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if result.state == COMPLETE:
                    study.tell(trial, result.value)
                elif result.state == PRUNED:
                    study.tell(trial, state=TrialState.PRUNED)
                else:
                    study.tell(trial, state=TrialState.FAIL)
            except RuntimeError as exc:
                # GridSampler.after_trial calls study.stop() when the grid is done, which Optuna
                # only allows inside optimize(); the state is stored before that (in a finally).
                if "Study.stop" not in str(exc):
                    raise

    def _maybe_best(self, result: TrialResult) -> bytes | None:
        """The weights to log when this result is the best so far (this sweep or earlier)."""
        s = self.s
        if result.state != COMPLETE or result.value is None:
            return None
        better = s.best_value is None or (result.value < s.best_value
                                          if self.spec.objective.direction == "minimize"
                                          else result.value > s.best_value)
        if not better:
            return None
        s.best_value, s.best_number = result.value, result.number
        if not self.spec.tracking.log_weights or result.weights is None:
            return None
        s.best_weights = result.weights
        return result.weights

    def _abandon(self, study: optuna.Study, tracker: Tracker, reason: str) -> None:
        """Fail (and re-queue) the trials still running when the sweep is stopped."""
        for number, (trial, task) in list(self.s.in_flight.items()):
            result = TrialResult(task.trial_id, number, FAILED, reason=f"{reason}; params re-queued",
                                 started=time.time())
            trial.set_user_attr(REQUEUED, True)
            run_id = tracker.start_trial(number, task.params)
            self._tell(study, trial, result, run_id)
            tracker.finish_trial(run_id, task.train_params(), result)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                study.enqueue_trial(dict(task.params), skip_if_exists=False)
        self.s.in_flight.clear()

    # ---------------------------------------------------------------- reporting

    def _progress(self) -> Progress:
        s = self.s
        elapsed = time.monotonic() - s.started
        eta = None
        if s.target is not None and s.seconds:
            left = max(0, s.target - s.counted)
            mean = sum(s.seconds) / len(s.seconds)
            eta = left * mean / max(1, self.parallelism)
        if s.deadline is not None:
            to_deadline = max(0.0, s.deadline - time.monotonic())
            eta = to_deadline if eta is None else min(eta, to_deadline)
        return Progress(done=s.counted, target=s.target, running=len(s.in_flight),
                        complete=s.counts[COMPLETE], pruned=s.counts[PRUNED], failed=s.counts[FAILED],
                        best_value=s.best_value, best_number=s.best_number, elapsed_s=elapsed,
                        eta_s=eta, metric=self.spec.objective.metric)

    def _summary(self, study: optuna.Study, uri: str | None, parent: str | None, requeued: int,
                 budget_met: bool) -> SweepSummary:
        best = _best(study)
        return SweepSummary(
            study=self.spec.name, storage=self.spec.storage, tracking_uri=uri, parent_run_id=parent,
            added=sum(self.s.counts.values()), counts=dict(self.s.counts), budget_met=budget_met,
            best=TrialSummary.of(best) if best else None, top=_top(study),
            seconds=time.monotonic() - self.s.started, requeued=requeued,
            metric=self.spec.objective.metric, direction=self.spec.objective.direction,
            notes=tuple(self.notes))
