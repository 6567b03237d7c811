"""MLflow tracking, written by the driver only.

Layout: experiment = study name; one parent run per sweep (the spec file as an artifact, sampler,
pruner and budget as params, best value and params at the end); one child run per finished trial
(tag ``mlflow.parentRunId``) with its params, per-epoch metrics (step = epoch), final status
(FINISHED, FAILED, or KILLED for pruned), failure reason, duration, the worker it ran on, and
the trained weights (``model/model.npz``, a ``nets.save`` file, and an MLflow Model ``model``, see
:mod:`hpsearch.mlflow_model`) when it was the best so far. The experiment is tagged as a
machine-learning one (``mlflow.experimentKind``), and the data set is a dataset input of every run.

Cost on the driver's loop, per trial: no MLflow call. One background thread
(:mod:`hpsearch.mlflow_writer`) creates the trial's run (``create_run`` with its tags) while the trial
runs, so that its verdict has the id for Optuna (``mlflow_run_id``) and MLflow shows the trial
RUNNING meanwhile; the verdict's record (one ``log_batch`` with params, every epoch's metrics and the
tags; the dataset input; artifacts and the MLflow Model; ``set_terminated``) is spooled and written
by the same thread, which retries while MLflow is down.

Every finished Optuna trial gets exactly one child run: :meth:`Tracker.reconcile` writes what the
spool still holds and repairs what a killed driver left behind (runs still RUNNING, finished trials
without a run).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.errors import HpsearchError, redact
from hpsearch.mlflow_writer import QUICK_HTTP, Spool, Writer, spool_dir
from hpsearch.records import COMPLETE, FAILED, PRUNED, TrialResult

if TYPE_CHECKING:
    import optuna

    from hpsearch.spec import StudySpec

STATUS = {COMPLETE: "FINISHED", PRUNED: "KILLED", FAILED: "FAILED"}
TAG_STUDY = "hpsearch.study"
TAG_KIND = "hpsearch.kind"
TAG_TRIAL = "hpsearch.trial_number"
TAG_STATE = "hpsearch.state"
TAG_REASON = "hpsearch.fail_reason"
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"       # MLflow 3's UI opens such an experiment on its
CUSTOM_MODEL_DEVELOPMENT = "custom_model_development"  # runs table (no experiment-type prompt)
RUN_WAIT_S = 5.0
"""How long a trial's verdict waits for its run, made while it ran, before it is told without the
run's id (the writer is busy with an earlier record, an MLflow Model say)."""

SERVERS = ("http://", "https://", "databricks")
"""Tracking URIs of a server (the others name a local store: a SQLite file, a folder)."""


@contextmanager
def quiet_mlflow() -> Iterator[None]:
    """MLflow's and Alembic's INFO logs (database creation and migrations) silenced for the block."""
    import mlflow  # noqa: F401 - mlflow sets its logger's level on import; override it after

    from hpsearch.scoped import quiet
    with quiet("mlflow", "alembic"):
        yield


def resolve_uri(uri: str | None) -> str:
    """The tracking URI: the given one, else ``MLFLOW_TRACKING_URI``, else MLflow's default."""
    import mlflow
    return uri or mlflow.get_tracking_uri()


def check_reachable(uri: str | None) -> None:
    """A tracking server (http/https) must answer its health check; local stores are checked when
    opened. Writes nothing, so a failed run leaves neither study nor MLflow data behind."""
    uri = resolve_uri(uri)
    if not uri.startswith(("http://", "https://")):
        return
    import requests
    try:
        requests.get(uri.rstrip("/") + "/health", timeout=10).raise_for_status()
    except requests.RequestException as exc:
        raise HpsearchError(f"the MLflow tracking server {uri} does not answer: "
                            f"{' '.join(str(exc).split())[:200]}",
                            "start it, or check --tracking-uri / MLFLOW_TRACKING_URI") from None
    _check_credentials(uri)


def prepare_tracking(uri: str | None) -> None:
    """Check the tracking server (:func:`check_reachable`) and import what MLflow's client needs
    (about a second), while Spark starts. Writes nothing: a local store is created by the sweep,
    once the study is locked, so a run that stops before leaves no MLflow data behind."""
    check_reachable(uri)
    import mlflow.tracking  # noqa: F401
    if not resolve_uri(uri).startswith(("http://", "https://")):
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401


