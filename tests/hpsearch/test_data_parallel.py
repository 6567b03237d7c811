"""Data-parallel mode: the hub, the sharding, equivalence with one worker, same seed same result,
pruning and failures, a killed rank, the study block and ``hpsearch train``.

The ranks run as threads over real sockets for the fast tests, and as Spark barrier tasks on the
session's local[2] for the rest. ``killable`` (below) is imported by Spark's Python workers.
"""
from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import nets
from backend_contract import BackendContract, cancelled_after
from conftest import lenet_dict, mlflow_runs, write_study
from hpsearch.backends.spark_barrier import Hub, PeerFailed, PeerLost, _Shard, rendezvous, run_rank
from hpsearch.errors import HpsearchError, SpecError
from hpsearch.records import COMPLETE, FAILED, PRUNED, TrialTask

_LENET = nets.RECIPES["lenet"]


# --------------------------------------------------------------------------- a recipe for Spark

def _build_killable(marker: str = "", after: int = 3, **kw):
    """LeNet whose rank 1 (in a Spark barrier task) writes its pid to ``marker`` at its ``after``-th
    batch and waits there to be killed, unless the marker exists already (the retry)."""
    model = _LENET.build(**kw)
    if not marker or Path(marker).exists():
        return model
    from pyspark import BarrierTaskContext
    if BarrierTaskContext.get().partitionId() != 1:
        return model
    forward, calls = model.forward, [0]

    def counting_forward(x):
        calls[0] += 1
        if calls[0] == after:
            Path(marker).write_text(str(os.getpid()))
            time.sleep(120)
        return forward(x)

    model.forward = counting_forward
    return model


killable = nets.Recipe(name="killable", build=_build_killable, loss="nll", load_data=_LENET.load_data,
                       defaults={**_LENET.defaults, "marker": "", "after": 3},
                       metrics=dict(_LENET.metrics))


# --------------------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def data():
    from hpsearch.recipes import load_data, resolve_recipe
    return load_data(resolve_recipe("lenet"), None, 490)


def task(net: str = "lenet", seed: int = 3, **params) -> TrialTask:
    fixed = {"epochs": 1, "batch_size": 24, "lr": 0.05, "optimizer": "sgd"}
    return TrialTask(trial_id=0, number=0, net=net, params=params, fixed=fixed, metric="val_loss",
                     direction="minimize", seed=seed, data_limit=490)


def weights(blob: bytes) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.npz"
        path.write_bytes(blob)
        return nets.load(str(path)).params.copy()


def reference(data, t: TrialTask) -> np.ndarray:
    """One worker, the global batch, the same seed: plain nets training."""
    return nets.train(t.net, t.train_params(), data, seed=t.seed).model.params


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def gatherer(world: int):
    """allGather for ranks that are threads of this process."""
    box, barrier = [None] * world, threading.Barrier(world, timeout=30)

    def for_rank(rank: int):
        def all_gather(message: str) -> list[str]:
            box[rank] = message
            barrier.wait()
            return list(box)
        return all_gather
    return for_rank


