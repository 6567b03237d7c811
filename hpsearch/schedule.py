"""Scheduled sweeps: at each tick of a cron expression, extend one study by N trials.

::

    hpsearch schedule studies/lenet.yaml --cron "0 2 * * *" --trials-per-run 10   # foreground
    hpsearch schedule studies/lenet.yaml --once --trials-per-run 10               # cron, Airflow

Every sweep is ``run_study(spec, extend=N)`` on the same Optuna study, so it warm-starts from every
earlier trial, and gets its own MLflow parent run tagged ``hpsearch.schedule`` (the cron expression,
or ``once``) and ``hpsearch.tick`` (the tick's time, ISO 8601).

- Cron expressions are read by croniter: 5 fields (minute hour day month weekday) in local time, or
  6 with seconds last (``"* * * * * */10"``: every 10 seconds).
- A tick that comes while a sweep of the same study runs is skipped with a log line: a sweep of this
  scheduler that outlasts the interval, or another process (``hpsearch run``, a second scheduler)
  holding the study's driver lock (see :mod:`hpsearch.study`; the same lock refuses a second
  ``hpsearch run`` while a scheduled sweep runs).
- A failed sweep is logged and the schedule goes on; ``max_runs`` counts sweeps that finished (a
  skipped tick or a failed sweep does not count).
- Ctrl-C or SIGTERM stops the scheduler at once: between sweeps nothing is running; inside one, the
  sweep fails and re-queues its running trials as ``hpsearch run`` does (no trial is left RUNNING,
  finished trials are kept).
"""
from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hpsearch.errors import HpsearchError, SpecError, StorageError

if TYPE_CHECKING:
    from hpsearch.spec import StudySpec
    from hpsearch.study import Observer, SweepSummary

DONE, SKIPPED, FAILED = "done", "skipped", "failed"


@dataclass(frozen=True)
class Tick:
    """What one tick did: ``status`` is done, skipped or failed; ``detail`` says why."""

    time: datetime
    status: str
    detail: str = ""
    summary: SweepSummary | None = None


def now() -> datetime:
    """The local time, with its zone (the scheduler's default clock)."""
    return datetime.now().astimezone()


def _hms(t: datetime) -> str:
    return t.strftime("%H:%M:%S") if t.date() == now().date() else t.isoformat(timespec="seconds")


def lock_holder(spec: StudySpec) -> int | None:
    """The pid of another live process on this host that holds the study's driver lock, if any."""
    import optuna

    from hpsearch.storage import lock_holder as study_lock_holder
    from hpsearch.storage import open_storage, store_file
    path = store_file(spec.storage)
    if path is not None and not path.exists():
        return None
    try:
        study = optuna.load_study(study_name=spec.name, storage=open_storage(spec.storage, create=False))
    except (KeyError, HpsearchError):
        return None
    return study_lock_holder(study)


