"""The ``hpsearch`` command: run, validate, show, best and train.

Every user error (bad YAML, bad option, missing data, unknown backend) prints one line,
``Error: <file>: <key.path>: <what is wrong>; <hint>``, on stderr and exits with code 2.
"""
from __future__ import annotations

import functools
import json
import math
import signal
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import click

from hpsearch.errors import HpsearchError, redact
from hpsearch.records import COMPLETE, FAILED, PRUNED, TrialResult, TrialTask
from hpsearch.study import Observer, Progress, SweepSummary, TrialSummary

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _fail(exc: HpsearchError) -> None:
    click.echo(f"Error: {exc.line()}", err=True)
    raise click.exceptions.Exit(exc.exit_code)


def _handles_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn an HpsearchError into its one ``Error:`` line and exit code 2."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HpsearchError as exc:
            _fail(exc)
    return wrapper


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="hpsearch")
def cli() -> None:
    """Hyperparameter search for small deep-learning models.

    \b
    Examples:
      hpsearch validate studies/*.yaml
      hpsearch run studies/lenet.yaml
      hpsearch show studies/lenet.yaml
      hpsearch best studies/lenet.yaml --json
      hpsearch train studies/lenet.yaml --best --workers 2
    """


def _study_command(fn: Callable[..., Any]) -> click.Command:
    """``hpsearch NAME SPEC [options]``: a command on a study file, its errors one ``Error:`` line
    (stands above the command's options)."""
    spec = click.argument("spec", type=click.Path(dir_okay=False))
    return cli.command(context_settings=CONTEXT)(spec(_handles_errors(fn)))


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _fmt_value(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _fmt_params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={_fmt_value(v) if isinstance(v, float) else v}" for k, v in params.items())


# --------------------------------------------------------------------------- progress views

def _status_line(p: Progress) -> str:
    target = f"/{p.target}" if p.target is not None else ""
    best = (f"best {p.metric} {_fmt_value(p.best_value)} (trial {p.best_number})"
            if p.best_value is not None else "best -")
    return (f"{p.done}{target} done, {p.running} running, {p.pruned} pruned, {p.failed} failed | "
            f"{best}")


class PlainLog(Observer):
    """One line per finished trial, for logs and pipes."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def note(self, text: str) -> None:
        click.echo(redact(text))

    def finished(self, result: TrialResult, progress: Progress) -> None:
        what = {COMPLETE: "complete", PRUNED: "pruned", FAILED: "FAILED"}[result.state]
        reason = f" ({result.reason})" if result.state == FAILED and result.reason else ""
        eta = f", ETA {_fmt_seconds(progress.eta_s)}" if progress.eta_s is not None else ""
        click.echo(f"trial {result.number} {what}{reason}: {progress.metric}="
                   f"{_fmt_value(result.value)} after {result.epochs} epoch(s), {result.seconds:.1f}s | "
                   f"{_status_line(progress)} | elapsed {_fmt_seconds(time.monotonic() - self.t0)}{eta}",
                   color=False)


class LiveView(Observer):
    """A rich live panel on a terminal; finished trials scroll above it."""

    def __init__(self, title: str) -> None:
        from rich.console import Console
        from rich.live import Live
        self.console = Console(stderr=False)
        self.title = title
        self.progress: Progress | None = None
        self.t0 = time.monotonic()
        self.live = Live(console=self.console, refresh_per_second=4, transient=True,
                         get_renderable=self._render)

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    def _render(self) -> Any:
        from rich.text import Text
        p = self.progress
        elapsed = time.monotonic() - self.t0
        if p is None:
            return Text(f"{self.title}: starting workers... {_fmt_seconds(elapsed)}")
        eta = p.eta_s
        if eta is not None:
            eta = max(0.0, eta - (elapsed - p.elapsed_s))
        return Text.assemble((f"{self.title} ", "bold"), _status_line(p),
                             f" | elapsed {_fmt_seconds(elapsed)} | ETA {_fmt_seconds(eta)}")

    def note(self, text: str) -> None:
        self.console.print(redact(text), markup=False, highlight=False)

    def started(self, task: TrialTask, progress: Progress) -> None:
        self.progress = progress

    def finished(self, result: TrialResult, progress: Progress) -> None:
        self.progress = progress
        style = {COMPLETE: "green", PRUNED: "yellow", FAILED: "red"}[result.state]
        reason = f" ({result.reason})" if result.state == FAILED and result.reason else ""
        self.console.print(f"[{style}]trial {result.number} {result.state}[/]{reason}: "
                           f"{progress.metric}={_fmt_value(result.value)}, {result.epochs} epoch(s), "
                           f"{result.seconds:.1f}s", highlight=False)


# --------------------------------------------------------------------------- tables

def _console() -> Any:
    from rich.console import Console
    return Console(width=None if sys.stdout.isatty() else 160)


def _trials_table(title: str, trials: list[TrialSummary], metric: str,
                  objectives: tuple[str, ...] = (), front: set[int] | None = None) -> Any:
    """The trials; several ``objectives``: a column each, and (``front``) a ``*`` on the Pareto set."""
    from rich.table import Table
    table = Table(title=title, title_justify="left")
    values = list(objectives) or [metric or "value"]
    for col in ("trial", "state", *values, "epochs", "seconds", "params"):
        table.add_column(col, overflow="fold")
    for t in trials:
        shown = t.values if objectives and t.values else (t.value,) + (None,) * (len(values) - 1)
        mark = "*" if front is not None and t.number in front else ""
        table.add_row(f"{t.number}{mark}", t.state, *map(_fmt_value, shown), str(t.epochs),
                      "-" if t.seconds is None else f"{t.seconds:.1f}",
                      _fmt_params(t.params) + (f"  [{t.reason}]" if t.reason else ""))
    return table


def _print_summary(summary: SweepSummary) -> None:
    console = _console()
    c = summary.counts
    if not summary.budget_met:
        click.echo(f"\n{summary.study}: {summary.added} trial(s) in {_fmt_seconds(summary.seconds)} "
                   f"({c[COMPLETE]} complete, {c[PRUNED]} pruned, {c[FAILED]} failed)")
    if summary.top and summary.objectives:
        console.print(_trials_table(f"Pareto set: {len(summary.top)} trial(s)", list(summary.top),
                                    summary.metric, summary.objectives))
    elif summary.top:
        console.print(_trials_table(f"top {len(summary.top)} trials by {summary.metric} "
                                    f"({summary.direction})", list(summary.top), summary.metric))
    click.echo(f"Optuna storage: {redact(summary.storage)}")
    if summary.tracking_uri:
        from hpsearch.tracking import ui_command
        click.echo(f"MLflow: {redact(ui_command(summary.tracking_uri))}")


# --------------------------------------------------------------------------- commands

def _overrides(sets: tuple[str, ...], file: str, options: dict[str, Any]) -> list[tuple[str, Any, str]]:
    from hpsearch.spec import parse_overrides
    out = []
    names = {"trials": ("budget.trials", "--trials"), "timeout": ("budget.timeout", "--timeout"),
             "parallelism": ("execution.parallelism", "--parallelism"),
             "backend": ("execution.backend", "--backend"), "master": ("execution.master", "--master"),
             "storage": ("storage", "--storage"), "tracking_uri": ("tracking.uri", "--tracking-uri")}
    for opt, value in options.items():
        if value is not None:
            key, flag = names[opt]
            out.append((key, value, f"{flag} {value}"))
    return parse_overrides(sets, file) + out


def _print_phases() -> None:
    """``--verbose``: the sweep's start-up steps (logger hpsearch.phases) on stderr, as they end."""
    import logging
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("phase %(message)s"))
    phases = logging.getLogger("hpsearch.phases")
    phases.addHandler(handler)
    phases.setLevel(logging.INFO)
    phases.propagate = False


