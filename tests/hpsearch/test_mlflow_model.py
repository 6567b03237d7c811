"""The winner as an MLflow Model: a real sweep logs it, and MLflow's own tools use it —
`mlflow.pyfunc.load_model` (all four nets, against nets' own predictions), `mlflow models serve`
(a real server process on loopback), `mlflow.pyfunc.spark_udf` (10,000 rows on local Spark), and
the registry (`tracking.register`: the alias moves only when a later sweep beats it)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import free_port, lenet_dict, run_cli, start_server, stop_server, sweep_runs, write_study
from test_scoring import _corpus, _expected, _inputs, _newsgroups, _same

import hpsearch
import nets
from hpsearch import mlflow_model
from nets.recipes import mnist_classify

REGISTERED = "lenet-digits"


@pytest.fixture(scope="module")
def lenet_sweep(tmp_path_factory) -> tuple[hpsearch.StudySpec, str]:
    """A finished 2-trial LeNet sweep (local backend) that registers its best: (spec, store URI)."""
    tmp = tmp_path_factory.mktemp("mlflow_model")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    path = write_study(tmp, "lenet", lenet_dict(
        pruner="none", data={"path": None, "limit": 300}, fixed={"epochs": 1}, budget={"trials": 2},
        tracking={"uri": uri, "plots": False, "register": REGISTERED}))
    spec = hpsearch.load_spec(path)
    hpsearch.run_study(spec)
    return spec, uri


@pytest.fixture
def global_uri(monkeypatch):
    """Point MLflow's global tracking URI (which ``models:/`` URIs resolve with) at a store, and
    leave none behind: ``mlflow.set_tracking_uri`` pins the URI in MLflow and in the process's
    MLFLOW_TRACKING_URI, which would send every later test's runs to this store."""
    import mlflow
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)   # restored after the test
    yield mlflow.set_tracking_uri
    mlflow.set_tracking_uri(None)                              # unpinned (and its env var unset)


def _npz_model(spec: hpsearch.StudySpec, run_id: str) -> nets.Model:
    from mlflow import MlflowClient
    local = MlflowClient(spec.tracking.uri).download_artifacts(
        run_id, "model/model.npz", str(Path(spec.file).parent / f"npz-{run_id}"))
    return nets.load(local)


def _val_pixels() -> tuple[np.ndarray, np.ndarray]:
    """The sample's 1,000 validation images: raw 0..255 rows, and nets' model inputs."""
    val = mnist_classify().val
    return val.x.reshape(-1, 784).astype(np.float64), val.inputs()


# --------------------------------------------------------------------------- acceptance 1

@pytest.mark.slow
def test_the_sweep_logs_a_pyfunc_model_that_predicts_what_nets_load_predicts(lenet_sweep, global_uri) -> None:
    import mlflow
    from mlflow import MlflowClient
    spec, uri = lenet_sweep
    global_uri(uri)
    best = hpsearch.best_trial(spec)
    raw, inputs = _val_pixels()
    expected = _npz_model(spec, best.run_id).predict(inputs).argmax(axis=1)
    assert len(set(expected)) > 3                                   # a trained net, not a constant
    frame = pd.DataFrame({"pixels": list(raw)})
    for model_uri in (f"runs:/{best.run_id}/model", f"models:/{REGISTERED}@champion"):
        model = mlflow.pyfunc.load_model(model_uri)
        got = model.predict(frame)
        assert np.array_equal(np.asarray(got, np.int64), expected), model_uri
        sig = model.metadata.signature
        assert sig.inputs.input_names() == ["pixels"] and sig.outputs.inputs[0].type.name == "long"
    # mlflow.models.predict, the model's own input example included
    out = Path(spec.file).parent / "predict.json"
    mlflow.models.predict(f"runs:/{best.run_id}/model", input_data=frame.head(20), env_manager="local",
                          output_path=str(out))
    assert json.loads(out.read_text())["predictions"] == expected[:20].tolist()
    info = mlflow.models.get_model_info(f"runs:/{best.run_id}/model")
    assert info.saved_input_example_info["type"] == "dataframe"

    # the layout: the npz stays, the parent has the final best as `best_model`, the data set is an input
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("lenet")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert client.get_run(best.run_id).data.tags["hpsearch.kind"] == "trial"
    runs = client.search_runs([exp.experiment_id])
    sweep = sweep_runs(runs)[0]
    names = {m.name: m for m in client.search_logged_models([exp.experiment_id])}
    assert {"model", "best_model"} <= set(names)
    assert names["best_model"].source_run_id == sweep.info.run_id
    reqs = (Path(mlflow.artifacts.download_artifacts(f"models:/{names['best_model'].model_id}"))
            / "requirements.txt").read_text().split()
    assert any(r.startswith("numba==") for r in reqs) and not any("torch" in r for r in reqs)
    for run in runs:
        (ds,) = run.inputs.dataset_inputs
        assert ds.dataset.name == "mnist_sample[:300]" and "mnist_sample" in ds.dataset.source
        assert ds.tags[0].value == "training"
    assert len({r.inputs.dataset_inputs[0].dataset.digest for r in runs}) == 1


