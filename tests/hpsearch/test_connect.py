"""The same sweeps over Spark Connect: a real Connect server on loopback (started here from the
pyspark wheel), the Backend contract, the CLI with ``--master sc://``, live pruning, a channel the
executors cannot reach, and data-parallel trials as barrier jobs."""
from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import pytest
from mlflow import MlflowClient


from backend_contract import BackendContract, cancelled_after, task
from conftest import (HERE, REPO, interrupt_while_a_trial_runs, lenet_dict, mlflow_runs, run_cli,
                      stored_study, sweep_runs, trial_runs, write_study)
from connect_server import ConnectServer
from hpsearch.records import COMPLETE, FAILED

pytestmark = [pytest.mark.slow, pytest.mark.spark]
TINY = ["--set", "data.limit=300", "--set", "fixed.epochs=2"]


@pytest.fixture(scope="module")
def server():
    with ConnectServer(cores=2, pythonpath=[str(HERE), str(REPO)]) as srv:
        yield srv


@pytest.fixture(scope="module")
def cspark(server):
    """A Connect session in this process, beside the suite's classic one: pyspark's generic builder
    refuses that (one mode per process), so the Connect class builds it and each test of this
    module runs in Connect mode (``connect_mode``), as a process that only uses Connect would."""
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    from hpsearch.backends.spark import is_connect
    session = ConnectSession.builder.remote(server.url).getOrCreate()
    assert is_connect(session)
    yield session
    session.stop()


@pytest.fixture(autouse=True)
def connect_mode(monkeypatch):
    """pyspark's Connect mode (what ``SparkSession.builder.remote`` sets for the whole process):
    ``pandas_udf``, MLflow's ``spark_udf`` and MlflowSparkStudy look at it."""
    monkeypatch.setenv("SPARK_CONNECT_MODE_ENABLED", "1")


@pytest.fixture
def backend(cspark, data):
    from hpsearch.backends.spark import SparkBackend
    return lambda parallelism, retries=2: SparkBackend(parallelism=parallelism, data=data, spark=cspark,
                                                       study_name="contract", retries=retries)


def trial_jobs(server: ConnectServer, tag: str) -> list[str]:
    """The names of the server's jobs that carry the sweep's tag (Connect prefixes user tags)."""
    names = []
    for job in server.jobs():
        tags = [t.rsplit("_Tag_", 1)[-1] for t in job.get("jobTags", [])]
        if tag in tags:
            names += [t for t in tags if re.fullmatch(r"contract trial \d+", t)]
    return names


class TestConnectBackend(BackendContract):
    def test_one_job_per_trial_named_after_it(self, backend, server) -> None:
        with backend(2) as b:
            assert b.connect and b.slots == 2
            results = list(b.run([task(i) for i in range(3)]))
        assert all(r.state == COMPLETE for r in results)
        assert sorted(trial_jobs(server, b.tag)) == [f"contract trial {i}" for i in range(3)]

    def test_a_raising_trial_is_not_retried(self, backend, server) -> None:
        with backend(1) as b:
            (result,) = b.run([task(0, net="recipes_for_tests:fragile", mode="raise")])
        assert result.state == FAILED and not result.lost
        assert trial_jobs(server, b.tag) == ["contract trial 0"]

    def test_a_killed_worker_is_retried_and_the_trial_completes(self, backend, tmp_path) -> None:
        marker = str(tmp_path / "died-once")
        with backend(1) as b:
            (result,) = b.run([task(0, net="recipes_spark:once", marker=marker)])
        assert (tmp_path / "died-once").exists()
        assert result.state == COMPLETE and not result.lost

    def test_cancel_interrupts_running_trials_within_5s(self, backend) -> None:
        slow = [replace(task(i, net="recipes_spark:sleepy", sleep=60.0)) for i in range(2)]
        with backend(2) as b:
            assert len(cancelled_after(b, slow)) == 2