def _sigterm_as_interrupt() -> None:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)


@_study_command
@click.option("--trials", type=int, help="Trials to reach in total (overrides budget.trials).")
@click.option("--extend", type=int, help="Run N trials more than the study has, whatever the budget.")
@click.option("--timeout", help="Stop starting trials after this long: 90s, 30m, 2h.")
@click.option("--parallelism", type=int, help="Trials at once (one core each).")
@click.option("--backend", type=click.Choice(["local", "spark"]), help="Where trials run.")
@click.option("--master", help="Spark master URL (spark backend).")
@click.option("--storage", help="Optuna storage URL or .journal file (default: <study>.optuna.journal beside it).")
@click.option("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or MLflow's).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a study setting, e.g. --set fixed.epochs=1 (repeatable).")
@click.option("--verbose", is_flag=True, help="Print when each start-up step ends (seconds since the start).")
def run(spec: str, trials: int | None, extend: int | None, timeout: str | None,
        parallelism: int | None, backend: str | None, master: str | None, storage: str | None,
        tracking_uri: str | None, sets: tuple[str, ...], verbose: bool = False) -> None:
    """Run a study until its budget is met; resume it if it was stopped.

    \b
    Examples:
      hpsearch run studies/lenet.yaml
      hpsearch run studies/lenet.yaml --trials 6 --set fixed.epochs=2
      hpsearch run studies/lenet.yaml --extend 10 --parallelism 4
      hpsearch run studies/textcnn.yaml --set data.path=~/data/20news --timeout 2h
      hpsearch run studies/lenet.yaml --tracking-uri http://mlflow:5000
    """
    from hpsearch.spec import load_spec
    from hpsearch.study import run_study
    options = {"trials": trials, "timeout": timeout, "parallelism": parallelism, "backend": backend,
               "master": master, "storage": storage, "tracking_uri": tracking_uri}
    study = load_spec(spec, _overrides(sets, spec, options))
    _sigterm_as_interrupt()
    if verbose:
        _print_phases()
        from hpsearch.study import Phases, process_started
        Phases.origin = process_started()      # phases count from the process start
    try:
        if sys.stdout.isatty():
            with LiveView(study.name) as view:
                summary = run_study(study, extend=extend, observer=view)
        else:
            summary = run_study(study, extend=extend, observer=PlainLog())
    except KeyboardInterrupt:
        click.echo("Interrupted: running trials were marked failed and re-queued; run the same "
                   "command again to resume.", err=True)
        raise click.exceptions.Exit(130) from None
    _print_summary(summary)


