"""The Spark backend on a real local[2] session: the Backend contract plus Spark's own promises."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace

import pytest

from backend_contract import BackendContract, cancelled_after, task
from hpsearch.records import COMPLETE, FAILED

pytestmark = [pytest.mark.slow, pytest.mark.spark]


@pytest.fixture
def backend(spark, data):
    from hpsearch.backends.spark import SparkBackend
    return lambda parallelism, retries=2: SparkBackend(parallelism=parallelism, data=data, spark=spark,
                                                       study_name="contract", retries=retries)


class TestSparkBackend(BackendContract):
    def test_workers_are_reused_across_trials(self, backend) -> None:
        with backend(1) as b:
            results = list(b.run([task(i) for i in range(4)]))
        assert all(r.state == COMPLETE for r in results)
        # Python workers kept their state across trials. Two, not one: a freed slot is refilled
        # (dispatch_ahead) before Spark has returned the previous task's worker to its pool.
        assert len({r.worker for r in results}) <= 2

    def test_a_killed_worker_is_retried_and_the_trial_completes(self, backend, tmp_path) -> None:
        marker = str(tmp_path / "died-once")
        with backend(1) as b:
            (result,) = b.run([task(0, net="recipes_spark:once", marker=marker)])
        assert (tmp_path / "died-once").exists()          # the first attempt's worker was killed
        assert result.state == COMPLETE and not result.lost

    def test_a_raising_trial_is_not_retried(self, backend, spark) -> None:
        with backend(1) as b:
            (result,) = b.run([task(0, net="recipes_for_tests:fragile", mode="raise")])
        assert result.state == FAILED and not result.lost
        jobs = _jobs(spark)
        assert sum(j.get("description") == "contract trial 0" for j in jobs if b.tag in j.get("jobTags", [])) == 1

    def test_one_job_per_trial_named_after_it_in_the_ui(self, backend, spark) -> None:
        with backend(2) as b:
            list(b.run([task(i) for i in range(3)]))
        mine = [j for j in _jobs(spark) if b.tag in j.get("jobTags", [])
                and j["description"].startswith("contract trial")]
        assert sorted(j["description"] for j in mine) == [f"contract trial {i}" for i in range(3)]
        assert all(j["numTasks"] == 1 for j in mine)

    def test_cancel_stops_running_trials_within_5s(self, backend) -> None:
        slow = [replace(task(i, net="recipes_spark:sleepy", sleep=60.0)) for i in range(2)]
        with backend(2) as b:
            assert len(cancelled_after(b, slow)) == 2

    def test_first_batch_within_5s_of_the_job_start(self, backend) -> None:
        with backend(1) as b:
            submitted = time.time()
            (result,) = b.run([task(0)])
        assert result.state == COMPLETE
        first_batch_at = result.started + result.first_batch_s
        assert first_batch_at - submitted < 5.0


def test_classic_task_functions_import_neither_pyarrow_nor_pandas(env: dict) -> None:
    """Classic Spark runs the task functions as RDD tasks, rows in and pickled results out: their
    Python workers never import pyarrow, nor the pandas that pyarrow's ``from_pydict`` imports
    (0.4 s of each worker's start); only Connect's ``mapInArrow`` wrapper does."""
    code = ("import pickle, sys\n"
            "from backend_contract import task\n"
            "from hpsearch.backends.spark import _prestart, run_partition\n"
            "assert pickle.loads(next(_prestart(None, iter([0])))) > 0\n"
            "result = pickle.loads(next(run_partition(None, task(0), iter([0]))))\n"
            "print(result.state, [m for m in ('pyarrow', 'pandas') if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split("\n")[-2] == "complete []", out.stdout + out.stderr


def _jobs(spark) -> list[dict]:
    sc = spark.sparkContext
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/jobs"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)
