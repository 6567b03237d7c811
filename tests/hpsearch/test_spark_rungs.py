"""Pruning between Spark jobs (hpsearch/backends/spark_rungs.py) on a real local[2] session: the
Backend contract rung by rung, a trial run rung by rung equal to the same trial in one job, the
pruner's answers between rungs, a lost worker redoing one rung, cancellation, and the shipped
Hyperband study pruned from the CLI while the executors cannot reach the pruning channel."""
from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from mlflow import MlflowClient

from backend_contract import BackendContract, cancelled_after, task
from conftest import REPO, lenet_dict, mlflow_runs, run_cli, stored_study, sweep_runs, write_study
from hpsearch.records import COMPLETE, PRUNED

pytestmark = [pytest.mark.slow, pytest.mark.spark]
TIMINGS = {"seconds", "samples_per_s", "train_s", "infer_ms"}
# the channel listens on 127.0.0.1 but tells the tasks to dial 127.0.0.3, where nothing listens: as
# a client behind NAT would, seen from a remote cluster
FAR = {"report_host": "127.0.0.3", "report_bind": "127.0.0.1"}


def never(trial_id: int, epoch: int, value: float, values=None) -> bool:
    return False


@pytest.fixture
def backend(spark, data):
    from hpsearch.backends.spark import SparkBackend

    def make(parallelism: int, retries: int = 2, decide=never, mode: str = "rungs",
             next_decision=None) -> SparkBackend:
        b = SparkBackend(parallelism=parallelism, data=data, spark=spark, study_name="contract",
                         retries=retries)
        assert b.use_pruner(decide, mode, next_decision) == (mode == "rungs")
        return b
    return make


def epochs(n: int, number: int = 0, **params):
    t = task(number, **params)
    return replace(t, fixed={**t.fixed, "epochs": n})


def _untimed(history) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in TIMINGS} for h in history]


def _params(weights: bytes, tmp_path: Path):
    import nets
    path = tmp_path / "m.npz"
    path.write_bytes(weights)
    return nets.load(str(path)).params


def _jobs(spark) -> list[dict]:
    sc = spark.sparkContext
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/jobs"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


class TestRungsBackend(BackendContract):
    """Each trial as jobs of one epoch, pruned by the driver between them."""


def test_a_trial_rung_by_rung_is_the_same_trial_as_in_one_job(backend, spark, tmp_path) -> None:
    with backend(1, mode="channel") as b:        # no channel given: one job per trial
        (whole,) = b.run([epochs(3)])
    with backend(1) as b:
        (rungs,) = b.run([epochs(3)])
    assert whole.state == rungs.state == COMPLETE and rungs.checkpoint is None
    assert _untimed(rungs.history) == _untimed(whole.history) and rungs.value == whole.value
    # bit-identical: the state (weights, optimizer, data order) crossed two job boundaries exactly
    assert _params(rungs.weights, tmp_path).tobytes() == _params(whole.weights, tmp_path).tobytes()
    assert rungs.worker and rungs.seconds > 0 and rungs.started and rungs.first_batch_s is not None
    mine = sorted(j["description"] for j in _jobs(spark) if b.tag in j.get("jobTags", [])
                  and "trial" in j["description"])
    assert mine == [f"contract trial 0 epoch {e}" for e in (1, 2, 3)]


def test_hyperband_rungs_need_one_job_per_rung_not_per_epoch(backend, spark, tmp_path) -> None:
    from hpsearch.samplers import next_decision
    hyperband = next_decision("hyperband", {"min_resource": 1, "reduction_factor": 3, "max_resource": 6})
    with backend(1, mode="channel") as b:
        (whole,) = b.run([epochs(6)])
    asked: list[int] = []
    with backend(1, decide=lambda t, e, v, values=None: asked.append(e) or False,
                 next_decision=hyperband) as b:
        (rungs,) = b.run([epochs(6)])
    assert rungs.state == COMPLETE and asked == [1, 2, 3, 4, 5, 6]      # every epoch reported, in order
    assert _untimed(rungs.history) == _untimed(whole.history)
    assert _params(rungs.weights, tmp_path).tobytes() == _params(whole.weights, tmp_path).tobytes()
    mine = sorted(j["description"] for j in _jobs(spark) if b.tag in j.get("jobTags", [])
                  and "trial" in j["description"])
    assert mine == ["contract trial 0 epoch 1", "contract trial 0 epochs 2-3", "contract trial 0 epochs 4-6"]


def test_a_prune_inside_a_rung_cuts_the_trial_there(backend) -> None:
    """Were the schedule wrong, the result would still be the channel's (later epochs only wasted)."""
    with backend(1, decide=lambda t, e, v, values=None: e == 2, next_decision=lambda e: e + 3) as b:
        (result,) = b.run([epochs(4)])
    assert result.state == PRUNED and [h["epoch"] for h in result.history] == [1, 2]
    assert result.reason == "pruned after epoch 2" and result.value == result.history[-1]["val_loss"]