def test_lenet_study_over_connect_from_the_cli(tmp_path: Path, env: dict, server) -> None:
    spec = tmp_path / "lenet.yaml"
    spec.write_text((REPO / "studies" / "lenet.yaml").read_text())   # as shipped: Hyperband
    proc = run_cli(["run", str(spec), "--master", server.url, "--trials", "8", "--parallelism", "2", *TINY],
                   env, tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    runs = mlflow_runs(tmp_path, "lenet")
    parents = sweep_runs(runs)
    children = trial_runs(runs)
    assert len(parents) == 1 and len(children) == 8
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    trials = {t.number: t for t in stored_study(tmp_path, "lenet").trials}
    for run in children:
        t = trials[int(run.data.tags["hpsearch.trial_number"])]
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_loss"))
        # every epoch reached the pruner live, and a pruned task trained no epoch after the decision
        assert steps == sorted(t.intermediate_values) == list(range(1, len(steps) + 1))
        assert run.data.tags["hpsearch.state"] in ("complete", "pruned")
    workers = [r.data.tags["hpsearch.worker"] for r in children]
    assert all(str(os.getpid()) not in w for w in workers)


def test_hyperband_prunes_on_connect_as_on_classic(tmp_path: Path, cspark, monkeypatch) -> None:
    import hpsearch

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    data = lenet_dict(execution={"backend": "spark", "parallelism": 2})
    summary = hpsearch.run_study(hpsearch.load_spec(write_study(tmp_path, "hb", data)), spark=cspark)
    trials = stored_study(tmp_path, "hb").trials
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert summary.counts["pruned"] == len(pruned) >= len(trials) / 3
    epochs = sum(len(t.intermediate_values) for t in trials)
    assert epochs <= 0.6 * 6 * len(trials)          # at most 60% of the unpruned epochs


# the channel listens on 127.0.0.1 but tells the tasks to dial 127.0.0.3, where nothing listens: as a
# client behind NAT would, seen from a remote cluster
FAR = {"report_host": "127.0.0.3", "report_bind": "127.0.0.1"}


def test_hyperband_prunes_between_jobs_when_executors_cannot_reach_the_client(tmp_path: Path, cspark,
                                                                             monkeypatch) -> None:
    import hpsearch

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    # the study of test_hyperband_prunes_on_connect_as_on_classic, under the same name: Hyperband puts
    # each trial in a bracket by a hash of the study name and trial number
    data = lenet_dict(execution={"backend": "spark", "parallelism": 2, **FAR})
    summary = hpsearch.run_study(hpsearch.load_spec(write_study(tmp_path, "hb", data)), spark=cspark)
    assert any("pruning between Spark jobs" in n for n in summary.notes), summary.notes
    trials = stored_study(tmp_path, "hb").trials
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert summary.counts["pruned"] == len(pruned) >= len(trials) / 3
    epochs = sum(len(t.intermediate_values) for t in trials)
    assert epochs <= 0.6 * 6 * len(trials)          # at most 60% of the unpruned epochs
    assert all(sorted(t.intermediate_values) == list(range(1, len(t.intermediate_values) + 1))
               for t in trials)


def test_pruning_mode_channel_stops_before_any_trial_when_unreachable(tmp_path: Path, env: dict,
                                                                      server) -> None:
    study = lenet_dict(execution={"backend": "spark", "parallelism": 2, "master": server.url,
                                  "pruning_mode": "channel", **FAR})
    spec = write_study(tmp_path, "far", study)
    proc = run_cli(["run", str(spec), *TINY], env, tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "cannot reach the pruning channel at 127.0.0.3" in errors[0]
    assert "execution.report_host" in proc.stderr and "execution.pruning_mode: rungs" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not stored_study(tmp_path, "far").trials


def test_data_parallel_training_over_connect(tmp_path: Path, env: dict, server) -> None:
    spec = write_study(tmp_path, "dp", lenet_dict(execution={"backend": "spark", "master": server.url}))
    out = tmp_path / "dp.npz"
    proc = run_cli(["train", str(spec), "--params", '{"lr": 0.05, "batch_size": 32}', "--workers", "2",
                    "--output", str(out), *TINY], env, tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "complete" in proc.stdout and "2 worker(s)" in proc.stdout
    import nets
    assert nets.load(str(out)) is not None


def test_sigint_interrupts_every_task_and_a_rerun_resumes(tmp_path: Path, env: dict, server) -> None:
    spec = write_study(tmp_path, "intr", lenet_dict(pruner="none", budget={"trials": 6}, execution={
        "backend": "spark", "parallelism": 2, "master": server.url}))
    # trials of about 2 s (slot mode dispatches in milliseconds): some are running at the signal
    args = ["run", str(spec), "--set", "data.limit=1500", "--set", "fixed.epochs=40"]
    code, took, out = interrupt_while_a_trial_runs(args, env, tmp_path, "intr")
    assert code == 130, out
    assert took < 5.0, f"exited {took:.1f} s after SIGINT"
    running = [j for j in server.jobs() if j["status"] == "RUNNING"]
    assert not running, f"still running on the server after the client exited: {running}"
    assert not [t for t in stored_study(tmp_path, "intr").trials if t.state.name == "RUNNING"]
    assert any(t.user_attrs.get("hpsearch_requeued") for t in stored_study(tmp_path, "intr").trials)  # cut short

    again = run_cli(args, env, tmp_path)
    assert again.returncode == 0, again.stderr + again.stdout
    verdicts = [t for t in stored_study(tmp_path, "intr").trials
                if t.state.is_finished() and not t.user_attrs.get("hpsearch_requeued")]
    assert len(verdicts) == 6


def test_the_channel_secret_leaks_nowhere(tmp_path: Path, cspark, server, monkeypatch, capfd,
                                           caplog) -> None:
    """A sweep with pruning over Connect: its secret is in no output, log line, MLflow param or tag,
    Spark job (descriptions, tags, SQL plans), server log or process listing."""
    import json
    import logging
    import subprocess
    import urllib.request

    import hpsearch
    import hpsearch.pruning

    secret = "S3cr3t-" + os.urandom(16).hex()
    monkeypatch.setattr(hpsearch.pruning, "new_secret", lambda: secret)
    caplog.set_level(logging.DEBUG)
    listings: list[str] = []

    class Watch(hpsearch.Observer):
        def started(self, task, progress) -> None:
            assert task.channel is not None and task.channel.secret == secret   # it is in use
            listings.append(subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True,
                                           text=True).stdout)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    data = lenet_dict(execution={"backend": "spark", "parallelism": 2}, budget={"trials": 4})
    spec = hpsearch.load_spec(write_study(tmp_path, "leak", data))
    hpsearch.run_study(spec, spark=cspark, observer=Watch())
    seen = {"stdout/stderr": "".join(capfd.readouterr()), "logs": caplog.text,
            "ps": "".join(listings), "server log": server.log.read_text(errors="replace")}
    for run in mlflow_runs(tmp_path, "leak"):
        seen[f"run {run.info.run_id}"] = json.dumps([run.data.params, run.data.tags])
    seen["jobs"] = json.dumps(server.jobs())
    with urllib.request.urlopen(f"{server.ui_url}/api/v1/applications", timeout=10) as resp:
        app = json.load(resp)[0]["id"]
    with urllib.request.urlopen(f"{server.ui_url}/api/v1/applications/{app}/sql?details=true",
                                timeout=10) as resp:
        seen["sql"] = resp.read().decode(errors="replace")
    assert len(listings) == 4
    assert {where for where, text in seen.items() if secret in text} == set()


@pytest.fixture(scope="module")
def finished_lenet(tmp_path_factory):
    """A finished 2-trial LeNet sweep (local backend), and 1,000 sample images as Parquet."""
    import numpy as np
    import pandas as pd

    import hpsearch
    from nets.recipes import mnist_classify
    tmp = tmp_path_factory.mktemp("connect-scoring")
    path = write_study(tmp, "lenet", lenet_dict(
        pruner="none", data={"path": None, "limit": 300}, fixed={"epochs": 1}, budget={"trials": 2},
        tracking={"uri": f"sqlite:///{tmp / 'mlflow.db'}", "plots": False}))
    spec = hpsearch.load_spec(path)
    hpsearch.run_study(spec)
    raw = mnist_classify().val.x.reshape(-1, 784)
    images = tmp / "images.parquet"
    pd.DataFrame({"id": np.arange(len(raw)), "pixels": list(raw.astype(np.float32))}).to_parquet(images)
    import nets
    from mlflow import MlflowClient
    run_id = hpsearch.best_trial(spec).run_id
    local = MlflowClient(spec.tracking.uri).download_artifacts(run_id, "model/model.npz", str(tmp / "dl"))
    expected = nets.load(local).predict(mnist_classify().val.inputs()).argmax(axis=1)
    return path, spec, images, expected


def test_sql_udf_and_predict_over_connect(finished_lenet, cspark, server, env: dict) -> None:
    import numpy as np
    import pandas as pd

    import hpsearch
    path, spec, images, expected = finished_lenet
    cspark.read.parquet(str(images)).createOrReplaceTempView("images")
    hpsearch.register_udf(cspark, spec, name="lenet_predict")
    got = cspark.sql("SELECT id, lenet_predict(pixels) AS digit FROM images").toPandas().sort_values("id")
    assert np.array_equal(got["digit"].to_numpy(), expected)       # exactly nets' own predictions
    out = path.parent / "digits.parquet"
    proc = run_cli(["predict", str(path), "--input", str(images), "--output", str(out),
                    "--master", server.url], env, path.parent)
    assert proc.returncode == 0, proc.stderr
    got = pd.read_parquet(out).sort_values("id")
    assert np.array_equal(got["prediction"].to_numpy(), expected)


def test_mlflow_spark_udf_scores_10000_rows_over_connect(finished_lenet, cspark, monkeypatch) -> None:
    import mlflow
    import numpy as np
    import pandas as pd
    from pyspark.sql.functions import struct

    import hpsearch
    from nets.recipes import mnist_classify
    path, spec, images, expected = finished_lenet
    monkeypatch.setenv("MLFLOW_TRACKING_URI", spec.tracking.uri)
    raw = mnist_classify().val.x.reshape(-1, 784).astype(np.float64)
    reps = -(-10_000 // len(raw))
    pdf = pd.DataFrame({"id": np.arange(10_000), "pixels": list(np.tile(raw, (reps, 1))[:10_000])})
    df = cspark.createDataFrame(pdf).repartition(4)
    run_id = hpsearch.best_trial(spec).run_id
    udf = mlflow.pyfunc.spark_udf(cspark, f"runs:/{run_id}/model", env_manager="local")
    got = df.select("id", udf(struct("pixels")).alias("digit")).toPandas().sort_values("id")
    assert len(got) == 10_000
    assert np.array_equal(got["digit"].to_numpy(), np.tile(expected, reps)[:10_000])