def _check_credentials(uri: str) -> None:
    """One authenticated read, with the credentials MLflow itself will send (MLFLOW_TRACKING_USERNAME
    and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN): a server with authentication that
    refuses them fails the run here, before the study store exists. ``/health`` needs no login."""
    from mlflow.tracking import MlflowClient
    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - MlflowException or a requests error
        status = getattr(exc, "get_http_status_code", lambda: None)()
        code = str(getattr(exc, "error_code", ""))
        if status == 401 or code == "UNAUTHENTICATED" or "401" in str(exc)[:200]:
            raise HpsearchError(f"the MLflow tracking server {uri} refused the credentials (HTTP 401)",
                                "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
                                "(or MLFLOW_TRACKING_TOKEN) to a user of that server") from None
        if status == 403 or code == "PERMISSION_DENIED":
            raise HpsearchError(f"the MLflow tracking server {uri}: the user "
                                f"{os.environ.get('MLFLOW_TRACKING_USERNAME', '(none)')!r} may not read "
                                "experiments (HTTP 403)", "ask its admin for permissions") from None
        raise HpsearchError(f"the MLflow tracking server {uri} answers, but not as MLflow: "
                            f"{' '.join(str(exc).split())[:200]}",
                            "check --tracking-uri / MLFLOW_TRACKING_URI") from None


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on this store."""
    if uri.startswith(SERVERS):
        return f"open {uri} in a browser"
    return f"mlflow ui --backend-store-uri {uri}"


def _tune_store(client: Any) -> None:
    """WAL for a SQLite MLflow store, as for the study's (:func:`hpsearch.storage.tune_sqlite`).
    MLflow keeps the engine on the client's store, which has no public accessor: without it
    nothing is tuned."""
    from hpsearch.storage import tune_sqlite
    engine = getattr(getattr(getattr(client, "_tracking_client", None), "store", None), "engine", None)
    if engine is not None:
        tune_sqlite(engine)


SERVER_LANES = 4
"""Threads that write trials' runs to a tracking server at once: a remote server's round trips
overlap, and the driver's next verdict does not wait behind them. A SQLite or file store gets one
(its writes are the driver's own CPU, and SQLite takes one writer at a time)."""


def seed_store(uri: str) -> None:
    """Create a new SQLite store (``uri``) as a copy of an empty one that this MLflow version built
    once, kept in ``$XDG_CACHE_HOME/hpsearch`` (``~/.cache/hpsearch``): MLflow runs its whole chain
    of schema migrations each time it creates a store, 1.3 s of CPU on an idle core here and 3 s
    beside a sweep's starting workers, before a first sweep's first verdict. The template holds no
    experiment: MLflow adds its Default one (its artifacts under the working directory) when it
    opens the copy, as it does in a store it has just created. A store that exists is never
    touched; when anything fails (a read-only cache, no hard links) MLflow creates the store."""
    import sqlite3

    import mlflow

    from hpsearch.storage import cache_dir, sqlite_path
    db = sqlite_path(uri)
    if db is None or db.exists():
        return
    cache = cache_dir()
    template = cache / f"mlflow-{mlflow.__version__}-store.db"
    build, part = Path(f"{template}.{os.getpid()}"), Path(f"{db}.{os.getpid()}.part")
    with suppress(Exception):      # MLflow then creates the store itself, as without a template
        try:
            if not template.exists():
                cache.mkdir(parents=True, exist_ok=True)
                mlflow.MlflowClient(f"sqlite:///{build}").search_experiments(max_results=1)
                with closing(sqlite3.connect(build)) as conn, conn:
                    conn.execute("DELETE FROM experiments")
                os.replace(build, template)
            shutil.copyfile(template, part)
            os.link(part, db)      # never over a store that appeared meanwhile
        finally:
            for path in (build, part):
                with suppress(OSError):
                    path.unlink(missing_ok=True)


class Tracker:
    """The driver's MLflow writer for one sweep of one study."""

    def __init__(self, spec: StudySpec, uri: str | None) -> None:
        from mlflow import MlflowClient
        self.spec = spec
        self.uri = resolve_uri(uri)
        self.parent_id: str | None = None
        self.dataset: Any = None             # the sweep's DatasetInput (start_sweep)
        self.best_model_id: str | None = None
        self.run_ids: dict[int, str] = {}    # trial number -> its run, as written by this tracker
        self._opening: set[int] = set()      # runs open_trial_run is still creating
        self._opened = threading.Condition()
        self._writer: Writer | None = None   # the sweep's background writer (start_sweep)
        self._spool: Spool | None = None
        self.last_error = ""
        self.on_plots: Callable[[float], None] | None = None   # told how long the plots took
        self._env = ExitStack()              # QUICK_HTTP, for the sweep
        # MLflow prints "View run ... at: URL" for every run it ends on a server, the URL with any
        # password it carries; hpsearch prints its own (masked) line instead
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        try:
            with quiet_mlflow():
                seed_store(self.uri)
                self.client = MlflowClient(tracking_uri=self.uri)
                _tune_store(self.client)
                self.experiment_id = self._experiment(spec.tracking.experiment or spec.name)
        except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds for a bad store
            text = " ".join(str(exc).split())[:300]
            raise HpsearchError(f"cannot open the MLflow tracking store {self.uri}: {text}",
                                "check --tracking-uri / MLFLOW_TRACKING_URI") from None

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            if TAG_EXPERIMENT_KIND not in found.tags:
                self.client.set_experiment_tag(found.experiment_id, TAG_EXPERIMENT_KIND,
                                               CUSTOM_MODEL_DEVELOPMENT)
            return found.experiment_id
        return self.client.create_experiment(name, artifact_location=self._artifact_root(name),
                                             tags={TAG_EXPERIMENT_KIND: CUSTOM_MODEL_DEVELOPMENT})

    def _artifact_root(self, name: str) -> str | None:
        """Beside a SQLite store, so artifacts do not depend on the working directory."""
        from hpsearch.storage import sqlite_path
        db = sqlite_path(self.uri)
        return None if db is None else (db.resolve().parent / "mlruns" / name).as_uri()

    # ------------------------------------------------------------------ parent run

    @property
    def spool(self) -> Spool:
        """The study's spool of records not yet written (:mod:`hpsearch.mlflow_writer`)."""
        if self._spool is None:
            self._spool = Spool(spool_dir(self.spec.storage, self.spec.name), self.spec.name)
        return self._spool

    def start_sweep(self, budget: dict[str, Any]) -> str:
        """Create the sweep's parent run with the spec as an artifact and its settings as params,
        and start the writer of its trials' runs (each MLflow call made once: QUICK_HTTP)."""
        from hpsearch.scoped import environ
        spec = self.spec
        self._env.enter_context(environ(QUICK_HTTP))
        self._writer = Writer(self.write_record, self.spool,
                              lanes=SERVER_LANES if self.uri.startswith(SERVERS) else 1)
        tags = {TAG_STUDY: spec.name, TAG_KIND: "sweep", "mlflow.source.name": spec.file,
                "mlflow.runName": f"{spec.name}-sweep-{time.strftime('%Y%m%d-%H%M%S')}"}
        tags.update(_schedule_tags(getattr(spec, "schedule", None)))
        run = self.client.create_run(self.experiment_id, tags=tags)
        self.parent_id = run.info.run_id
        params = {"net": spec.net, "metric": spec.objective.metric,
                  "direction": spec.objective.direction, "sampler": spec.sampler.name,
                  "pruner": spec.pruner.name, "backend": spec.execution.backend,
                  "parallelism": spec.execution.parallelism or "all slots", "seed": spec.seed,
                  "data.path": spec.data.path or "(bundled sample)", "data.limit": spec.data.limit,
                  "overrides": "; ".join(spec.overrides) or None,
                  **{f"budget.{k}": v for k, v in budget.items()},
                  **{f"sampler.{k}": v for k, v in spec.sampler.options.items()},
                  **{f"pruner.{k}": v for k, v in spec.pruner.options.items()},
                  **{f"fixed.{k}": v for k, v in spec.fixed.items()},
                  **{f"space.{p.name}": p.describe() for p in spec.space}}
        self._log(self.parent_id, params=params)
        self._artifact_text(self.parent_id, spec.text, Path(spec.file).name
                            if spec.file != "<dict>" else "study.yaml", "spec")
        self.dataset = dataset_input(spec)
        self._log_input(self.parent_id)
        return self.parent_id

    def end_sweep(self, best: optuna.trial.FrozenTrial | None, counts: dict[str, int],
                  status: str = "FINISHED", weights: bytes | None = None) -> int:
        """Best value and params, trial counts, the best weights and the plots on the parent run,
        written after every queued trial record. While MLflow is down it waits at most
        ``tracking.end_wait`` (none when the sweep was stopped); returns how many records are left
        in the spool for the next run."""
        if self.parent_id is None or self._writer is None:     # start_sweep failed, or never ran
            if self._writer is not None:
                self._writer.close(0.0)
                self._writer = None
            self._env.close()
            return 0
        now = int(time.time() * 1000)
        metrics = [[f"trials_{k}", float(v), now, 0] for k, v in counts.items()]
        params: dict[str, str] = {}
        tags: dict[str, str] = {}
        if best is not None:
            metrics.append(["best_value", float(best.value), now, 0])
            params = {f"best.{k}": redact(_param_text(v)) for k, v in best.params.items()}
            tags = {"hpsearch.best_trial": str(best.number),
                    "hpsearch.best_run_id": str(best.user_attrs.get("mlflow_run_id", ""))}
        record = {"key": f"sweep-{self.parent_id}", "kind": "sweep", "run_id": self.parent_id,
                  "params": params, "metrics": metrics, "tags": tags, "status": status, "end": now,
                  "weights": weights is not None, "model_params": dict(best.params) if best else None,
                  "best": [best.number, float(best.value)] if best is not None else None,
                  "plots": status == "FINISHED" and bool(getattr(self.spec.tracking, "plots", True))}
        self._writer.put(record, weights)
        writer, self._writer = self._writer, None
        try:
            return writer.close(self.spec.tracking.end_wait if status == "FINISHED" else 0.0)
        finally:
            self.last_error = writer.error if writer.down else ""
            self._env.close()

    @property
    def down(self) -> str:
        """Why MLflow could not be written (empty while it can, or when the sweep ended with
        everything written)."""
        return self._writer.error if self._writer is not None and self._writer.down else self.last_error

    def _write_sweep_end(self, rec: dict[str, Any], weights: bytes | None) -> None:
        pid, tags = rec["run_id"], dict(rec["tags"])
        if rec["best"] and not tags.get("hpsearch.best_run_id"):
            tags["hpsearch.best_run_id"] = self._run_of(rec["best"][0]) or ""
        self._batch(pid, rec["params"], rec["metrics"], tags)
        if weights is not None:
            self._artifact_bytes(pid, weights, "model.npz", "best_model")
            if not rec.get("model_done"):
                self.best_model_id = self._log_model(pid, "best_model", weights, rec["model_params"])
                rec["model_done"] = True
                if self.best_model_id and rec["best"] and self.spec.tracking.register:
                    self._register(pid, *rec["best"])
        if rec.get("plots"):
            t = time.perf_counter()
            self._log_plots(pid)
            if self.on_plots is not None:
                self.on_plots(time.perf_counter() - t)
        self.client.set_terminated(pid, status=rec["status"], end_time=rec["end"])

    def _log_plots(self, pid: str) -> None:
        """The study's plots (:mod:`hpsearch.plots`) as PNG artifacts under ``plots/``; a plot that
        cannot be drawn is noted in the tag ``hpsearch.plots_skipped``. Never raises."""
        from hpsearch import plots
        from hpsearch.storage import load_existing_study
        try:
            study = load_existing_study(self.spec.storage, self.spec.name)
            with tempfile.TemporaryDirectory(prefix="hpsearch-plots-") as tmp:
                files, notes = plots.render(study, tmp, self.spec.objective.metric)
                if files:
                    self.client.log_artifacts(pid, tmp, "plots")
        except Exception as exc:  # noqa: BLE001 - plots are a bonus; the sweep's record is not
            notes = [f"plots skipped: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"]
        if notes:
            self._log(pid, tags={"hpsearch.plots_skipped": "; ".join(notes)[:4000]})

    # ------------------------------------------------------------------ child runs

    def _trial_tags(self, number: int) -> dict[str, str]:
        parent = {"mlflow.parentRunId": self.parent_id} if self.parent_id else {}
        return {**parent, TAG_STUDY: self.spec.name, TAG_KIND: "trial", TAG_TRIAL: str(number),
                "mlflow.runName": f"trial-{number}"}

    def open_trial_run(self, number: int, started: float) -> None:
        """Create trial ``number``'s child run (status RUNNING, with its tags) on the writer's
        thread, ahead of the records, while the trial runs: its verdict finds the run's id without
        waiting for MLflow (:meth:`create_trial_run`). Nothing while MLflow is down."""
        writer = self._writer
        if writer is None or writer.down:
            return
        with self._opened:
            self._opening.add(number)

        def create() -> None:
            try:
                run = self.client.create_run(self.experiment_id, start_time=int(started * 1000),
                                             tags=self._trial_tags(number))
                self.run_ids[number] = run.info.run_id
            except Exception as exc:  # noqa: BLE001 - MLflow down: the trial's record creates it
                writer.trip(exc)
            finally:
                with self._opened:
                    self._opening.discard(number)
                    self._opened.notify_all()
        writer.first(create, number)

    def create_trial_run(self, number: int, started: float | None = None,
                         wait_s: float = RUN_WAIT_S) -> str | None:
        """A finished trial's child run (status RUNNING), created with its tags in one call so that
        Optuna records its id (``mlflow_run_id``): the run :meth:`open_trial_run` made (waited for
        at most ``wait_s``), else one made now. None while MLflow is down or the writer is
        still busy with the run (the writer writes the record to it, and the trial's record then
        has no run id). Never raises in a sweep."""
        with self._opened:
            self._opened.wait_for(lambda: number not in self._opening, wait_s)
            if number in self.run_ids:
                return self.run_ids[number]
            if number in self._opening:
                return None
        if self._writer is not None and self._writer.down:
            return None
        start = int(started * 1000) if started else None
        try:
            run = self.client.create_run(self.experiment_id, start_time=start, tags=self._trial_tags(number))
        except Exception as exc:  # noqa: BLE001 - MLflow down: the writer retries
            if self._writer is None:
                raise
            self._writer.trip(exc)
            return None
        self.run_ids[number] = run.info.run_id
        return run.info.run_id

    def trial_record(self, run_id: str | None, params: dict[str, Any], result: TrialResult,
                     has_weights: bool = False) -> dict[str, Any]:
        """Everything a finished trial's run holds, as plain JSON: params, every epoch's metrics
        (step = epoch, timed by the epoch's end) and the final ones, tags, status, start and end."""
        end = int(((result.started + result.seconds) if result.started else time.time()) * 1000)
        metrics = _epoch_metrics(result)
        metrics += [[k, float(v), end, 0] for k, v in
                    (("duration_s", result.seconds), ("epochs", float(result.epochs)),
                     ("objective", result.value)) if v is not None]
        tags = {**self._trial_tags(result.number), TAG_STATE: result.state, "hpsearch.worker": result.worker}
        if result.reason:
            tags[TAG_REASON if result.state == FAILED else "hpsearch.reason"] = result.reason[:4000]
        return {"key": f"trial-{result.number}", "kind": "trial", "number": result.number,
                "run_id": run_id, "start": int(result.started * 1000) if result.started else None,
                "end": end, "status": STATUS[result.state],
                "params": {k: redact(_param_text(v)) for k, v in params.items()},
                "metrics": metrics, "tags": {k: redact(v) for k, v in tags.items()},
                "traceback": redact(result.traceback) if result.traceback else None,
                "weights": has_weights, "model_params": dict(params) if has_weights else None}

    def log_trial(self, run_id: str | None, params: dict[str, Any], result: TrialResult,
                  weights: bytes | None = None) -> Callable[[], None]:
        """Spool a finished trial's run (durable when this returns); returns ``send``, which hands
        it to the background writer. The driver spools before it tells Optuna the verdict and
        sends after, so a driver killed in between leaves the whole run to the rerun. Never
        waits for MLflow and never raises for it."""
        assert self._writer is not None, "log_trial is for a sweep (start_sweep first)"
        rec, writer = self.trial_record(run_id, params, result, weights is not None), self._writer
        writer.keep(rec, weights)
        return lambda: writer.send(rec, weights)

    def finish_trial(self, run_id: str | None, params: dict[str, Any], result: TrialResult,
                     weights: bytes | None = None) -> None:
        """Write a finished trial's run now, on this thread (outside a sweep); a run the caller
        made (``run_id``) keeps its own name and kind."""
        rec = self.trial_record(run_id, params, result, weights is not None)
        if run_id is not None:
            rec["tags"] = {k: v for k, v in rec["tags"].items() if k not in self._trial_tags(result.number)}
        self.write_record(rec, weights)

    def write_record(self, rec: dict[str, Any], weights: bytes | None) -> None:
        """Write one spooled record to MLflow. Writing it again changes nothing: the run is looked
        up by its trial tags before one is created, and every value is the same."""
        if rec["kind"] == "sweep":
            self._write_sweep_end(rec, weights)
            return
        run_id = rec["run_id"] or self._run_of(rec["number"])
        if run_id is None:
            run_id = self.client.create_run(self.experiment_id, start_time=rec["start"],
                                            tags=rec["tags"]).info.run_id
        rec["run_id"] = self.run_ids[rec["number"]] = run_id
        # the run was created with its trial tags (name, parent, study, number): sending them again
        # costs MLflow an upsert each, and a run-name update
        created = self._trial_tags(rec["number"])
        self._batch(run_id, rec["params"], rec["metrics"],
                    {k: v for k, v in rec["tags"].items() if k not in created})
        self._log_input(run_id)
        if rec["traceback"]:
            self._artifact_bytes(run_id, rec["traceback"].encode("utf-8"), "traceback.txt", None)
        if weights is not None:
            self._artifact_bytes(run_id, weights, "model.npz", "model")
            if not rec.get("model_done"):
                self._log_model(run_id, "model", weights, rec["model_params"])
                rec["model_done"] = True
        self.client.set_terminated(run_id, status=rec["status"], end_time=rec["end"])

    def _run_of(self, number: int) -> str | None:
        """The id of trial ``number``'s run: known to this tracker, or found by its tags."""
        if number in self.run_ids:
            return self.run_ids[number]
        found = self.client.search_runs([self.experiment_id], max_results=1,
                                        filter_string=_trial_filter(self.spec.name, number))
        return found[0].info.run_id if found else None

    def flush_spool(self) -> tuple[int, int]:
        """Write the records an earlier sweep left in the spool (MLflow was down, or the driver was
        killed right after a verdict); stops at the first failure. Returns (written, left)."""
        written = 0
        for rec in self.spool.pending():
            try:
                self.write_record(rec, self.spool.weights(rec))
            except Exception:  # noqa: BLE001 - still down: the next run tries again
                break
            self.spool.done(rec["key"])
            written += 1
        return written, len(self.spool)

    def log_late(self, trial: optuna.trial.FrozenTrial) -> None:
        """A child run, from Optuna's record, for a finished trial that has none."""
        state = _state_of(trial)
        steps = sorted(trial.intermediate_values.items())
        history = tuple({"epoch": float(s), self.spec.objective.metric: float(v)} for s, v in steps)
        started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
        seconds = ((trial.datetime_complete - trial.datetime_start).total_seconds()
                   if trial.datetime_complete and trial.datetime_start else 0.0)
        value = trial.values[0] if trial.values else None     # the first objective's, when several
        result = TrialResult(trial._trial_id, trial.number, state, value=value, history=history,
                             reason=trial.user_attrs.get("fail_reason"), seconds=seconds,
                             started=started, worker=str(trial.user_attrs.get("worker", "")))
        self.finish_trial(None, trial.params, result)

    def reconcile(self, trials: list[optuna.trial.FrozenTrial]) -> int:
        """Give every finished trial exactly one terminated child run; end stale RUNNING runs.

        The spool's records (written by an earlier sweep that could not reach MLflow) go first,
        with every epoch's metrics; a trial whose record is still waiting there is left to it.
        Returns how many runs were created or repaired.
        """
        repaired, _ = self.flush_spool()
        waiting = {r["number"] for r in self.spool.pending() if r["kind"] == "trial"}
        runs = self._runs()
        for run in runs.values():
            if (run.info.status == "RUNNING" and run.data.tags.get(TAG_KIND) == "sweep"
                    and run.info.run_id != self.parent_id):
                self._log(run.info.run_id, tags={"hpsearch.note": "the driver stopped mid-sweep"})
                self.client.set_terminated(run.info.run_id, status="FAILED")
        for trial in trials:
            if not trial.state.is_finished() or trial.number in waiting:
                continue
            run = runs.get(("trial", trial.number))
            want = STATUS[_state_of(trial)]
            if run is None:
                self.log_late(trial)
                repaired += 1
            elif run.info.status != want:
                reason = trial.user_attrs.get("fail_reason")
                if reason:
                    self._log(run.info.run_id, tags={TAG_REASON: str(reason)[:4000]})
                self.client.set_terminated(run.info.run_id, status=want)
                repaired += 1
        return repaired

    def _runs(self) -> dict[tuple[str, Any], Any]:
        """This study's runs: ``("trial", number)`` -> run, ``("sweep", run_id)`` -> run."""
        out: dict[tuple[str, Any], Any] = {}
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id],
                                           filter_string=f"tags.`{TAG_STUDY}` = '{self.spec.name}'",
                                           max_results=1000, page_token=token)
            for run in page:
                kind = run.data.tags.get(TAG_KIND)
                if kind == "trial" and TAG_TRIAL in run.data.tags:
                    out.setdefault(("trial", int(run.data.tags[TAG_TRIAL])), run)
                elif kind == "sweep":
                    out[("sweep", run.info.run_id)] = run
            token = page.token
            if not token:
                return out

    # ------------------------------------------------------------------ models and data

    def _log_model(self, run_id: str, name: str, weights: bytes,
                   params: dict[str, Any] | None = None) -> str | None:
        """The weights as an MLflow Model ``name`` of the run (:mod:`hpsearch.mlflow_model`); a
        model MLflow cannot take is noted in the tag ``hpsearch.model_skipped``. Never raises."""
        try:
            from hpsearch import mlflow_model
            return mlflow_model.log(self.client, self.experiment_id, run_id, name, weights,
                                    tags={TAG_STUDY: self.spec.name}, params=params)
        except Exception as exc:  # noqa: BLE001 - the npz is the record; the MLflow Model a bonus
            note = f"MLflow Model not logged: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            self._log(run_id, tags={"hpsearch.model_skipped": note})
            return None

    def _register(self, parent: str, number: int, value: float) -> None:
        """The sweep's best model as a new version of ``tracking.register``; the alias moves to it
        only when it beats the current one. The outcome is the parent's tag ``hpsearch.registered``."""
        from hpsearch import mlflow_model
        spec = self.spec
        try:
            note = mlflow_model.register(
                self.client, spec.tracking.register, self.best_model_id, parent,
                float(value), spec.objective.metric, spec.objective.direction,
                tags={TAG_STUDY: spec.name, "hpsearch.best_trial": str(number)})
        except Exception as exc:  # noqa: BLE001 - the sweep's record stands without the registry
            note = f"not registered: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        self._log(parent, tags={"hpsearch.registered": note})

    def _log_input(self, run_id: str) -> None:
        if self.dataset is not None:
            self.client.log_inputs(run_id, datasets=[self.dataset])

    # ------------------------------------------------------------------ helpers

    def _log(self, run_id: str, params: dict[str, Any] | None = None,
             metrics: dict[str, float] | None = None, tags: dict[str, str] | None = None) -> None:
        now = int(time.time() * 1000)
        self._batch(run_id, {k: redact(_param_text(v)) for k, v in (params or {}).items()},
                    [[k, float(v), now, 0] for k, v in (metrics or {}).items()],
                    {k: redact(v) for k, v in (tags or {}).items()})

    def _batch(self, run_id: str, params: dict[str, str], metrics: list[list[Any]],
               tags: dict[str, str]) -> None:
        """One ``log_batch`` (more only past 900 metrics, MLflow's cap being 1000); the values
        are already redacted (no passwords)."""
        from mlflow.entities import Metric, Param, RunTag
        ps = [Param(k, v) for k, v in params.items()]
        ms = [Metric(k, v, t, step) for k, v, t, step in metrics]
        ts = [RunTag(k, v) for k, v in tags.items()]
        for i in range(0, max(len(ms), 1), 900):
            self.client.log_batch(run_id, metrics=ms[i:i + 900], params=ps if i == 0 else [],
                                  tags=ts if i == 0 else [])

    def _artifact_text(self, run_id: str, text: str, name: str, folder: str | None) -> None:
        self._artifact_bytes(run_id, redact(text).encode("utf-8"), name, folder)

    def _artifact_bytes(self, run_id: str, data: bytes, name: str, folder: str | None) -> None:
        with tempfile.TemporaryDirectory(prefix="hpsearch-") as tmp:
            path = os.path.join(tmp, name)
            with open(path, "wb") as fh:
                fh.write(data)
            self.client.log_artifact(run_id, path, folder)