def test_the_driver_prunes_between_rungs_as_the_channel_would(backend) -> None:
    asked: list[tuple[int, int]] = []

    def prune_at_2(trial_id: int, epoch: int, value: float, values=None) -> bool:
        asked.append((trial_id, epoch))
        return epoch == 2 or (trial_id == 1 and epoch == 3)

    with backend(2, decide=prune_at_2) as b:
        results = {r.number: r for r in b.run([epochs(4, 0), epochs(3, 1)])}
    assert results[0].state == PRUNED and results[0].reason == "pruned after epoch 2"
    assert [h["epoch"] for h in results[0].history] == [1, 2] and results[0].weights is None
    assert results[0].value == results[0].history[-1]["val_loss"]
    # a prune answer after the last epoch changes nothing (nets stops only before the end)
    assert results[1].state == PRUNED and results[1].epochs == 2
    assert sorted(e for t, e in asked if t == 0) == [1, 2]      # no epoch trained after the decision


def test_a_prune_after_the_last_epoch_completes_the_trial(backend) -> None:
    with backend(1, decide=lambda trial_id, epoch, value, values=None: epoch == 2) as b:
        (result,) = b.run([epochs(2)])
    assert result.state == COMPLETE and result.epochs == 2 and result.weights


def test_a_worker_lost_mid_trial_redoes_that_rung_only(backend, tmp_path) -> None:
    marker = tmp_path / "builds"
    with backend(1) as b:
        (result,) = b.run([epochs(3, net="recipes_spark:late", marker=str(marker))])
    assert result.state == COMPLETE and not result.lost
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    # rung 1, rung 2 (its worker killed), rung 2 again, rung 3: not the whole trial again (5)
    assert marker.read_text() == "4"


def test_cancel_stops_the_running_rungs_within_5s(backend) -> None:
    slow = [epochs(3, i, net="recipes_spark:sleepy", sleep=60.0) for i in range(2)]
    with backend(2) as b:
        assert len(cancelled_after(b, slow)) == 2


def test_hyperband_prunes_from_the_cli_when_executors_cannot_reach_the_channel(tmp_path, env) -> None:
    spec = tmp_path / "lenet.yaml"
    spec.write_text((REPO / "studies" / "lenet.yaml").read_text())   # as shipped: Hyperband
    args = ["--set", "data.limit=300", "--set", "fixed.epochs=3", *(f"--set=execution.{k}={v}"
                                                                   for k, v in FAR.items())]
    proc = run_cli(["run", str(spec), "--trials", "6", "--parallelism", "2", *args], env, tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = proc.stdout + proc.stderr
    assert "cannot reach the pruning channel at 127.0.0.3" in out and "pruning between Spark jobs" in out
    runs = mlflow_runs(tmp_path, "lenet")
    parents = sweep_runs(runs)
    children = [r for r in runs if r.data.tags.get("hpsearch.kind") == "trial"]
    assert len(parents) == 1 and len(children) == 6
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)
    trials = {t.number: t for t in stored_study(tmp_path, "lenet").trials}
    assert any(t.state.name == "PRUNED" for t in trials.values())
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    for run in children:
        t = trials[int(run.data.tags["hpsearch.trial_number"])]
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_loss"))
        # every epoch reached the pruner, and a pruned trial trained no epoch after the decision
        assert steps == sorted(t.intermediate_values) == list(range(1, len(steps) + 1))
        assert run.data.tags["hpsearch.state"] == t.state.name.lower()
        assert str(os.getpid()) not in run.data.tags["hpsearch.worker"]


def test_pruning_mode_rungs_opens_no_channel_and_prunes(tmp_path, spark, monkeypatch) -> None:
    import hpsearch
    from hpsearch import pruning

    served: list = []
    monkeypatch.setattr(pruning, "serve", lambda *a, **k: served.append(a) or pytest.fail("served"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    data = lenet_dict(data={"path": None, "limit": 300}, fixed={"epochs": 3, "optimizer": "sgd"},
                      budget={"trials": 6}, execution={"backend": "spark", "parallelism": 2,
                                                       "pruning_mode": "rungs"})
    summary = hpsearch.run_study(hpsearch.load_spec(write_study(tmp_path, "rungs", data)), spark=spark)
    assert not served and not any("cannot reach" in n for n in summary.notes)
    trials = stored_study(tmp_path, "rungs").trials
    assert summary.counts["pruned"] >= 1 and len(trials) == 6
    for t in trials:                      # every epoch reported, in order; complete trials ran all 3
        assert sorted(t.intermediate_values) == list(range(1, len(t.intermediate_values) + 1))
        assert len(t.intermediate_values) == 3 or t.state.name == "PRUNED"


def test_pruning_mode_channel_stops_before_any_trial_naming_the_settings(tmp_path, env) -> None:
    study = lenet_dict(execution={"backend": "spark", "parallelism": 2, "pruning_mode": "channel", **FAR})
    proc = run_cli(["run", str(write_study(tmp_path, "far", study)), "--set", "data.limit=300"], env, tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "cannot reach the pruning channel at 127.0.0.3" in errors[0]
    assert "execution.pruning_mode: rungs" in proc.stderr and "execution.report_host" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not stored_study(tmp_path, "far").trials