def in_threads(world: int, fn) -> list:
    """fn(rank, hub) on ``world`` threads connected by rendezvous; their return values in order."""
    gather, out, errors = gatherer(world), [None] * world, []

    def main(rank: int) -> None:
        try:
            out[rank] = fn(rank, rendezvous(rank, world, gather(rank), "127.0.0.1"))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)
    threads = [threading.Thread(target=main, args=(r,)) for r in range(world)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not any(th.is_alive() for th in threads), "a rank hung"
    if errors:
        raise errors[0]
    return out


def train_in_threads(t: TrialTask, data, world: int, every: int = 1, report=None) -> list:
    return in_threads(world, lambda rank, hub: run_rank(t, data, hub, every, report))


# --------------------------------------------------------------------------- the hub and the shard

def test_hub_weighted_mean_is_the_same_on_every_rank() -> None:
    def fn(rank: int, hub: Hub):
        buf = np.full(1000, rank + 1.0, np.float32)
        hub.average(buf, weight=[1.0, 2.0, 1.0][rank])
        stop = hub.decide(True)
        hub.close()
        return buf, stop
    out = in_threads(3, fn)
    assert all(np.array_equal(buf, np.full(1000, 2.0, np.float32)) for buf, _ in out)   # (1+4+3)/4
    assert [stop for _, stop in out] == [True, True, True]   # rank 0's verdict reaches everyone


def test_hub_abort_names_the_rank_and_a_vanished_rank_is_lost() -> None:
    def failing(rank: int, hub: Hub):
        if rank == 1:
            hub.abort("ValueError: bad", "Traceback ...")
            return None
        with pytest.raises(PeerFailed, match="rank 1: ValueError: bad") as info:
            hub.average(np.zeros(10, np.float32), 1.0)
        assert info.value.tb == "Traceback ..."
        return "ok"
    assert in_threads(2, failing)[0] == "ok"

    def vanishing(rank: int, hub: Hub):
        if rank == 1:
            hub.close()                        # a rank whose process died: the socket just closes
            return None
        with pytest.raises(PeerLost):
            hub.average(np.zeros(10, np.float32), 1.0)
        return "ok"
    assert in_threads(2, vanishing)[0] == "ok"


def test_shard_splits_every_global_batch_and_weights_an_empty_part_zero(data) -> None:
    idx = np.arange(10, 17)                                    # a global batch of 7
    parts = [_Shard(data.train, r, 3) for r in range(3)]
    labels = [s.batch(idx)[1] for s in parts]
    assert np.array_equal(np.concatenate(labels), data.train.y[idx])
    assert [s.weight for s in parts] == [3.0, 2.0, 2.0]
    lonely = [_Shard(data.train, r, 2) for r in range(2)]
    _, y1 = lonely[1].batch(np.array([5]))                     # one sample for two ranks
    assert lonely[1].weight == 0.0 and len(y1) == 1            # computes on one, counts for none


# --------------------------------------------------------------------------- one trial on ranks

@pytest.mark.parametrize("world, limit", [(2, 490), (3, 481)], ids=["2-ranks", "3-ranks-short-last-batch"])
def test_k1_sgd_equals_one_worker_with_the_global_batch(data, world: int, limit: int) -> None:
    t = task()
    d = nets.Data(data.train.subset(limit), data.val, data.source)
    results = train_in_threads(t, d, world)
    assert results[0].state == COMPLETE and results[1:] == [None] * (world - 1)
    assert rel_diff(weights(results[0].weights), reference(d, t)) <= 1e-5


def test_one_rank_is_plain_training_bit_for_bit(data) -> None:
    t = task(optimizer="adagrad", lr=0.01)
    (result,) = train_in_threads(t, data, 1)
    assert np.array_equal(weights(result.weights), reference(data, t))


def test_rank_0_reports_epochs_and_a_prune_stops_every_rank(data) -> None:
    seen = []

    def report(epoch: int, value: float) -> bool:
        seen.append((epoch, value))
        return True
    t = replace(task(), fixed={**task().fixed, "epochs": 3})
    results = train_in_threads(t, data, 2, report=report)
    assert results[0].state == PRUNED and results[0].epochs == 1 and len(seen) == 1
    assert results[0].history[0]["val_loss"] == seen[0][1] and results[0].history[0]["workers"] == 2


@pytest.mark.parametrize("mode, reason", [("raise", "RuntimeError: fragile net refuses to build"),
                                          ("nan", "diverged: ")])
def test_a_failing_net_is_a_failed_result_not_a_hang(data, mode: str, reason: str) -> None:
    results = train_in_threads(task(net="recipes_for_tests:fragile", mode=mode), data, 2)
    assert results[0].state == FAILED and not results[0].lost and results[1] is None
    assert reason in results[0].reason and "Traceback" in results[0].traceback


def test_a_failure_on_another_rank_fails_the_trial_with_that_ranks_reason(data) -> None:
    t = task()
    per_rank = [data, str(Path(tempfile.gettempdir()) / "no-such-mnist")]   # rank 1 cannot read
    results = in_threads(2, lambda rank, hub: run_rank(t, per_rank[rank], hub, 1))
    assert results[0].state == FAILED and not results[0].lost and results[1] is None
    assert results[0].reason.startswith("rank 1: DataError: ") and "no-such-mnist" in results[0].reason
    assert "Traceback" in results[0].traceback


def test_k_steps_average_parameters_and_optimizer_state_on_every_rank() -> None:
    from types import SimpleNamespace

    from hpsearch.backends.spark_barrier import _Sync
    from nets.optim import make_optimizer

    def fn(rank: int, hub: Hub):
        model, opt = _LENET.build(seed=rank), make_optimizer("adagrad", 0.01)
        opt.step(model.params, np.full_like(model.params, rank + 1.0))    # Adagrad's acc: (r+1)^2
        before = (model.params.copy(), opt.state()["acc"].copy())
        sync = _Sync(hub, model, opt, SimpleNamespace(weight=0.0), every=4)
        sync.window = 1.0                                                  # one step's samples each
        sync._average_params()
        return before, (model.params, opt.state()["acc"])
    (b0, a0), (b1, a1) = in_threads(2, fn)
    for i in range(2):                    # parameters, then the accumulator
        assert np.array_equal(a0[i], a1[i])
        assert np.allclose(a0[i], (b0[i] + b1[i]) / 2, rtol=1e-6, atol=1e-7)
    assert np.allclose(a0[1], 2.5)                                         # (1 + 4) / 2


def test_k_steps_same_seed_same_result(data) -> None:
    t = task(optimizer="adagrad", lr=0.01)
    a = train_in_threads(t, data, 2, every=4)[0]
    b = train_in_threads(t, data, 2, every=4)[0]
    assert a.state == COMPLETE and a.weights == b.weights                    # same seed, same result
    assert 0 < rel_diff(weights(a.weights), reference(data, t)) < 0.5        # local steps differ


# --------------------------------------------------------------------------- on Spark barrier tasks

@pytest.fixture
def barrier(spark, data):
    from hpsearch.backends.spark_barrier import BarrierBackend
    return lambda **kw: BarrierBackend(data=data, spark=spark, study_name="dp", **kw)


@pytest.mark.slow
@pytest.mark.spark
def test_on_spark_k1_equals_one_worker_and_reruns_are_identical(barrier, data) -> None:
    t = task()
    with barrier(workers=2) as b:
        first, second = list(b.run([t, replace(t, number=1, trial_id=1)]))
    assert first.state == second.state == COMPLETE and "rank 0 of 2" in first.worker
    assert rel_diff(weights(first.weights), reference(data, t)) <= 1e-5      # acceptance 1
    assert first.weights == second.weights                                   # acceptance 2


@pytest.mark.slow
@pytest.mark.spark
def test_on_spark_a_killed_rank_is_retried_and_training_completes(barrier, data, tmp_path,
                                                                 caplog) -> None:
    marker = tmp_path / "rank1-pid"
    t = task(net="test_data_parallel:killable", marker=str(marker), after=5)
    t = replace(t, fixed={**t.fixed, "epochs": 2})

    def kill_rank_1() -> None:
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        os.kill(int(marker.read_text()), signal.SIGKILL)   # mid-epoch: at its 5th batch
    killer = threading.Thread(target=kill_rank_1)
    killer.start()
    with barrier(workers=2) as b:
        (result,) = list(b.run([t]))
    killer.join()
    assert marker.exists() and result.state == COMPLETE and result.epochs == 2   # acceptance 4
    retried = [r.getMessage() for r in caplog.records if "attempt 1 of 3" in r.getMessage()]
    assert len(retried) == 1, caplog.text
    print(retried[0])
    plain = replace(t, net="lenet", params={})
    assert rel_diff(weights(result.weights), reference(data, plain)) <= 1e-5     # nothing lost


@pytest.mark.slow
@pytest.mark.spark
def test_on_spark_cancel_stops_every_rank_within_5s(barrier) -> None:
    t = task(net="recipes_spark:sleepy", sleep=60.0)
    with barrier(workers=2) as b:
        (result,) = cancelled_after(b, [t], after_s=3.0)
    assert result.state == FAILED


@pytest.mark.slow
@pytest.mark.spark
def test_on_spark_more_workers_than_slots_is_one_clear_error(barrier) -> None:
    from hpsearch.errors import BackendError
    with pytest.raises(BackendError, match="3 data-parallel workers need 3 task slots"):
        barrier(workers=3)


@pytest.mark.slow
@pytest.mark.spark
class TestBarrierBackend(BackendContract):
    """The Backend contract, each trial on two barrier tasks (so one trial at a time on local[2])."""

    @pytest.fixture
    def backend(self, spark):
        from hpsearch.backends.spark_barrier import BarrierBackend
        from hpsearch.recipes import load_data, resolve_recipe
        small = load_data(resolve_recipe("lenet"), None, 200)
        return lambda parallelism, retries=2: BarrierBackend(
            parallelism=parallelism, data=small, spark=spark, study_name="contract", retries=retries,
            workers=2)


# --------------------------------------------------------------------------- the study block and the CLI

def _dp_study(tmp_path: Path, execution: dict, name: str = "dp") -> Path:
    return write_study(tmp_path, name, lenet_dict(execution=execution))


def test_the_execution_block_reads_workers_and_sync_every(tmp_path: Path) -> None:
    from hpsearch.spec import DataParallelSpec, load_spec
    spec = load_spec(_dp_study(tmp_path, {"data_parallel": {"workers": 2, "sync_every": 4}}))
    assert spec.execution.data_parallel == DataParallelSpec(workers=2, sync_every=4)
    assert spec.execution.backend == "spark"
    plain = load_spec(_dp_study(tmp_path, {"backend": "spark"}, "plain"))
    assert plain.execution.data_parallel is None
    assert load_spec(_dp_study(tmp_path, {"data_parallel": {"workers": 3}}, "k")).execution \
        .data_parallel == DataParallelSpec(3, 1)


@pytest.mark.parametrize("execution, message", [
    ({"data_parallel": {"workers": 0}}, "execution.data_parallel.workers: must be >= 1; got 0"),
    ({"data_parallel": {"worker": 2}}, "execution.data_parallel.worker: unknown key 'worker'; "
                                       "did you mean 'workers'?"),
    ({"data_parallel": {"sync_every": 2}}, "execution.data_parallel.workers: is required but missing"),
    ({"data_parallel": {"workers": 2, "sync_every": 0.5}},
     "execution.data_parallel.sync_every: must be an integer; got a number 0.5"),
    ({"data_parallel": 2}, "execution.data_parallel: must be a mapping; got an integer 2"),
    ({"backend": "local", "data_parallel": {"workers": 2}},
     "execution.data_parallel: needs the spark backend; got backend: local"),
], ids=["zero-workers", "typo", "no-workers", "fractional-k", "not-a-mapping", "local-backend"])
def test_a_bad_data_parallel_block_is_one_error_with_file_and_key(tmp_path: Path, execution: dict,
                                                                  message: str) -> None:
    from hpsearch.spec import load_spec
    path = _dp_study(tmp_path, execution)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.line().startswith(f"{path}:") and message in info.value.line()


def test_run_backend_local_on_a_data_parallel_study_names_the_flag(tmp_path: Path) -> None:
    from hpsearch.spec import load_spec
    path = _dp_study(tmp_path, {"data_parallel": {"workers": 2}})
    with pytest.raises(SpecError, match=r"got backend: local \(from --backend local\)"):
        load_spec(path, [("execution.backend", "local", "--backend local")])


@pytest.mark.parametrize("args, message", [
    (["--params", '{"lr": 0.05}', "--best"], "Error: give --params or --best, not both"),
    (["--params", "{lr: 1}"], "Error: --params is not JSON"),
    (["--params", "[1]"], "Error: --params must be a JSON object; got list"),
    (["--params", '{"lrr": 0.1}'], "Error: --params: unknown lenet hyperparameter 'lrr'; did you mean 'lr'?"),
    (["--params", '{"batch_size": 0}'], "Error: --params: batch_size must be a whole number >= 1"),
    (["--best"], "Error: no study store at "),
    (["--workers", "2", "--output", "/no/such/dir/m.npz"], "Error: --output /no/such/dir/m.npz: no such"),
], ids=["both", "not-json", "not-object", "unknown", "bad-value", "no-sweep-yet", "bad-output"])
def test_train_refuses_bad_input_before_spark_starts(tmp_path: Path, args: list, message: str) -> None:
    from click.testing import CliRunner

    from hpsearch.cli import cli
    path = _dp_study(tmp_path, {"backend": "spark"})
    result = CliRunner().invoke(cli, ["train", str(path), "--workers", "2", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dp.yaml"]          # nothing created


def test_train_help_and_worker_count_checks() -> None:
    from click.testing import CliRunner

    from hpsearch.cli import cli
    help_text = CliRunner().invoke(cli, ["train", "--help"]).stdout
    assert "Examples:" in help_text and "--sync-every" in help_text
    result = CliRunner().invoke(cli, ["train", "x.yaml", "--workers", "0"])
    assert result.exit_code == 2 and "Invalid value for '--workers'" in result.stderr


def test_train_takes_the_workers_from_the_study_or_asks_for_them(tmp_path: Path) -> None:
    from hpsearch.dataparallel import _ranks
    from hpsearch.spec import load_spec
    spec = load_spec(_dp_study(tmp_path, {"data_parallel": {"workers": 3, "sync_every": 4}}))
    assert _ranks(spec, None, None) == (3, 4) and _ranks(spec, 2, None) == (2, 4)
    plain = load_spec(_dp_study(tmp_path, {"backend": "spark"}, "plain"))
    assert _ranks(plain, 2, None) == (2, 1)
    with pytest.raises(HpsearchError, match="no execution.data_parallel block; give --workers W"):
        _ranks(plain, None, None)


@pytest.mark.slow
@pytest.mark.spark
def test_a_study_trains_every_trial_data_parallel_then_train_retrains_the_best(tmp_path: Path,
                                                                               spark, monkeypatch) -> None:
    import hpsearch
    from click.testing import CliRunner
    from mlflow import MlflowClient

    from hpsearch.cli import cli
    from hpsearch.storage import load_existing_study
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    d = lenet_dict(execution={"backend": "spark", "data_parallel": {"workers": 2, "sync_every": 2}},
                   budget={"trials": 3}, data={"path": None, "limit": 300})
    d["fixed"]["epochs"] = 2
    path = write_study(tmp_path, "dp", d)
    summary = hpsearch.run_study(hpsearch.load_spec(path), spark=spark)
    assert summary.counts["failed"] == 0 and sum(summary.counts.values()) == 3
    trials = load_existing_study(hpsearch.load_spec(path).storage, "dp").trials
    assert all(t.intermediate_values for t in trials)                    # rank 0 reported, live
    children = [r for r in mlflow_runs(tmp_path, "dp") if r.data.tags.get("hpsearch.kind") == "trial"]
    assert len(children) == 3 and all("rank 0 of 2" in r.data.tags["hpsearch.worker"] for r in children)

    out = tmp_path / "best.npz"
    result = CliRunner().invoke(cli, ["train", str(path), "--best", "--workers", "2", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert f"best trial {summary.best.number}:" in result.stdout and "epoch 2: val_loss=" in result.stdout
    (run,) = [r for r in mlflow_runs(tmp_path, "dp") if r.data.tags.get("hpsearch.kind") == "train"]
    assert run.info.status == "FINISHED" and run.data.params["workers"] == "2"
    assert run.data.tags["hpsearch.source"] == f"best trial {summary.best.number}"
    history = MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_metric_history(run.info.run_id, "val_loss")
    assert sorted(m.step for m in history) == [1, 2]
    assert nets.load(str(out)).n_params > 0
