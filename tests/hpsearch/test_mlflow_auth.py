"""A real MLflow tracking server with authentication (``mlflow server --app-name basic-auth``) on
loopback, started here with a fresh auth config and database (issue 15, acceptance 2).

The standard ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` log a sweep; wrong or missing
ones fail before any trial with one line, exit 2, and no Optuna store. Neither the admin password nor
a storage URL's password appears in any output, the server's log, or any MLflow param or tag.
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import (TINY, free_port, lenet_dict, mlflow_server_args, run_cli, start_server, stop_server,
                      sweep_runs, write_study)

pytestmark = pytest.mark.slow

STORAGE_PASSWORD = "st0rage-" + secrets.token_hex(6)


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """(url, admin password, server log path) of a basic-auth MLflow server on 127.0.0.1."""
    pytest.importorskip("flask_wtf", reason="mlflow[auth] (Flask-WTF) is needed for --app-name basic-auth")
    root = tmp_path_factory.mktemp("mlflow-auth")
    password = "adm-" + secrets.token_hex(8)
    ini = root / "basic_auth.ini"
    ini.write_text("[mlflow]\ndefault_permission = READ\n"
                   f"database_uri = sqlite:///{root / 'auth.db'}\nadmin_username = admin\n"
                   f"admin_password = {password}\n"
                   "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    port = free_port()
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(ini),
           "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)}
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(key, None)
    log = root / "server.log"
    proc = start_server(mlflow_server_args(root, port, "--app-name", "basic-auth"),
                        f"http://127.0.0.1:{port}/health", log, env)
    try:
        yield f"http://127.0.0.1:{port}", password, log
    finally:
        stop_server(proc, grace_s=20)                   # the server and its uvicorn worker


def _env(env: dict, user: str | None, password: str | None) -> dict:
    e = {k: v for k, v in env.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME",
                                                      "MLFLOW_TRACKING_PASSWORD")}
    e["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    if user is not None:
        e["MLFLOW_TRACKING_USERNAME"] = user
    if password is not None:
        e["MLFLOW_TRACKING_PASSWORD"] = password
    return e


@pytest.mark.parametrize("user, password", [("admin", "wrong-password"), (None, None), ("nobody", "x")])
def test_wrong_credentials_fail_before_any_trial(auth_server, tmp_path: Path, env: dict, user, password) -> None:
    url, admin_password, _ = auth_server
    spec = write_study(tmp_path, "authbad", lenet_dict(budget={"trials": 2}))
    proc = run_cli(["run", str(spec), *TINY, "--tracking-uri", url], _env(env, user, password), tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    assert "refused the credentials" in lines[0], proc.stderr
    assert "MLFLOW_TRACKING_USERNAME" in lines[0] and "Traceback" not in proc.stderr
    assert proc.stdout == ""                                 # no trial line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["authbad.yaml"]   # no Optuna store
    if password:
        assert password not in proc.stdout + proc.stderr
    assert admin_password not in proc.stdout + proc.stderr


def test_a_sweep_logs_with_the_right_credentials_and_no_password_leaks(auth_server, tmp_path: Path,
                                                                       env: dict) -> None:
    url, admin_password, log = auth_server
    spec = write_study(tmp_path, "authok", lenet_dict(budget={"trials": 2}))
    storage_url = f"postgresql://optuna:{STORAGE_PASSWORD}@db.example.com/optuna"
    e = _env(env, "admin", admin_password)
    proc = run_cli(["run", str(spec), *TINY, "--tracking-uri", url,
                    "--set", f"description=shared store {storage_url}"], e, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "trial 1 " in proc.stdout

    from mlflow import MlflowClient
    old = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ.update(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=admin_password)
    try:
        client = MlflowClient(url)
        exp = client.get_experiment_by_name("authok")
        runs = client.search_runs([exp.experiment_id], max_results=100)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    kinds = sorted(r.data.tags.get("hpsearch.kind") for r in runs)
    assert kinds == ["sweep", "trial", "trial"], kinds
    children = [r for r in runs if r.data.tags.get("hpsearch.kind") == "trial"]
    assert all(r.data.metrics for r in children)           # per-epoch metrics reached the server

    shown = proc.stdout + proc.stderr + log.read_text(errors="replace")
    for secret in (admin_password, STORAGE_PASSWORD):
        assert secret not in shown
        for run in runs:
            for value in [*run.data.params.values(), *run.data.tags.values()]:
                assert secret not in value, (run.info.run_id, value)
    parent = sweep_runs(runs)[0]
    assert "optuna:***@db.example.com" in parent.data.params["overrides"]


def _spark_ui_text(ui: str, seen: list[str]) -> None:
    """Every application's jobs, stages and environment from the Spark UI's REST API, appended."""
    import requests
    for app in requests.get(f"{ui}/api/v1/applications", timeout=2).json():
        for page in ("jobs", "stages", "environment"):
            seen.append(requests.get(f"{ui}/api/v1/applications/{app['id']}/{page}", timeout=5).text)


def test_spark_ui_job_descriptions_hold_no_password(auth_server, tmp_path: Path, env: dict) -> None:
    """A Spark sweep whose tracking URI carries the password (``http://admin:PASSWORD@host``) and
    whose study carries a storage URL with one: the Spark UI's jobs (names, descriptions, tags),
    stages and environment, read through its REST API while the trials run, hold neither."""
    import threading

    pytest.importorskip("pyspark")
    url, admin_password, _ = auth_server
    ui_port = free_port()
    spec = write_study(tmp_path, "authspark", lenet_dict(budget={"trials": 4}))
    storage_url = f"postgresql://optuna:{STORAGE_PASSWORD}@db.example.com/optuna"
    uri = url.replace("http://", f"http://admin:{admin_password}@")
    e = _env(env, None, None)
    proc = subprocess.Popen([sys.executable, "-m", "hpsearch.cli", "run", str(spec), *TINY,
                             "--backend", "spark", "--parallelism", "2", "--tracking-uri", uri,
                             "--set", f"execution.spark_conf.spark.ui.port={ui_port}",
                             "--set", f"description=shared store {storage_url}"],
                            env=e, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            try:
                _spark_ui_text(f"http://127.0.0.1:{ui_port}", seen)
            except Exception:  # noqa: BLE001 - the UI is not up yet, or already gone
                pass
            done.wait(0.5)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        out, err = proc.communicate(timeout=400)
    finally:
        done.set()
        poller.join()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    text = "\n".join(seen)
    # the UI was read mid-sweep: the trials' jobs (slot mode: one per slot) were there
    assert "authspark slot" in text or "authspark trial" in text, "no trial job seen in the Spark UI"
    for secret in (admin_password, STORAGE_PASSWORD):
        assert secret not in text
        assert secret not in out + err
