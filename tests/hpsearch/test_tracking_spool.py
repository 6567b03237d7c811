"""The spool of trial runs not yet written to MLflow, and writing a record twice (a retry, a rerun):
always one run with each epoch's metrics once. A real SQLite MLflow store; no server needed."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from hpsearch.mlflow_writer import Spool, Writer, spool_dir
from hpsearch.records import COMPLETE, TrialResult


def _spec(tmp_path: Path):
    import hpsearch
    return hpsearch.spec_from_dict({
        "name": "spooled", "net": "lenet", "fixed": {"epochs": 3},
        "search_space": {"lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True}},
        "objective": {"metric": "val_loss"}, "budget": {"trials": 2},
        "storage": f"sqlite:///{tmp_path / 'spooled.optuna.db'}",
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "plots": False},
    }, name="spooled", base_dir=tmp_path)


def _result(number: int) -> TrialResult:
    history = tuple({"epoch": float(e), "loss": 1.0 / e, "val_loss": 2.0 / e, "seconds": 0.5} for e in (1, 2, 3))
    return TrialResult(trial_id=number + 1, number=number, state=COMPLETE, value=2.0 / 3, history=history,
                       seconds=1.5, started=1_700_000_000.0, worker="w1")


@pytest.fixture
def tracker(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    from hpsearch.tracking import Tracker
    t = Tracker(_spec(tmp_path), None)
    t.start_sweep({"trials": 2})
    yield t
    t.end_sweep(None, {"complete": 1})


def _children(tracker) -> list:
    runs = tracker.client.search_runs([tracker.experiment_id], max_results=100)
    return [r for r in runs if r.data.tags.get("hpsearch.kind") == "trial"]


def test_a_record_written_twice_is_one_run_with_each_epoch_once(tracker) -> None:
    rec = tracker.trial_record(None, {"lr": 0.05, "epochs": 3}, _result(0))
    json.dumps(rec)                                          # plain JSON: it goes to the spool file
    tracker.write_record(copy.deepcopy(rec), None)
    tracker.run_ids.clear()                                  # as a rerun: found by its tags
    tracker.write_record(copy.deepcopy(rec), None)
    (run,) = _children(tracker)
    assert run.info.status == "FINISHED" and run.data.params["lr"] == "0.05"
    history = tracker.client.get_metric_history(run.info.run_id, "val_loss")
    assert [(m.step, m.value) for m in history] == [(1, 2.0), (2, 1.0), (3, 2.0 / 3)]
    assert run.data.metrics["objective"] == pytest.approx(2.0 / 3)


def test_a_run_created_whose_metrics_failed_is_completed_not_duplicated(tracker) -> None:
    """The driver's create_run reached MLflow but the rest did not (or the reply was lost)."""
    run_id = tracker.create_trial_run(1, 1_700_000_000.0)
    assert tracker.client.get_run(run_id).info.status == "RUNNING"
    tracker.run_ids.clear()
    tracker.write_record(tracker.trial_record(None, {"lr": 0.02}, _result(1)), None)
    (run,) = _children(tracker)
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert len(tracker.client.get_metric_history(run_id, "loss")) == 3


def test_a_trial_run_opened_at_ask_is_running_until_its_verdict_and_used_by_it(tracker) -> None:
    """The writer creates the run while the trial runs, ahead of the records queued before it; the
    verdict gets that run's id (no second run)."""
    import threading
    gate = threading.Event()
    tracker._writer.first(gate.wait)                 # the writer is busy with something earlier
    tracker.log_trial(None, {"lr": 0.03}, _result(2))()     # a record queued before the ask
    tracker.open_trial_run(3, 1_700_000_000.0)
    assert tracker.create_trial_run(4) is not None   # never opened: made on this thread
    gate.set()
    run_id = tracker.create_trial_run(3)             # waits for the writer's create
    run = tracker.client.get_run(run_id)
    assert run.info.status == "RUNNING" and run.data.tags["mlflow.runName"] == "trial-3"
    assert run.info.start_time == 1_700_000_000_000  # the writer's run, started when it was asked
    tracker.log_trial(run_id, {"lr": 0.04}, _result(3))()
    tracker.end_sweep(None, {"complete": 2})
    runs = {r.data.tags["hpsearch.trial_number"]: r for r in _children(tracker)}
    assert sorted(runs) == ["2", "3", "4"] and runs["3"].info.run_id == run_id
    assert runs["3"].info.status == runs["2"].info.status == "FINISHED"


