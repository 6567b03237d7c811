"""Sweeps on Spark end to end: the CLI on local[2], live pruning across tasks, Ctrl-C, and a real
standalone cluster (master and worker on 127.0.0.1)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient


from conftest import (REPO, interrupt_while_a_trial_runs, lenet_dict, mlflow_runs, run_cli, stored_study,
                      sweep_runs, trial_runs, write_study)

pytestmark = [pytest.mark.slow, pytest.mark.spark]
TINY = ["--set", "data.limit=300", "--set", "fixed.epochs=2"]


def test_lenet_sweep_runs_every_trial_as_a_spark_task(tmp_path: Path, env: dict) -> None:
    spec = tmp_path / "lenet.yaml"
    spec.write_text((REPO / "studies" / "lenet.yaml").read_text())   # as shipped: backend spark
    proc = run_cli(["run", str(spec), "--trials", "8", "--parallelism", "2", *TINY], env, tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "starting Spark" in proc.stdout + proc.stderr
    runs = mlflow_runs(tmp_path, "lenet")
    parents = sweep_runs(runs)
    children = trial_runs(runs)
    assert len(parents) == 1 and len(children) == 8
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)
    workers = [r.data.tags["hpsearch.worker"] for r in children]
    assert all(w and str(os.getpid()) not in w for w in workers)
    assert len(set(workers)) < len(workers)          # Python workers were reused across trials


def test_hyperband_prunes_live_across_tasks(tmp_path: Path, spark, monkeypatch) -> None:
    import hpsearch

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    data = lenet_dict(execution={"backend": "spark", "parallelism": 2})
    spec = hpsearch.load_spec(write_study(tmp_path, "hb", data))
    summary = hpsearch.run_study(spec, spark=spark)
    trials = stored_study(tmp_path, "hb").trials
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert summary.counts["pruned"] == len(pruned) >= 4
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    by_number = {int(r.data.tags["hpsearch.trial_number"]): r for r in trial_runs(mlflow_runs(tmp_path, "hb"))}
    for t in pruned:
        reported = sorted(t.intermediate_values)             # what the pruner saw, live
        trained = client.get_metric_history(by_number[t.number].info.run_id, "val_loss")
        # the task stopped at the epoch of the decision: no epoch trained after it
        assert sorted(m.step for m in trained) == reported == list(range(1, len(reported) + 1))
        assert len(reported) < 6
    # every task reported through the driver's channel: the pruner saw trials from both workers
    assert all(t.intermediate_values for t in trials)
    assert len({by_number[t.number].data.tags["hpsearch.worker"] for t in trials}) >= 2


def test_sigint_cancels_the_sweep_and_a_rerun_resumes(tmp_path: Path, env: dict) -> None:
    spec = write_study(tmp_path, "intr", lenet_dict(pruner="none", budget={"trials": 6},
                                                    execution={"backend": "spark", "parallelism": 2}))
    # trials of about 2 s (slot mode dispatches in milliseconds): some are running at the signal
    args = ["run", str(spec), "--set", "data.limit=1500", "--set", "fixed.epochs=40"]
    code, took, out = interrupt_while_a_trial_runs(args, env, tmp_path, "intr")
    assert code == 130, out
    assert took < 5.0, f"exited {took:.1f} s after SIGINT"
    assert not [t for t in stored_study(tmp_path, "intr").trials if t.state.name == "RUNNING"]
    assert any(t.user_attrs.get("hpsearch_requeued") for t in stored_study(tmp_path, "intr").trials)  # cut short

    again = run_cli(args, env, tmp_path)
    assert again.returncode == 0, again.stderr + again.stdout
    trials = stored_study(tmp_path, "intr").trials
    verdicts = [t for t in trials if t.state.is_finished() and not t.user_attrs.get("hpsearch_requeued")]
    assert len(verdicts) == 6


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def cluster():
    """spark://127.0.0.1:7077: the one .ci/run started, or one started (and stopped) here."""
    started = False
    if not _port_open(7077):
        subprocess.run(["bash", str(REPO / "scripts" / "spark-cluster.sh"), "start", sys.executable],
                       check=True, timeout=180)
        started = True
    yield "spark://127.0.0.1:7077"
    if started:
        subprocess.run(["bash", str(REPO / "scripts" / "spark-cluster.sh"), "stop", sys.executable],
                       timeout=120)


@pytest.mark.cluster
def test_sweep_on_a_standalone_cluster(tmp_path: Path, env: dict, cluster: str) -> None:
    spec = tmp_path / "lenet.yaml"
    spec.write_text((REPO / "studies" / "lenet.yaml").read_text())
    proc = run_cli(["run", str(spec), "--trials", "4", "--parallelism", "2", "--master", cluster, *TINY],
                   env, tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    children = trial_runs(mlflow_runs(tmp_path, "lenet"))
    assert len(children) == 4
    assert {r.data.tags["hpsearch.state"] for r in children} <= {"complete", "pruned"}
    assert stored_study(tmp_path, "lenet").trials[0].intermediate_values   # pruning channel reached