class Scheduler:
    """Runs the sweeps of one study on a cron schedule, in the foreground.

    Args:
        spec: the study (its ``schedule`` block is not read here: pass the values).
        cron: the cron expression (None: only :meth:`run_tick` can be used).
        trials_per_run: trials each sweep adds (None: the budget's trials, or with a timeout-only
            budget, trials until the timeout).
        max_runs: stop after this many finished sweeps (None: never).
        observer: gets each sweep's events (progress lines): an Observer, or a zero-argument
            factory (e.g. an Observer class) called for each sweep.
        log: prints the scheduler's own lines.
        clock, sleep: the time source and the wait (injectable for tests).
        run: the sweep function (``hpsearch.run_study`` or a stand-in with its signature).
    """

    def __init__(self, spec: StudySpec, *, cron: str | None = None, trials_per_run: int | None = None,
                 max_runs: int | None = None, observer: Observer | Callable[[], Observer] | None = None,
                 log: Callable[[str], None] = print, clock: Callable[[], datetime] = now,
                 sleep: Callable[[float], None] = time.sleep, run: Callable[..., Any] | None = None,
                 ) -> None:
        self.spec = spec
        self.cron = cron
        self.trials_per_run = trials_per_run or spec.budget.trials
        self.max_runs = max_runs
        self.observer = observer
        self.log = log
        self.clock = clock
        self.sleep = sleep
        self.run = run
        self.ticks: list[Tick] = []

    # ---------------------------------------------------------------- one sweep

    def run_tick(self, tick: datetime) -> Tick:
        """One sweep for ``tick``, unless the study is locked by another process. Never raises
        (but KeyboardInterrupt: Ctrl-C or SIGTERM)."""
        holder = lock_holder(self.spec)
        if holder is not None:
            return self._record(Tick(tick, SKIPPED, f"study '{self.spec.name}' is being run by "
                                     f"process {holder}"))
        schedule = self._schedule_spec(tick)
        spec = replace(self.spec, schedule=schedule)
        n = self.trials_per_run
        self.log(f"tick {_hms(tick)}: sweep of study '{spec.name}'"
                 + (f", {n} trial(s) more" if n else "") + " ...")
        try:
            summary = self._run(spec)
        except (SpecError, StorageError) as exc:
            holder = lock_holder(self.spec)   # the lock was taken between the check and the sweep
            if holder is not None:
                return self._record(Tick(tick, SKIPPED, f"study '{self.spec.name}' is being run by "
                                         f"process {holder}"))
            return self._record(Tick(tick, FAILED, exc.line()))
        except HpsearchError as exc:
            return self._record(Tick(tick, FAILED, exc.line()))
        except Exception as exc:  # noqa: BLE001 - a failed sweep must not stop the schedule
            print(traceback.format_exc(), file=sys.stderr, end="")
            return self._record(Tick(tick, FAILED, f"{type(exc).__name__}: {exc}"))
        c = summary.counts
        best = ("" if summary.best is None else
                f"; best {summary.metric} {summary.best.value:.6g} (trial {summary.best.number})")
        detail = (f"{summary.added} trial(s) ({c.get('complete', 0)} complete, {c.get('pruned', 0)} "
                  f"pruned, {c.get('failed', 0)} failed) in {summary.seconds:.1f}s{best}")
        return self._record(Tick(tick, DONE, detail, summary))

    def _schedule_spec(self, tick: datetime) -> Any:
        from hpsearch.spec import ScheduleSpec
        return ScheduleSpec(cron=self.cron, trials_per_run=self.trials_per_run,
                            max_runs=self.max_runs, tick=tick.isoformat(timespec="seconds"))

    def _run(self, spec: StudySpec) -> SweepSummary:
        run = self.run
        if run is None:
            from hpsearch.study import run_study as run
        from hpsearch.study import Observer
        observer = self.observer
        if observer is not None and not isinstance(observer, Observer):
            observer = observer()                  # a fresh one per sweep (its clock, its counts)
        kwargs = {"observer": observer} if observer is not None else {}
        return run(spec, extend=self.trials_per_run, **kwargs)

    def _record(self, tick: Tick) -> Tick:
        self.ticks.append(tick)
        what = {DONE: "sweep done", SKIPPED: "skipped", FAILED: "sweep FAILED"}[tick.status]
        tail = "; the schedule goes on" if tick.status == FAILED and self.cron else ""
        self.log(f"tick {_hms(tick.time)}: {what}: {tick.detail}{tail}")
        return tick

    # ---------------------------------------------------------------- the loop

    @property
    def finished_runs(self) -> int:
        return sum(1 for t in self.ticks if t.status == DONE)

    def run_forever(self) -> list[Tick]:
        """Sweep at every tick until ``max_runs`` sweeps finished (or forever)."""
        from croniter import croniter
        if self.cron is None:
            raise SpecError(self.spec.file, "schedule.cron", "is not set",
                            "give --cron EXPR, schedule.cron in the file, or --once")
        it = croniter(self.cron, self.clock())
        nxt = it.get_next(datetime)
        limit = f", until {self.max_runs} sweep(s) finished" if self.max_runs else ""
        self.log(f"schedule '{self.cron}' for study '{self.spec.name}'{limit}; next tick "
                 f"{_hms(nxt)} (Ctrl-C or SIGTERM stops it)")
        while True:
            wait = (nxt - self.clock()).total_seconds()
            if wait > 0:
                self.sleep(wait)
                continue   # re-check: a sleep may end early
            self.run_tick(nxt)
            if self.max_runs is not None and self.finished_runs >= self.max_runs:
                return self.ticks
            nxt = self._next_after_sweep(it, nxt)

    def _next_after_sweep(self, it: Any, started: datetime) -> datetime:
        """The next tick still to come; the ticks that came during the sweep are skipped."""
        missed = []
        nxt = it.get_next(datetime)
        now = self.clock()
        while nxt <= now:
            missed.append(nxt)
            nxt = it.get_next(datetime)
        if missed:
            shown = ", ".join(_hms(t) for t in missed) if len(missed) <= 3 else \
                f"{_hms(missed[0])} ... {_hms(missed[-1])}"
            self.log(f"skipped {len(missed)} tick(s) ({shown}): the sweep of tick {_hms(started)} "
                     f"was still running")
            self.ticks.extend(Tick(t, SKIPPED, "the previous sweep was still running") for t in missed)
        self.log(f"next tick {_hms(nxt)}")
        return nxt