@cli.command(context_settings=CONTEXT)
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a setting first.")
def validate(specs: tuple[str, ...], sets: tuple[str, ...]) -> None:
    """Check study files without running anything (exit 2 if any is invalid).

    A study whose net needs a data path (textcnn, rnn) is valid without one; `run` then asks for
    it (--set data.path=DIR).

    \b
    Examples:
      hpsearch validate studies/*.yaml
      hpsearch validate studies/textcnn.yaml --set data.path=~/data/20news
    """
    from hpsearch.spec import load_spec, parse_overrides
    bad = 0
    for path in specs:
        try:
            spec = load_spec(path, parse_overrides(sets, path))
        except HpsearchError as exc:
            click.echo(f"Error: {exc.line()}", err=True)
            bad += 1
            continue
        budget = spec.budget.trials if spec.budget.trials is not None else "-"
        click.echo(f"ok {path}: net {spec.net}, {len(spec.space)} searched param(s), "
                   f"{spec.sampler.name} sampler, {spec.pruner.name} pruner, {budget} trial(s), "
                   "objective " + ", ".join(f"{m} ({d})" for m, d in zip(spec.objective.all_metrics,
                                                                         spec.objective.all_directions)))
        for p in spec.pending:
            click.echo(f"  note: {p.key}: {p.problem}; {p.hint}")
    if bad:
        raise click.exceptions.Exit(2)


def _load_for_reading(spec: str, storage: str | None, sets: tuple[str, ...] = ()) -> Any:
    from hpsearch.spec import load_spec
    overrides = _overrides(sets, spec, {"storage": storage})
    return load_spec(spec, overrides)


@_study_command
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--storage", help="Optuna storage URL, if the study was run with --storage.")
def show(spec: str, as_json: bool, storage: str | None) -> None:
    """List a study's trials: number, state, params, value, epochs, seconds.

    \b
    Examples:
      hpsearch show studies/lenet.yaml
      hpsearch show studies/lenet.yaml --json | jq '.trials[] | select(.state == "COMPLETE")'
    """
    from hpsearch.study import best_trial, trial_summaries
    study = _load_for_reading(spec, storage)
    trials = trial_summaries(study)
    o = study.objective
    front = None
    if o.multi:
        done = any(t.state == COMPLETE.upper() for t in trials)
        front = {t.number for t in best_trial(study)} if done else set()
    if as_json:
        rows = [{**_jsonable(t, o.metrics), **({"pareto": t.number in front} if o.multi else {})}
                for t in trials]
        click.echo(json.dumps({"study": study.name, "metric": o.metric, "direction": o.direction,
                               **_objectives_json(o), "trials": rows}, indent=2))
        return
    title = f"{study.name}: {len(trials)} trial(s)" + (" (* on the Pareto front)" if o.multi else "")
    _console().print(_trials_table(title, trials, o.metric, o.metrics, front))