def test_the_spool_keeps_records_until_done_and_then_goes(tmp_path: Path) -> None:
    d = spool_dir(f"sqlite:///{tmp_path / 's.optuna.db'}", "s")
    assert d == tmp_path / "s.optuna.db.mlflow-spool"
    spool = Spool(d, "s")
    spool.add({"key": "trial-0", "number": 0}, b"weights-0")
    spool.add({"key": "trial-1", "number": 1, "weights": True}, b"weights-1")
    spool.done("trial-0")
    with (d / "s" / "records.jsonl").open("a") as fh:
        fh.write('{"key": "trial-2", "num')                 # a driver killed mid-line
    again = Spool(d, "s")
    assert [r["key"] for r in again.pending()] == ["trial-1"] and len(again) == 1
    assert again.weights(again.pending()[0]) == b"weights-1"
    again.done("trial-1")
    assert not d.exists()


def test_the_writer_retries_until_the_write_succeeds_and_keeps_order(tmp_path: Path) -> None:
    """A write that fails (MLflow down) is retried with backoff; records stay in order."""
    written, failures = [], [2]

    def write(rec, weights):
        if failures[0]:
            failures[0] -= 1
            raise ConnectionError("MLflow is down")
        written.append(rec["key"])

    spool = Spool(tmp_path / "sp", "s")
    writer = Writer(write, spool)
    for n in range(3):
        writer.put({"key": f"trial-{n}", "number": n})
    assert writer.close(30.0) == 0
    assert written == ["trial-0", "trial-1", "trial-2"] and not (tmp_path / "sp").exists()


def test_the_writer_leaves_what_it_cannot_write_in_the_spool(tmp_path: Path) -> None:
    def write(rec, weights):
        raise ConnectionError("MLflow is down")

    writer = Writer(write, Spool(tmp_path / "sp", "s"))
    writer.trip(ConnectionError("down"))
    writer.put({"key": "trial-0", "number": 0}, b"w")
    assert writer.close(0.0) == 1
    assert [r["key"] for r in Spool(tmp_path / "sp", "s").pending()] == ["trial-0"]


def test_lanes_write_at_once_each_trial_in_order_and_the_sweep_last(tmp_path: Path) -> None:
    """A tracking server's writer: trials on several threads at once (their round trips overlap),
    one trial's calls in order on its lane, the sweep's record after every trial's."""
    import threading
    import time
    busy, most, lock, log = [0], [0], threading.Lock(), []

    def write(rec, weights):
        with lock:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
        time.sleep(0.05)                 # a round trip
        with lock:
            busy[0] -= 1
            log.append(rec["key"])

    writer = Writer(write, Spool(tmp_path / "sp", "s"), lanes=4)
    created = []
    for n in range(8):
        writer.first(lambda n=n: created.append((n, f"trial-{n}" in log)), n)
        writer.put({"key": f"trial-{n}", "number": n})
    writer.put({"key": "sweep-x", "kind": "sweep"})
    assert writer.close(30.0) == 0
    assert most[0] == 4                           # four lanes at once
    assert sorted(created) == [(n, False) for n in range(8)]     # each run made before its record
    assert sorted(log[:-1]) == [f"trial-{n}" for n in range(8)] and log[-1] == "sweep-x"
    for lane in range(4):                          # a lane keeps its trials' order
        mine = [k for k in log if k.startswith("trial-") and int(k[6:]) % 4 == lane]
        assert mine == [f"trial-{lane}", f"trial-{lane + 4}"]
