"""Slot mode of the Spark backend on a real local[2] session: the Backend contract again, with one
long-lived job per slot fed through the channel, plus what slot mode promises of its own."""
from __future__ import annotations

import json
import urllib.request
from dataclasses import replace

import pytest

from backend_contract import BackendContract, cancelled_after, task
from conftest import free_port
from hpsearch.records import COMPLETE, FAILED, PruningChannel, TrialResult

pytestmark = [pytest.mark.slow, pytest.mark.spark]


def never(*_args) -> bool:
    return False


@pytest.fixture
def backend(spark, data):
    from hpsearch.backends.spark import SparkBackend
    from hpsearch.pruning import serve

    class SlotBackend(SparkBackend):
        """A SparkBackend whose channel is served for the ``with`` block, as a sweep does."""

        def __enter__(self):
            self._serving = serve(never, next_trial=self.next_trial, slots=self.parallelism)
            self.check_channel(self._serving.__enter__(), required=False)
            assert self._slot_channel is not None, "slot mode (local executors: no probe)"
            self._prestart_workers()     # warm workers, as a sweep's first trials find them
            return self

        def __exit__(self, *exc):
            super().__exit__(*exc)
            self._serving.__exit__(None, None, None)

    return lambda parallelism, retries=2: SlotBackend(parallelism=parallelism, data=data, spark=spark,
                                                      study_name="contract", retries=retries)


class TestSlotMode(BackendContract):
    def test_one_job_per_slot_and_one_python_worker(self, backend, spark) -> None:
        with backend(1) as b:
            results = list(b.run([task(i) for i in range(4)]))
        assert all(r.state == COMPLETE for r in results)
        assert len({r.worker for r in results}) == 1           # every trial in the slot's one task
        mine = [j["description"] for j in _jobs(spark) if b.tag in j.get("jobTags", [])]
        assert mine.count("contract slot 0") == 1 and not any("trial" in d for d in mine)

    def test_a_killed_worker_is_retried_and_the_trial_completes(self, backend, tmp_path) -> None:
        marker = str(tmp_path / "died-once")
        with backend(1) as b:
            results = list(b.run([task(0, net="recipes_spark:once", marker=marker), task(1)]))
        assert (tmp_path / "died-once").exists()          # the first attempt's worker was killed
        assert [(r.number, r.state, r.lost) for r in sorted(results, key=lambda r: r.number)] == \
            [(0, COMPLETE, False), (1, COMPLETE, False)]

    def test_a_worker_lost_in_the_slots_job_costs_its_trials_a_retry(self, backend, spark,
                                                                      tmp_path) -> None:
        """Both slots start in one job; one's worker dies while the other trains: every trial still
        completes once (in local[N] the job fails and each slot's trial runs again)."""
        marker = str(tmp_path / "died-once")
        tasks = [task(0, net="recipes_spark:sleepy", sleep=3.0),
                 task(1, net="recipes_spark:once", marker=marker), task(2)]
        with backend(2) as b:
            results = list(b.run(tasks))
        assert (tmp_path / "died-once").exists()
        assert sorted((r.number, r.state, r.lost) for r in results) == \
            [(0, COMPLETE, False), (1, COMPLETE, False), (2, COMPLETE, False)]
        mine = [j["description"] for j in _jobs(spark) if b.tag in j.get("jobTags", [])]
        assert "contract slots 0-1" in mine

    def test_a_raising_trial_is_not_retried(self, backend, spark) -> None:
        with backend(1) as b:
            results = list(b.run([task(0, net="recipes_for_tests:fragile", mode="raise"), task(1)]))
        assert [r.state for r in results] == [FAILED, COMPLETE] and not results[0].lost
        mine = [j for j in _jobs(spark) if b.tag in j.get("jobTags", [])]
        assert [j["description"] for j in mine].count("contract slot 0") == 1   # no slot restarted

    def test_cancel_stops_running_trials_within_5s(self, backend) -> None:
        slow = [replace(task(i, net="recipes_spark:sleepy", sleep=60.0)) for i in range(3)]
        with backend(2) as b:
            results = cancelled_after(b, slow)
        assert sorted(r.number for r in results) == [0, 1]     # trial 2 never started


def test_unreachable_channel_falls_back_to_one_job_per_trial(spark, data) -> None:
    """A sweep without pruning whose executors cannot reach the driver still runs (job mode)."""
    from hpsearch.backends.spark import SparkBackend
    from hpsearch.errors import BackendError
    nobody = PruningChannel("127.0.0.1", free_port(), "x")      # nothing listens there
    with SparkBackend(parallelism=1, data=data, spark=spark, study_name="fallback") as b:
        b.check_channel(nobody, required=False)
        assert b._slot_channel is None
        (result,) = b.run([task(0)])
        assert result.state == COMPLETE
        with pytest.raises(BackendError, match="cannot reach"):
            b.check_channel(nobody, required=True)


def test_tasks_and_results_cross_as_json() -> None:
    from hpsearch.backends.spark_slots import result_from_json, result_json, task_from_json, task_json
    channel = PruningChannel("127.0.0.1", 1, "s3cret")
    t = replace(task(3), per_layer=(("units", "depth", "hidden"),), objectives=("a", "b"), channel=channel)
    wire = json.loads(json.dumps(task_json(t)))
    assert "s3cret" not in json.dumps(wire)
    assert task_from_json(wire, channel) == t
    assert task_from_json(json.loads(json.dumps(task_json(replace(t, channel=None)))), channel).channel is None
    r = TrialResult(3, 3, COMPLETE, 0.5, ({"epoch": 1.0, "val_loss": 0.5},), seconds=1.5, weights=b"\0\1w")
    assert result_from_json(json.loads(json.dumps(result_json(r)))) == r


def _jobs(spark) -> list[dict]:
    sc = spark.sparkContext
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/jobs"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)