@_study_command
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--storage", help="Optuna storage URL, if the study was run with --storage.")
def best(spec: str, as_json: bool, storage: str | None) -> None:
    """Print the best completed trial of a study (its MLflow run holds the weights).

    \b
    Examples:
      hpsearch best studies/lenet.yaml
      hpsearch best studies/lenet.yaml --json
    """
    from hpsearch.study import best_trial
    study = _load_for_reading(spec, storage)
    t = best_trial(study)
    if isinstance(t, tuple):       # several objectives: the Pareto set
        o = study.objective
        if as_json:
            click.echo(json.dumps({**_objectives_json(o), "pareto": [_jsonable(x, o.metrics) for x in t]},
                                  indent=2))
            return
        _console().print(_trials_table(f"Pareto set of {study.name}: {len(t)} trial(s) ("
                                       + ", ".join(f"{m} {d}" for m, d in zip(o.metrics, o.directions))
                                       + ")", list(t), o.metric, o.metrics))
        click.echo("no single best: hpsearch predict / train --best take --trial N")
        return
    if as_json:
        click.echo(json.dumps(_jsonable(t), indent=2))
        return
    click.echo(f"best trial {t.number}: {study.objective.metric}={_fmt_value(t.value)} "
               f"after {t.epochs} epoch(s)")
    for k, v in t.params.items():
        click.echo(f"  {k}: {v}")
    if t.run_id:
        click.echo(f"MLflow run: {t.run_id} (weights: runs:/{t.run_id}/model/model.npz; "
                   f"MLflow Model: runs:/{t.run_id}/model)")


@_study_command
@click.option("--params", "params_json", metavar="JSON",
              help="The configuration to train, as a JSON object (the study's fixed settings apply).")
@click.option("--best", is_flag=True, help="Train the study's best completed trial's configuration.")
@click.option("--trial", type=click.IntRange(min=0), metavar="N",
              help="Train completed trial N's configuration (a multi-objective study has no single best).")
@click.option("--workers", type=click.IntRange(min=1),
              help="Spark barrier tasks (one core each) that train the one model together "
                   "(default: execution.data_parallel.workers).")
@click.option("--sync-every", type=click.IntRange(min=1),
              help="Steps between averages; 1 (the default) averages gradients every step: "
                   "synchronous SGD.")
@click.option("--seed", type=int, help="Seed (default: the best trial's, or the study's).")
@click.option("--output", type=click.Path(dir_okay=False), help="Also save the model (.npz) here.")
@click.option("--master", help="Spark master URL (default: execution.master, else local).")
@click.option("--storage", help="Optuna storage URL, if the study was run with --storage.")
@click.option("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or MLflow's).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a study setting, e.g. --set fixed.epochs=10 --set data.limit=null.")
def train(spec: str, params_json: str | None, best: bool, trial: int | None, workers: int | None,
          sync_every: int | None, seed: int | None, output: str | None, master: str | None,
          storage: str | None, tracking_uri: str | None, sets: tuple[str, ...]) -> None:
    """Train one configuration data-parallel on Spark and log it to MLflow as its own run.

    For one big model (or the sweep's best, retrained on all the data); a sweep of many small
    trials is faster as `hpsearch run` (one core per trial, no synchronisation).

    \b
    Examples:
      hpsearch train studies/lenet.yaml --best --workers 2
      hpsearch train studies/textcnn.yaml --params '{"lr": 0.01}' --workers 4 --set data.path=DIR
      hpsearch train studies/lenet.yaml --best --workers 2 --sync-every 8 --output best.npz
    """
    from hpsearch.dataparallel import parse_params, train_config
    from hpsearch.spec import load_spec
    options = {"master": master, "storage": storage, "tracking_uri": tracking_uri}
    study = load_spec(spec, _overrides(sets, spec, options))
    params = parse_params(params_json) if params_json is not None else None
    click.echo(f"training one {study.net} data-parallel on Spark ...")
    _sigterm_as_interrupt()
    try:
        out = train_config(study, params=params, best=best, workers=workers, sync_every=sync_every,
                           seed=seed, output=output, trial=trial)
    except KeyboardInterrupt:
        click.echo("Interrupted: the MLflow run was marked KILLED.", err=True)
        raise click.exceptions.Exit(130) from None
    _print_trained(out, study.objective.metric)


