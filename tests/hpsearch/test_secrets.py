"""Passwords in URLs never reach output, error messages or MLflow (issue 15): `hpsearch.errors.redact`
and every place a storage or tracking URL can appear."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import TINY, free_port, lenet_dict, mlflow_runs, run_cli, sweep_runs, write_study
from hpsearch.errors import HpsearchError, SpecError, StorageError, redact

PASSWORD = "s3cr3t-Pa55"


@pytest.mark.parametrize("text, masked", [
    ("postgresql://user:secret@host/db", "postgresql://user:***@host/db"),
    ("http://user:secret@host", "http://user:***@host"),
    ("https://user:secret@mlflow.example.com:5000/path", "https://user:***@mlflow.example.com:5000/path"),
    ("mysql+pymysql://u:p@ss:w@db:3306/x?charset=utf8", "mysql+pymysql://u:***@db:3306/x?charset=utf8"),
    ("redis://:secret@host:6379/0", "redis://:***@host:6379/0"),
    ("cannot open 'postgresql://a:b@h/d' (and http://c:d@e)", "cannot open 'postgresql://a:***@h/d' (and http://c:***@e)"),
    ("https://host/api?password=secret&x=1", "https://host/api?password=***&x=1"),
    ("https://host/api?token=secret", "https://host/api?token=***"),
])
def test_redact_masks_passwords(text: str, masked: str) -> None:
    assert redact(text) == masked
    assert "secret" not in redact(text)


@pytest.mark.parametrize("text", ["sqlite:////tmp/x.db", "http://127.0.0.1:5000", "postgresql://user@host/db",
                                  "spark://host:7077", "file:///tmp/mlruns", "studies/lenet.yaml:9: lr: bad",
                                  "time 12:30@home"])
def test_redact_leaves_urls_without_password_alone(text: str) -> None:
    assert redact(text) == text


def test_every_error_message_is_masked() -> None:
    for exc in (HpsearchError(f"cannot reach postgresql://u:{PASSWORD}@h/db", f"try http://u:{PASSWORD}@h"),
                StorageError(f"no study in mysql://u:{PASSWORD}@h/db"),
                SpecError("s.yaml", "storage", f"bad (from --storage postgresql://u:{PASSWORD}@h/db)")):
        assert PASSWORD not in exc.line() and PASSWORD not in str(exc) and "***" in exc.line()


def test_storage_url_password_is_masked_in_the_error(tmp_path: Path, env: dict) -> None:
    """An Optuna storage URL with a password at a loopback port where nothing listens."""
    spec = write_study(tmp_path, "sec", lenet_dict(budget={"trials": 1}))
    url = f"postgresql://hpuser:{PASSWORD}@127.0.0.1:{free_port()}/optuna"
    for args in (["run", str(spec), *TINY, "--storage", url], ["show", str(spec), "--storage", url],
                 ["validate", str(spec), "--set", f"storage={url}", "--set", "budget.trials=-1"],
                 ["run", str(spec), "--storage", url, "--trials", "x"],
                 ["run", str(spec), "--trials", url], ["show", str(spec), "--nope", url]):
        proc = run_cli(args, env, tmp_path)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert PASSWORD not in proc.stdout + proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert "hpuser:***@127.0.0.1" in run_cli(["show", str(spec), "--storage", url], env, tmp_path).stderr


def test_passwords_in_the_study_never_reach_mlflow(tmp_path: Path, env: dict, monkeypatch) -> None:
    """A real sweep into a SQLite MLflow store; the study text and an override carry URLs with a
    password: no param, tag or logged artifact text of any run holds it, nor does the output."""
    study = lenet_dict(budget={"trials": 1}, description=f"copy of postgresql://ops:{PASSWORD}@db/optuna")
    spec = write_study(tmp_path, "secrets", study)
    spec.write_text(spec.read_text() + f"# old tracking: http://admin:{PASSWORD}@mlflow:5000\n")
    proc = run_cli(["run", str(spec), *TINY,
                    "--set", f"description=mirror https://bot:{PASSWORD}@git.example.com/x.git"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr
    runs = mlflow_runs(tmp_path, "secrets")
    assert len(runs) == 2                                   # the parent and its one trial
    parent = sweep_runs(runs)[0]
    assert "bot:***@git.example.com" in parent.data.params["overrides"]   # logged, but masked
    from mlflow import MlflowClient
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # a run's model artifacts resolve through MLflow's default store: the test's store here
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    texts = {}
    for n, run in enumerate(runs):
        for value in [*run.data.params.values(), *run.data.tags.values()]:
            assert PASSWORD not in value, (run.info.run_id, value)
        for art in _artifact_files(client, run.info.run_id):
            local = Path(client.download_artifacts(run.info.run_id, art, str(tmp_path / f"dl{n}")))
            texts[art] = local.read_bytes()
            assert PASSWORD.encode() not in texts[art], art
    assert b"ops:***@db" in texts["spec/secrets.yaml"] and b"admin:***@mlflow" in texts["spec/secrets.yaml"]


def _artifact_files(client, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for info in client.list_artifacts(run_id, path):
        out += _artifact_files(client, run_id, info.path) if info.is_dir else [info.path]
    return out


# --------------------------------------------------------------------------- execution.spark_conf

SPARK_SECRET = "sp4rk-" + "9f3c1e"


def _spark_study(tmp_path: Path, conf) -> Path:
    return write_study(tmp_path, "sconf", lenet_dict(execution={"backend": "spark", "spark_conf": conf}))


def test_spark_conf_is_validated_and_flattened(tmp_path: Path) -> None:
    from hpsearch.spec import load_spec
    conf = {"spark.authenticate": True, "spark.authenticate.secret": SPARK_SECRET,
            "spark": {"network": {"crypto": {"enabled": True}}}, "spark.executor.memory": "1g",
            "spark.task.maxFailures": 4}
    spec = load_spec(_spark_study(tmp_path, conf))
    assert spec.execution.spark_conf == {
        "spark.authenticate": "true", "spark.authenticate.secret": SPARK_SECRET,
        "spark.network.crypto.enabled": "true", "spark.executor.memory": "1g", "spark.task.maxFailures": "4"}
    again = load_spec(_spark_study(tmp_path, conf),
                      [("execution.spark_conf.spark.authenticate.secret", "other", "--set x")])
    assert again.execution.spark_conf["spark.authenticate.secret"] == "other"


@pytest.mark.parametrize("conf, words", [
    ({"spark.authenticate.secret": [SPARK_SECRET]}, ("spark.authenticate.secret", "got a list", "not shown")),
    ({"spark.authenticate.secret": None}, ("got null",)),
    ({"notspark.x": SPARK_SECRET}, ("notspark.x is not a Spark setting name",)),
    (SPARK_SECRET, ("must be a mapping",)),
])
def test_bad_spark_conf_never_shows_a_value(tmp_path: Path, env: dict, conf, words) -> None:
    spec = _spark_study(tmp_path, conf)
    for args in (["validate", str(spec)],
                 ["validate", str(spec), "--set", f"execution.spark_conf={{spark.a.secret: [{SPARK_SECRET}]}}"],
                 ["validate", str(spec), "--set", f"execution.spark_conf.spark.authenticate.secret={SPARK_SECRET}",
                  "--set", "execution.spark_conf.bad=1"]):
        proc = run_cli(args, env, tmp_path)
        assert proc.returncode == 2 and proc.stderr.startswith("Error: "), proc.stderr
        assert SPARK_SECRET not in proc.stdout + proc.stderr, proc.stderr
    proc = run_cli(["validate", str(spec)], env, tmp_path)
    for word in words:
        assert word in proc.stderr, proc.stderr


@pytest.mark.slow
def test_spark_session_applies_spark_conf(tmp_path: Path, env: dict) -> None:
    """A real local Spark session built with a study's spark_conf carries its settings."""
    pytest.importorskip("pyspark")
    import subprocess
    import sys
    code = ("from hpsearch.backends.spark import spark_session\n"
            "s = spark_session('local[1]', conf={'spark.hpsearch.marker': 'm-42',\n"
            "                                    'spark.task.maxFailures': '3'})\n"
            "c = s.sparkContext.getConf()\n"
            "print(c.get('spark.hpsearch.marker'), c.get('spark.task.maxFailures'))\n"
            "s.stop()\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-2:] == ["m-42", "3"]