def find_trial_run(spec: StudySpec, number: int) -> str | None:
    """The run of trial ``number``, found by its tags: for a trial whose run was written after its
    verdict (MLflow was down then), so that Optuna holds no ``mlflow_run_id`` for it."""
    from mlflow import MlflowClient
    with quiet_mlflow():
        client = MlflowClient(tracking_uri=resolve_uri(spec.tracking.uri))
        exp = client.get_experiment_by_name(spec.tracking.experiment or spec.name)
        if exp is None:
            return None
        found = client.search_runs([exp.experiment_id], max_results=1,
                                   filter_string=_trial_filter(spec.name, number))
    return found[0].info.run_id if found else None


def _trial_filter(study: str, number: int) -> str:
    return f"tags.`{TAG_STUDY}` = '{study}' and tags.`{TAG_TRIAL}` = '{number}' and tags.`{TAG_KIND}` = 'trial'"


def dataset_input(spec: StudySpec) -> Any:
    """The sweep's data set as an MLflow DatasetInput (context ``training``): source = the data path
    (the bundled MNIST sample for ``path: null``), digest = a hash of the path, ``data.limit`` and
    each file's name, size and modification time (no file is read). None when there is no path."""
    import hashlib

    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
    path = spec.data.path
    if path is None and spec.net in ("lenet", "autoencoder"):
        from nets.data.mnist import SAMPLE_DIR
        path = str(SAMPLE_DIR)
    if path is None:
        return None
    root = Path(path).expanduser().resolve()
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    h = hashlib.sha256(f"{root}\n{spec.data.limit}\n".encode())
    for f in files:
        try:
            st = f.stat()
        except OSError:
            continue
        h.update(f"{f.relative_to(root) if f != root else f.name}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    try:
        import warnings

        from mlflow.data.dataset_source_registry import resolve_dataset_source
        with warnings.catch_warnings():   # "can be interpreted in multiple ways": all are local
            warnings.simplefilter("ignore")
            source = resolve_dataset_source(str(root))
    except Exception:  # noqa: BLE001 - no source type for this path: describe it by URI
        from mlflow.data.http_dataset_source import HTTPDatasetSource
        source = HTTPDatasetSource(root.as_uri())
    name = root.name + (f"[:{spec.data.limit}]" if spec.data.limit else "")
    dataset = MetaDataset(source, name=name, digest=h.hexdigest()[:16])
    return DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, "training")])


def _schedule_tags(schedule: Any) -> dict[str, str]:
    """Tags of a sweep started by ``hpsearch schedule`` (none for other sweeps)."""
    if schedule is None or getattr(schedule, "tick", None) is None:
        return {}
    return {"hpsearch.schedule": schedule.cron or "once", "hpsearch.tick": schedule.tick,
            "hpsearch.trials_per_run": str(schedule.trials_per_run or "budget")}


def _epoch_metrics(result: TrialResult) -> list[list[Any]]:
    """Every per-epoch value as ``[key, value, timestamp ms, step]``, step = epoch, timed by the
    epoch's end."""
    t = (result.started or time.time()) * 1000
    out = []
    for i, h in enumerate(result.history, 1):
        t += 1000 * float(h.get("seconds", 0.0))
        step = int(h.get("epoch", i))
        out += [[k, float(v), int(t), step] for k, v in h.items() if k != "epoch"]
    return out


def _param_text(value: Any) -> str:
    text = "null" if value is None else str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def _state_of(trial: optuna.trial.FrozenTrial) -> str:
    name = trial.state.name
    return {"COMPLETE": COMPLETE, "PRUNED": PRUNED}.get(name, FAILED)