@pytest.fixture(scope="module")
def other_nets(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """An autoencoder, a text CNN and an RNN LM (tiny, trained by nets), each logged as an MLflow
    Model to a run of a SQLite store: name -> (npz path, model URI)."""
    from mlflow import MlflowClient
    tmp = tmp_path_factory.mktemp("other_nets")
    cnn = nets.train("textcnn", {"seq_len": 20, "embed": 8, "filters": 4, "hidden": 8, "skip_top": 0,
                                 "batch_size": 8, "epochs": 2}, data=str(_newsgroups(tmp / "news")))
    rnn = nets.train("rnn", {"hidden": 8, "vocab": 30, "max_len": 10, "epochs": 2},
                     data=str(_corpus(tmp / "corpus.txt")))
    ae = nets.train("autoencoder", {"hidden": 16, "epochs": 1}, data=None)
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    exp = client.create_experiment("nets", artifact_location=(tmp / "mlruns").as_uri())
    out = {}
    for name, result in (("textcnn", cnn), ("rnn", rnn), ("autoencoder", ae)):
        npz = nets.save(result.model, tmp / f"{name}.npz")
        run = client.create_run(exp)
        mlflow_model.log(client, exp, run.info.run_id, "model", npz.read_bytes())
        out[name] = (npz, f"runs:/{run.info.run_id}/model")
    out["uri"] = f"sqlite:///{tmp / 'mlflow.db'}"
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name,column,out_type", [("autoencoder", "pixels", "double"),
                                                  ("textcnn", "text", "string"), ("rnn", "text", "double")])
def test_each_other_net_as_pyfunc_predicts_what_nets_load_predicts(other_nets, global_uri, name: str,
                                                                   column: str, out_type: str) -> None:
    import mlflow
    global_uri(other_nets["uri"])
    npz, uri = other_nets[name]
    model = mlflow.pyfunc.load_model(uri)
    sig = model.metadata.signature
    assert sig.inputs.input_names() == [column] and sig.outputs.inputs[0].type.name == out_type
    values = [v for v in _inputs(name) if v is not None]
    if name == "autoencoder":
        values = [np.asarray(v, np.float64) for v in values]
    got = list(model.predict(pd.DataFrame({column: values})))
    got = [None if isinstance(g, float) and np.isnan(g) else g for g in got]
    _same(got, _expected(name, nets.load(npz), values))


# --------------------------------------------------------------------------- acceptance 2