def _print_trained(out: Any, metric: str) -> None:
    r = out.result
    click.echo(f"{out.source}: {_fmt_params(out.params)} (seed {out.seed})")
    for h in r.history:
        click.echo(f"  epoch {int(h['epoch'])}: {metric}={_fmt_value(h.get(metric))} "
                   f"loss={_fmt_value(h.get('loss'))} {h.get('samples_per_s', 0):.0f} samples/s "
                   f"(sync {h.get('sync_s', 0):.2f}s)")
    if r.state != COMPLETE:
        click.echo(f"training {r.state}: {redact(r.reason)}", err=True)
    click.echo(f"{r.state} in {_fmt_seconds(r.seconds)} on {out.workers} worker(s), averaging every "
               f"{out.sync_every} step(s)")
    if out.output:
        click.echo(f"model saved to {out.output}")
    if out.run_id:
        from hpsearch.tracking import ui_command
        click.echo(f"MLflow run: {out.run_id} ({redact(ui_command(out.tracking_uri))})")
    if r.state != COMPLETE:
        raise click.exceptions.Exit(1)


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def _jsonable(t: TrialSummary, objectives: tuple[str, ...] = ()) -> dict[str, Any]:
    out = {"number": t.number, "state": t.state, "params": t.params, "value": _finite(t.value),
           "epochs": t.epochs, "seconds": t.seconds, "reason": t.reason, "mlflow_run_id": t.run_id}
    if objectives:
        out["values"] = dict(zip(objectives, map(_finite, t.values))) if t.values else None
    return out


def _objectives_json(o: Any) -> dict[str, Any]:
    return {"metrics": list(o.metrics), "directions": list(o.directions)} if o.multi else {}


# --------------------------------------------------------------------------- schedule, predict

def _schedule_overrides(cron: str | None, trials_per_run: int | None,
                        max_runs: int | None) -> list[tuple[str, Any, str]]:
    flags = (("schedule.cron", cron, "--cron"), ("schedule.trials_per_run", trials_per_run,
             "--trials-per-run"), ("schedule.max_runs", max_runs, "--max-runs"))
    return [(key, value, f"{flag} {value}") for key, value, flag in flags if value is not None]


@_study_command
@click.option("--cron", help='When to sweep: a cron expression, e.g. "0 2 * * *" (daily at 2:00); '
              'a 6th field is seconds. Default: schedule.cron in the file.')
@click.option("--trials-per-run", type=int, help="Trials each sweep adds (default: schedule."
              "trials_per_run, else budget.trials).")
