"""Shared fixtures: a temporary study directory, MLflow under tmp_path, and a CLI runner."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from connect_server import free_port  # noqa: F401 - the suites' port helper (also the benchmarks')

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STUDIES = REPO / "studies"

# Small, fast LeNet settings for sweeps: 300 training images, 1-2 epochs.
TINY = ["--set", "data.limit=300", "--set", "fixed.epochs=2"]


def write_study(directory: Path, name: str, data: dict) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def lenet_dict(**changes) -> dict:
    """The shipped LeNet study, on the local backend unless ``execution`` is given."""
    data = yaml.safe_load((STUDIES / "lenet.yaml").read_text())
    data["execution"] = {"backend": "local", "parallelism": 2}
    data.update(changes)
    return data


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Environment for CLI subprocesses: test recipes importable, MLflow store under tmp_path."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO), e.get("PYTHONPATH", "")])
    e["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    e.pop("COLUMNS", None)
    return e


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``python -m hpsearch.cli ARGS`` in a subprocess (stdout is not a TTY: plain log lines)."""
    return subprocess.run([sys.executable, "-m", "hpsearch.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def signal_while_a_trial_runs(proc: subprocess.Popen, sig: int, storage: str, study: str,
                              fresh_s: float = 0.3, timeout: float = 240) -> None:
    """Send ``sig`` to ``proc`` once ``study`` holds a finished trial and one that started less
    than ``fresh_s`` ago (trials of seconds: it still runs when the signal lands). Not a timer
    after an output line: the first verdicts wait for MLflow's parent run, and trials started
    together end together."""
    import time
    from datetime import datetime

    from hpsearch.storage import load_existing_study
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the sweep ended before it could be signalled"
        try:
            trials = load_existing_study(storage, study).get_trials(deepcopy=False)
        except Exception:  # noqa: BLE001 - no study yet
            trials = []
        now = datetime.now()
        if any(t.state.is_finished() for t in trials) and any(
                t.state.name == "RUNNING" and t.datetime_start is not None
                and (now - t.datetime_start).total_seconds() < fresh_s for t in trials):
            proc.send_signal(sig)
            return
        time.sleep(0.05)
    raise AssertionError("no trial started in time")


def interrupt_while_a_trial_runs(args: list[str], env: dict[str, str], cwd: Path,
                                 study: str) -> tuple[int, float, str]:
    """Start ``python -m hpsearch.cli ARGS`` and send SIGINT as :func:`signal_while_a_trial_runs`
    does (``study`` in its default store in ``cwd``); returns (exit code, seconds from the signal to
    the exit, output)."""
    import signal
    import tempfile
    import time

    from hpsearch.storage import default_storage
    with tempfile.TemporaryFile("w+") as out:           # a file: nothing blocks while the store is polled
        proc = subprocess.Popen([sys.executable, "-m", "hpsearch.cli", *args], env=env, cwd=cwd,
                                stdout=out, stderr=subprocess.STDOUT, text=True)
        try:
            signal_while_a_trial_runs(proc, signal.SIGINT, default_storage(cwd, study), study)
            t0 = time.monotonic()
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out.seek(0)
        return proc.returncode, time.monotonic() - t0, out.read()


def stored_study(tmp_path: Path, name: str = "lenet") -> Any:
    """The optuna.Study ``name`` from its default store beside a study file in ``tmp_path``."""
    from hpsearch.storage import default_storage, load_existing_study
    return load_existing_study(default_storage(tmp_path, name), name)


def trial_runs(runs: list) -> list:
    """The trials' MLflow runs among ``runs`` (not the sweeps' parent runs)."""
    return [r for r in runs if r.data.tags.get("hpsearch.kind") == "trial"]


def sweep_runs(runs: list) -> list:
    """The sweeps' parent runs among ``runs``."""
    return [r for r in runs if r.data.tags.get("hpsearch.kind") == "sweep"]


def verdicts_in(db: Path) -> int:
    """Trials with a verdict (complete, pruned, failed) in the SQLite study store ``db``, read
    without a lock wait (0 while it cannot be read)."""
    import sqlite3
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT count(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED', 'FAIL')"
                               ).fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def wait_for_verdicts(proc: subprocess.Popen, db: Path, n: int, timeout: float = 300) -> None:
    """Until the sweep ``proc`` has told ``n`` verdicts to its SQLite store ``db`` (it must keep running)."""
    import time
    deadline = time.monotonic() + timeout
    while verdicts_in(db) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"the first {n} trials did not finish"
        time.sleep(0.1)


def mlflow_server_args(root: Path, port: int, *extra: str) -> list[str]:
    """``mlflow server [extra]`` on 127.0.0.1:``port``, one worker, its SQLite store and artifacts in
    ``root``."""
    return [sys.executable, "-m", "mlflow", "server", *extra, "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination",
            str(root / "artifacts")]


NO_SERVER_JOBS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
"""MLflow 3's server also starts a job runner and task consumers (its GenAI jobs, which no test
uses): 10 processes in its group instead of 2, each importing MLflow on these 2 cores."""


def start_server(args: list[str], ready_url: str, log: Path, env: dict[str, str] | None = None,
                 timeout: float = 120) -> subprocess.Popen:
    """Start a server process (a session of its own: :func:`stop_server` stops its workers too),
    output to ``log``; returns once ``ready_url`` answers 200, fails the test with the log's tail
    if it exits or does not answer within ``timeout``."""
    import time
    import urllib.request
    with log.open("ab") as out:
        proc = subprocess.Popen(args, cwd=log.parent, env={**(env or os.environ), **NO_SERVER_JOBS},
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(ready_url, timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(proc)
            pytest.fail(f"{' '.join(args[:4])} did not start:\n" + log.read_text(errors="replace")[-3000:])
        time.sleep(0.3)


def stop_server(proc: subprocess.Popen, sig: int = 15, grace_s: float = 10.0) -> None:
    """Signal ``sig`` to the server's process group; SIGKILL after ``grace_s``."""
    import signal
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


def mlflow_runs(tmp_path: Path, experiment: str) -> list:
    from mlflow import MlflowClient
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id], max_results=1000)


@pytest.fixture(scope="session")
def data():
    """The data a backend contract's workers get (backend_contract.py): LeNet's bundled sample, its
    first 200 images. A suite that needs other data defines its own ``data``."""
    from hpsearch.recipes import load_data, resolve_recipe
    return load_data(resolve_recipe("lenet"), None, 200)


@pytest.fixture(scope="session")
def spark():
    """One local[2] SparkSession for the whole test run; its Python workers can import the test
    recipes (PYTHONPATH is set before the JVM starts)."""
    pytest.importorskip("pyspark")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO), os.environ.get("PYTHONPATH", "")])
    from hpsearch.backends.spark import spark_session
    session = spark_session("local[2]", app_name="hpsearch-tests")
    yield session
    session.stop()