def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_mlflow_models_serve_answers_with_the_right_classes(lenet_sweep, tmp_path: Path) -> None:
    spec, uri = lenet_sweep
    raw, inputs = _val_pixels()
    expected = _npz_model(spec, hpsearch.best_trial(spec).run_id).predict(inputs[:32]).argmax(axis=1)
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri,   # the venv's bin: the server runs `uvicorn`
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           "PYTHONPATH": os.pathsep.join([str(Path(hpsearch.__file__).parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    base = f"http://127.0.0.1:{port}"
    proc = start_server([sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{REGISTERED}@champion",
                         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
                        f"{base}/ping", tmp_path / "serve.log", env)
    try:
        split = _post(f"{base}/invocations",
                      {"dataframe_split": {"columns": ["pixels"], "data": [[r.tolist()] for r in raw[:32]]}})
        assert split["predictions"] == expected.tolist()
        records = _post(f"{base}/invocations",
                        {"dataframe_records": [{"pixels": r.tolist()} for r in raw[:5]]})
        assert records["predictions"] == expected[:5].tolist()
        # the signature says doubles: MLflow refuses JSON integers (int64 -> double is not "safe")
        with pytest.raises(urllib.error.HTTPError, match="400"):
            _post(f"{base}/invocations", {"dataframe_records": [{"pixels": raw[0].astype(int).tolist()}]})
    finally:
        stop_server(proc)                               # the server and its uvicorn worker


# --------------------------------------------------------------------------- acceptance 3

@pytest.mark.slow
@pytest.mark.spark
def test_spark_udf_scores_10000_rows_like_nets(spark, lenet_sweep, global_uri) -> None:
    import mlflow
    from pyspark.sql.functions import struct
    spec, uri = lenet_sweep
    global_uri(uri)
    best = hpsearch.best_trial(spec)
    raw, inputs = _val_pixels()
    expected = _npz_model(spec, best.run_id).predict(inputs).argmax(axis=1)
    reps = -(-10_000 // len(raw))
    ids = np.arange(10_000)
    pdf = pd.DataFrame({"id": ids, "pixels": list(np.tile(raw, (reps, 1))[:10_000])})
    df = spark.createDataFrame(pdf).repartition(4)
    udf = mlflow.pyfunc.spark_udf(spark, f"runs:/{best.run_id}/model", env_manager="local")
    got = df.select("id", udf(struct("pixels")).alias("digit")).toPandas().sort_values("id")
    assert len(got) == 10_000
    assert np.array_equal(got["digit"].to_numpy(), np.tile(expected, reps)[:10_000])


class _NoContext:
    """The real local session as Spark Connect presents itself: no ``sparkContext``."""

    def __init__(self, spark) -> None:
        self._spark = spark

    def __getattr__(self, name: str):
        if name == "sparkContext":
            raise AttributeError("sparkContext is not supported in Spark Connect")
        return getattr(self._spark, name)


@pytest.mark.slow
@pytest.mark.spark
def test_register_udf_without_spark_context_ships_the_weights_in_the_udf(spark, lenet_sweep) -> None:
    spec, _ = lenet_sweep
    raw, inputs = _val_pixels()
    expected = _npz_model(spec, hpsearch.best_trial(spec).run_id).predict(inputs).argmax(axis=1)
    df = spark.createDataFrame(pd.DataFrame({"id": np.arange(len(raw)), "pixels": list(raw)}))
    hpsearch.register_udf(_NoContext(spark), spec, name="inline_predict")
    df.repartition(3).createOrReplaceTempView("inline_images")
    got = spark.sql("SELECT id, inline_predict(pixels) AS d FROM inline_images").toPandas().sort_values("id")
    assert np.array_equal(got["d"].to_numpy(), expected)


# --------------------------------------------------------------------------- acceptance 4

def _registry_sweep(tmp: Path, env: dict, name: str, lr: float, *more: str) -> subprocess.CompletedProcess:
    path = tmp / f"{name}.yaml"
    if not path.exists():
        write_study(tmp, name, lenet_dict(
            pruner="none", data={"path": None, "limit": 300}, fixed={"epochs": 1, "hidden": 16},
            search_space={"lr": {"choices": [lr]}}, budget={"trials": 1},
            tracking={"plots": False, "register": "digits"}))
    proc = run_cli(["run", str(path), *more], env, tmp)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.slow
def test_the_alias_moves_only_to_a_version_that_beats_it(tmp_path: Path, env: dict) -> None:
    from mlflow import MlflowClient
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])

    def state() -> tuple[str, dict[str, float]]:
        champion = str(client.get_model_version_by_alias("digits", "champion").version)
        versions = client.search_model_versions("name = 'digits'")
        return champion, {str(v.version): float(v.tags["hpsearch.value"]) for v in versions}

    def note(study: str) -> str:
        exp = client.get_experiment_by_name(study)
        (run,) = client.search_runs([exp.experiment_id], "tags.`hpsearch.kind` = 'sweep'",
                                    order_by=["attributes.start_time DESC"], max_results=1)
        return run.data.tags["hpsearch.registered"]

    _registry_sweep(tmp_path, env, "weak", 1e-4)                 # barely trained: a high val_loss
    assert state()[0] == "1" and "now 'champion'" in note("weak")
    _registry_sweep(tmp_path, env, "strong", 0.05)               # beats it: the alias moves
    champion, values = state()
    assert values["2"] < values["1"] and champion == "2", values
    _registry_sweep(tmp_path, env, "weaker", 1e-5)               # does not: a version, alias stays
    champion, values = state()
    assert len(values) == 3 and values["3"] > values["2"] and champion == "2", values
    assert "'champion' stays on version 2" in note("weaker")
    # a later sweep of the same study (here: one more trial): a version only if it beats the study's
    # own best (a new seed may), and still not the champion
    _registry_sweep(tmp_path, env, "weaker", 1e-5, "--extend", "1")
    champion, after = state()
    new = {k: v for k, v in after.items() if k not in values}
    assert champion == "2" and len(new) <= 1 and all(values["3"] > v > values["2"] for v in new.values())
    assert "'champion' stays on version 2" in note("weaker") if new else True


def test_register_must_be_a_model_name(tmp_path: Path, env: dict) -> None:
    path = write_study(tmp_path, "lenet", lenet_dict(tracking={"register": "team/digits"}))
    proc = run_cli(["validate", str(path)], env, tmp_path)
    assert proc.returncode == 2 and "tracking.register" in proc.stderr
    assert "is not a registered model name" in proc.stderr
    path = write_study(tmp_path, "lenet", lenet_dict(tracking={"register": "d", "log_weights": False}))
    proc = run_cli(["validate", str(path)], env, tmp_path)
    assert proc.returncode == 2 and "tracking.log_weights is false" in proc.stderr


def test_an_existing_experiment_gets_the_kind_unless_it_has_one(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from hpsearch.tracking import Tracker
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.create_experiment("old")
    client.create_experiment("genai", tags={"mlflow.experimentKind": "genai_development"})
    for name, want in (("old", "custom_model_development"), ("genai", "genai_development"),
                       ("new", "custom_model_development")):
        spec = hpsearch.load_spec(write_study(tmp_path, name, lenet_dict(tracking={"experiment": name})))
        Tracker(spec, uri)
        assert client.get_experiment_by_name(name).tags["mlflow.experimentKind"] == want, name
