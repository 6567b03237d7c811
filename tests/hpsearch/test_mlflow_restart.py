"""The MLflow tracking server goes away in the middle of a sweep (issue 15, acceptance 4, first half).

A real ``mlflow server`` on loopback, started here, is killed (SIGKILL, the whole process group) after
the second trial's verdict and started again on the same port and backend store: the sweep goes on
(Optuna is told every verdict), keeps what it could not write in its spool, writes it once the server
is back, and exits 0; MLflow then holds one parent and one child per trial, each with every epoch's
metrics. When the server is still down at the sweep's end, the runs wait in the spool and the next
``hpsearch run`` writes them, again with no duplicate.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import (free_port, lenet_dict, mlflow_server_args, start_server, stop_server, sweep_runs,
                      verdicts_in, wait_for_verdicts, write_study)

pytestmark = pytest.mark.slow

ARGS = ["--set", "data.limit=300", "--set", "fixed.epochs=3"]


class Server:
    """``mlflow server`` on 127.0.0.1:port over root/mlflow.db; start() again after kill()."""

    def __init__(self, root: Path) -> None:
        self.root, self.port, self.proc = root, free_port(), None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        self.proc = start_server(mlflow_server_args(self.root, self.port), self.url + "/health",
                                 self.root / "server.log", env)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_server(self.proc, signal.SIGKILL)


@pytest.fixture
def server(tmp_path: Path):
    root = tmp_path / "server"
    root.mkdir()
    srv = Server(root)
    srv.start()
    try:
        yield srv
    finally:
        srv.kill()


def _sweep(spec: Path, env: dict, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hpsearch.cli", "run", str(spec), *ARGS], env=env,
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextmanager
def _sweep_that_loses_the_server(srv: Server, tmp_path: Path, env: dict, name: str, **changes):
    """A six-trial sweep (``hpsearch run``) logging to ``srv``, which is killed after the second
    verdict (counted in the SQLite study store). Yields (sweep, spec, env, db); a sweep still
    running after the block is killed."""
    db = tmp_path / f"{name}.optuna.db"
    spec = write_study(tmp_path, name, lenet_dict(budget={"trials": 6}, storage=f"sqlite:///{db}",
                                                  execution={"backend": "local", "parallelism": 1}, **changes))
    env = {**env, "MLFLOW_TRACKING_URI": srv.url}
    sweep = _sweep(spec, env, tmp_path)
    try:
        wait_for_verdicts(sweep, db, 2)
        srv.kill()
        yield sweep, spec, env, db
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()


def _check_mlflow(url: str, name: str, db: Path) -> None:
    """One parent, one child per Optuna trial, each child's status, params and every epoch."""
    import optuna
    from mlflow import MlflowClient
    client = MlflowClient(url)
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    kinds = sorted(r.data.tags.get("hpsearch.kind") for r in runs)
    trials = optuna.load_study(study_name=name, storage=f"sqlite:///{db}").get_trials()
    assert len(trials) == 6
    assert kinds == ["sweep"] + ["trial"] * 6, kinds
    children = {int(r.data.tags["hpsearch.trial_number"]): r for r in runs
                if r.data.tags.get("hpsearch.kind") == "trial"}
    assert sorted(children) == list(range(6))                 # one run per trial, none twice
    parent = sweep_runs(runs)[0]
    assert parent.info.status == "FINISHED" and "best_value" in parent.data.metrics
    for t in trials:
        run = children[t.number]
        want = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}[t.state.name]
        assert run.info.status == want, (t.number, run.info.status)
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert set(t.params) <= set(run.data.params)
        for metric in ("loss", "val_loss"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
            assert steps == list(range(1, len(t.intermediate_values) + 1)), (t.number, metric, steps)
        if t.user_attrs.get("mlflow_run_id"):
            assert t.user_attrs["mlflow_run_id"] == run.info.run_id


def test_mlflow_server_killed_mid_sweep_and_restarted(server: Server, tmp_path: Path, env: dict) -> None:
    with _sweep_that_loses_the_server(server, tmp_path, env, "restart") as (sweep, _spec, _env, db):
        time.sleep(10)
        server.start()
        out, err = sweep.communicate(timeout=300)
    print(out, err)
    assert sweep.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    assert "MLflow cannot be written" in out + err          # it said so, once
    _check_mlflow(server.url, "restart", db)
    assert not (tmp_path / "restart.optuna.db.mlflow-spool").exists()   # everything written


def test_mlflow_down_at_the_end_is_written_by_the_rerun(server: Server, tmp_path: Path, env: dict) -> None:
    with _sweep_that_loses_the_server(server, tmp_path, env, "rerun",
                                      tracking={"end_wait": "5s"}) as (sweep, spec, env, db):   # not 60 s
        out, err = sweep.communicate(timeout=300)             # the server stays down
    assert sweep.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    assert "the next `hpsearch run` of this study writes them" in out + err
    assert verdicts_in(db) == 6
    spool = tmp_path / "rerun.optuna.db.mlflow-spool"
    assert (spool / "rerun" / "records.jsonl").exists()
    server.start()
    again = subprocess.run([sys.executable, "-m", "hpsearch.cli", "run", str(spec), *ARGS], env=env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "budget met" in again.stdout + again.stderr
    _check_mlflow(server.url, "rerun", db)
    assert not spool.exists()