@click.option("--max-runs", type=int, help="Stop after M finished sweeps (default: never).")
@click.option("--once", is_flag=True, help="Run one sweep now and exit (for cron, Airflow, ...).")
@click.option("--parallelism", type=int, help="Trials at once (one core each).")
@click.option("--backend", type=click.Choice(["local", "spark"]), help="Where trials run.")
@click.option("--master", help="Spark master URL (spark backend).")
@click.option("--storage", help="Optuna storage URL or .journal file (default: <study>.optuna.journal beside it).")
@click.option("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or MLflow's).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a study setting, e.g. --set fixed.epochs=1 (repeatable).")
def schedule(spec: str, cron: str | None, trials_per_run: int | None, max_runs: int | None,
             once: bool, parallelism: int | None, backend: str | None, master: str | None,
             storage: str | None, tracking_uri: str | None, sets: tuple[str, ...]) -> None:
    """Extend a study by N trials at every tick of a cron schedule (in the foreground).

    Each sweep warm-starts from every earlier trial and gets its own MLflow parent run, tagged
    hpsearch.schedule and hpsearch.tick. A tick that comes while a sweep of the study still runs
    (here, or `hpsearch run` elsewhere) is skipped; a failed sweep is logged and the schedule goes
    on. Ctrl-C or SIGTERM stops it cleanly (exit 0): running trials are re-queued, finished ones
    kept. With --once: one sweep now (exit 1 if it failed, 0 if skipped), for an outside scheduler.

    \b
    Examples:
      hpsearch schedule studies/lenet.yaml --cron "0 2 * * *" --trials-per-run 10
      hpsearch schedule studies/lenet.yaml --cron "*/30 * * * *" --trials-per-run 4 --max-runs 8
      hpsearch schedule studies/lenet.yaml --once --trials-per-run 10   # in a crontab or Airflow
    """
    from hpsearch.errors import SpecError
    from hpsearch.schedule import FAILED as SWEEP_FAILED
    from hpsearch.schedule import Scheduler, now
    from hpsearch.spec import ScheduleSpec, load_spec
    options = {"parallelism": parallelism, "backend": backend, "master": master, "storage": storage,
               "tracking_uri": tracking_uri}
    study = load_spec(spec, _overrides(sets, spec, options)
                      + _schedule_overrides(cron, trials_per_run, max_runs))
    plan = study.schedule or ScheduleSpec()
    if not once and plan.cron is None:
        raise SpecError(spec, "schedule.cron", "no cron expression is set",
                        "give --cron EXPR (e.g. --cron '0 2 * * *'), schedule.cron in the file, or --once")
    scheduler = Scheduler(study, cron=plan.cron, trials_per_run=plan.trials_per_run,
                          max_runs=plan.max_runs, observer=PlainLog,
                          log=lambda text: click.echo(redact(text)))
    _sigterm_as_interrupt()
    try:
        if once:
            if scheduler.run_tick(now()).status == SWEEP_FAILED:
                raise click.exceptions.Exit(1)
            return
        scheduler.run_forever()
    except KeyboardInterrupt:
        click.echo(f"stopped: {scheduler.finished_runs} sweep(s) finished; trials that were running "
                   "were marked failed and re-queued, finished trials are kept.")


@_study_command
@click.option("--input", "input_path", required=True, type=click.Path(), help="Parquet file to score.")
@click.option("--output", "output_path", required=True, type=click.Path(),
              help="Parquet to write: the input's columns and `prediction`.")
@click.option("--column", help="Input column (default: pixels for lenet/autoencoder, text for "
              "textcnn/rnn).")
@click.option("--master", help="Spark master URL (default: execution.master, else local[*]).")
@click.option("--storage", help="Optuna storage URL, if the study was run with --storage.")
@click.option("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or MLflow's).")
@click.option("--trial", type=click.IntRange(min=0), metavar="N",
              help="Score with completed trial N's model (needed when the study has several objectives).")
def predict(spec: str, input_path: str, output_path: str, column: str | None, master: str | None,
            storage: str | None, tracking_uri: str | None, trial: int | None) -> None:
    """Score a Parquet file with the study's best model (the Spark SQL UDF of register_udf).

    lenet: pixels (784 raw 0..255 values) -> class; autoencoder: pixels -> reconstruction error;
    textcnn: text -> class name; rnn: text -> log-probability of its last word.

    \b
    Examples:
      hpsearch predict studies/lenet.yaml --input images.parquet --output digits.parquet
      hpsearch predict studies/rnn.yaml --input lines.parquet --output scored.parquet --column line
    """
    from hpsearch.scoring import predict_parquet
    from hpsearch.spec import load_spec
    study = load_spec(spec, _overrides((), spec, {"storage": storage, "tracking_uri": tracking_uri}))
    out = predict_parquet(study, input_path, output_path, column, master=master, trial=trial)
    click.echo(f"wrote {out['rows']} row(s) to {out['output']}: prediction = {study.net}"
               f"({out['column']}), weights {out['source']}")


def main() -> None:
    """Console-script entry point. Click's own usage errors echo the bad value: masked like ours."""
    try:
        code = cli.main(prog_name="hpsearch", standalone_mode=False)
    except click.ClickException as exc:
        exc.message = redact(exc.message)
        exc.show()
        code = exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        code = 1
    _exit(code if isinstance(code, int) else 0)


def _exit(code: int) -> None:
    """End the process now: SQLite files closed, the atexit handlers run (logging flushed, shipped
    data removed, a local Spark Connect server stopped), stdout and stderr flushed, but not the
    interpreter's teardown of every module, which took 2-2.5 s after a sweep here (MLflow, Spark,
    numba and matplotlib imported; bench/e2e.py). Every thread's work is done by now."""
    import atexit
    import os

    from hpsearch.storage import close_sqlite
    try:
        close_sqlite()
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)


if __name__ == "__main__":
    main()
