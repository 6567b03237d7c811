"""MLflow tracking, written by the driver only.

Layout: experiment = study name; one parent run per sweep (the spec file as an artifact, sampler,
pruner and budget as params, best value and params at the end); one child run per finished trial
(tag ``mlflow.parentRunId``) with its params, per-epoch metrics (step = epoch), final status
(FINISHED, FAILED, or KILLED for pruned), failure reason, duration, the worker it ran on, and
the trained weights (``model/model.npz``, a ``nets.save`` file, and an MLflow Model ``model``, see
:mod:`hpsearch.mlflow_model`) when it was the best so far. The experiment is tagged as a
machine-learning one (``mlflow.experimentKind``), and the data set is a dataset input of every run.

Every finished Optuna trial gets exactly one child run: :meth:`Tracker.reconcile` repairs what a
killed driver left behind (runs still RUNNING, finished trials without a run).
"""
from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.errors import HpsearchError, redact
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
    if uri:
        return uri
    return mlflow.get_tracking_uri()


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
    if uri.startswith(("http://", "https://", "databricks")):
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


class Tracker:
    """The driver's MLflow writer for one sweep of one study."""

    def __init__(self, spec: StudySpec, uri: str | None) -> None:
        from mlflow import MlflowClient
        self.spec = spec
        self.uri = resolve_uri(uri)
        self.parent_id: str | None = None
        self.dataset: Any = None             # the sweep's DatasetInput (start_sweep)
        self.best_model_id: str | None = None
        self._pool: Any = None               # the background thread of _later (MLflow Models)
        self._pending: list[Any] = []
        try:
            with quiet_mlflow():
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
        if not self.uri.startswith("sqlite:///"):
            return None
        from sqlalchemy.engine import make_url
        db = make_url(self.uri).database
        if not db or db == ":memory:":
            return None
        return (Path(db).resolve().parent / "mlruns" / name).as_uri()

    # ------------------------------------------------------------------ parent run

    def start_sweep(self, budget: dict[str, Any]) -> str:
        """Create the sweep's parent run with the spec as an artifact and its settings as params."""
        spec = self.spec
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
                  status: str = "FINISHED", weights: bytes | None = None) -> None:
        """Best value and params, trial counts, and the best weights on the parent run."""
        if self.parent_id is None:
            return
        self.drain()
        metrics = {f"trials_{k}": float(v) for k, v in counts.items()}
        params: dict[str, Any] = {}
        tags: dict[str, str] = {}
        if best is not None:
            metrics["best_value"] = float(best.value)
            params = {f"best.{k}": v for k, v in best.params.items()}
            tags = {"hpsearch.best_trial": str(best.number),
                    "hpsearch.best_run_id": str(best.user_attrs.get("mlflow_run_id", ""))}
        self._log(self.parent_id, params=params, metrics=metrics, tags=tags)
        if weights is not None:
            self._artifact_bytes(self.parent_id, weights, "model.npz", "best_model")
            self.best_model_id = self._log_model(self.parent_id, "best_model", weights,
                                                 best.params if best is not None else None)
            if self.best_model_id and best is not None and self.spec.tracking.register:
                self._register(best)
        if status == "FINISHED" and getattr(self.spec.tracking, "plots", True):
            self._log_plots()
        self.client.set_terminated(self.parent_id, status=status)

    def _log_plots(self) -> None:
        """The study's plots (:mod:`hpsearch.plots`) as PNG artifacts under ``plots/``; a plot that
        cannot be drawn is noted in the tag ``hpsearch.plots_skipped``. Never raises."""
        from hpsearch import plots
        from hpsearch.storage import load_existing_study
        try:
            study = load_existing_study(self.spec.storage, self.spec.name)
            with tempfile.TemporaryDirectory(prefix="hpsearch-plots-") as tmp:
                files, notes = plots.render(study, tmp, self.spec.objective.metric)
                if files:
                    self.client.log_artifacts(self.parent_id, tmp, "plots")
        except Exception as exc:  # noqa: BLE001 - plots are a bonus; the sweep's record is not
            notes = [f"plots skipped: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"]
        if notes:
            self._log(self.parent_id, tags={"hpsearch.plots_skipped": "; ".join(notes)[:4000]})

    # ------------------------------------------------------------------ child runs

    def start_trial(self, number: int, params: dict[str, Any], started: float | None = None) -> str:
        """Create a trial's child run (status RUNNING) and return its id; ``started`` (epoch seconds)
        is when the trial began on its worker, so the run's duration in the UI is the trial's."""
        tags = {"mlflow.parentRunId": self.parent_id or "", TAG_STUDY: self.spec.name,
                TAG_KIND: "trial", TAG_TRIAL: str(number), "mlflow.runName": f"trial-{number}"}
        start = int(started * 1000) if started else None
        run = self.client.create_run(self.experiment_id, start_time=start, tags=tags)
        self._log_input(run.info.run_id)
        return run.info.run_id

    def finish_trial(self, run_id: str, params: dict[str, Any], result: TrialResult,
                     weights: bytes | None = None) -> None:
        """Params, per-epoch metrics, state, reason and duration of a finished trial."""
        from mlflow.entities import Metric
        metrics = _epoch_metrics(result, Metric)
        tags = {TAG_STATE: result.state, "hpsearch.worker": result.worker}
        if result.reason:
            tags[TAG_REASON if result.state == FAILED else "hpsearch.reason"] = result.reason[:4000]
        final = {"duration_s": result.seconds, "epochs": float(result.epochs)}
        if result.value is not None:
            final["objective"] = result.value
        self._log(run_id, params=params, tags=tags, metrics=final, extra=metrics)
        if result.traceback:
            self._artifact_text(run_id, result.traceback, "traceback.txt", None)
        end = int((result.started + result.seconds) * 1000) if result.started else None
        if weights is not None:
            self._artifact_bytes(run_id, weights, "model.npz", "model")
            if self.parent_id is not None:   # in a sweep: off the driver's loop, then the run ends
                self._later(self._model_then_end, run_id, params, weights, STATUS[result.state], end)
                return
            self._log_model(run_id, "model", weights, params)
        self.client.set_terminated(run_id, status=STATUS[result.state], end_time=end)

    def _model_then_end(self, run_id: str, params: dict[str, Any], weights: bytes, status: str,
                        end: int | None) -> None:
        self._log_model(run_id, "model", weights, params)
        self.client.set_terminated(run_id, status=status, end_time=end)

    def _later(self, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` on the tracker's one background thread (in order); :meth:`drain`
        waits for all of it."""
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="hpsearch-mlflow")
        self._pending.append(self._pool.submit(fn, *args))

    def drain(self) -> None:
        """Wait for the background work (:meth:`_later`); re-raise its first error."""
        pending, self._pending = self._pending, []
        errors = [f.exception() for f in pending]
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first

    def log_late(self, trial: optuna.trial.FrozenTrial) -> None:
        """A child run, from Optuna's record, for a finished trial that has none."""
        state = _state_of(trial)
        run_id = self.start_trial(trial.number, trial.params)
        steps = sorted(trial.intermediate_values.items())
        history = tuple({"epoch": float(s), self.spec.objective.metric: float(v)} for s, v in steps)
        started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
        seconds = ((trial.datetime_complete - trial.datetime_start).total_seconds()
                   if trial.datetime_complete and trial.datetime_start else 0.0)
        value = trial.values[0] if trial.values else None     # the first objective's, when several
        result = TrialResult(trial._trial_id, trial.number, state, value=value, history=history,
                             reason=trial.user_attrs.get("fail_reason"), seconds=seconds,
                             started=started, worker=str(trial.user_attrs.get("worker", "")))
        self.finish_trial(run_id, trial.params, result)

    def reconcile(self, trials: list[optuna.trial.FrozenTrial]) -> int:
        """Give every finished trial exactly one terminated child run; end stale RUNNING runs.

        Returns how many runs were created or repaired.
        """
        runs = self._runs()
        repaired = 0
        for run in runs.values():
            if (run.info.status == "RUNNING" and run.data.tags.get(TAG_KIND) == "sweep"
                    and run.info.run_id != self.parent_id):
                self._log(run.info.run_id, tags={"hpsearch.note": "the driver stopped mid-sweep"})
                self.client.set_terminated(run.info.run_id, status="FAILED")
        for trial in trials:
            if not trial.state.is_finished():
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

    def _register(self, best: optuna.trial.FrozenTrial) -> None:
        """The sweep's best model as a new version of ``tracking.register``; the alias moves to it
        only when it beats the current one. The outcome is the parent's tag ``hpsearch.registered``."""
        from hpsearch import mlflow_model
        spec = self.spec
        try:
            note = mlflow_model.register(
                self.client, spec.tracking.register, self.best_model_id, self.parent_id,
                float(best.value), spec.objective.metric, spec.objective.direction,
                tags={TAG_STUDY: spec.name, "hpsearch.best_trial": str(best.number)})
        except Exception as exc:  # noqa: BLE001 - the sweep's record stands without the registry
            note = f"not registered: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        self._log(self.parent_id, tags={"hpsearch.registered": note})

    def _log_input(self, run_id: str) -> None:
        if self.dataset is not None:
            self.client.log_inputs(run_id, datasets=[self.dataset])

    # ------------------------------------------------------------------ helpers

    def _log(self, run_id: str, params: dict[str, Any] | None = None,
             metrics: dict[str, float] | None = None, tags: dict[str, str] | None = None,
             extra: list[Any] = ()) -> None:
        from mlflow.entities import Metric, Param, RunTag
        now = int(time.time() * 1000)
        ps = [Param(k, redact(_param_text(v))) for k, v in (params or {}).items()]   # no passwords
        ms = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()] + list(extra)
        ts = [RunTag(k, redact(v)) for k, v in (tags or {}).items()]
        for i in range(0, max(len(ms), 1), 900):  # MLflow caps a batch at 1000 metrics
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


def _epoch_metrics(result: TrialResult, metric_cls: type) -> list[Any]:
    """Every per-epoch value as an MLflow metric with step = epoch, timed by the epoch's end."""
    t = (result.started or time.time()) * 1000
    out = []
    for i, h in enumerate(result.history, 1):
        t += 1000 * float(h.get("seconds", 0.0))
        step = int(h.get("epoch", i))
        out += [metric_cls(k, float(v), int(t), step) for k, v in h.items() if k != "epoch"]
    return out


def _param_text(value: Any) -> str:
    text = "null" if value is None else str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def _state_of(trial: optuna.trial.FrozenTrial) -> str:
    name = trial.state.name
    return {"COMPLETE": COMPLETE, "PRUNED": PRUNED}.get(name, FAILED)
