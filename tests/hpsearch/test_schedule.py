"""Scheduled sweeps: the Scheduler loop on a fake clock, the cron check, and `hpsearch schedule`
end to end (a 6-field cron with seconds, so ticks come every second)."""
from __future__ import annotations

import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

import hpsearch
from conftest import (REPO, lenet_dict, mlflow_runs, run_cli, signal_while_a_trial_runs, sweep_runs,
                      write_study)
from hpsearch.cli import cli
from hpsearch.schedule import DONE, FAILED, SKIPPED, Scheduler, lock_holder
from hpsearch.storage import open_storage
from hpsearch.study import SweepSummary

EVERY_SECOND = "* * * * * *"


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, 12, 0, 0, 300000, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _summary(spec: hpsearch.StudySpec, added: int) -> SweepSummary:
    return SweepSummary(study=spec.name, storage=spec.storage, tracking_uri=None, parent_run_id=None,
                        added=added, counts={"complete": added, "pruned": 0, "failed": 0},
                        budget_met=False, best=None, top=(), seconds=2.5, metric="val_loss")


def test_scheduler_skips_ticks_during_a_sweep_goes_on_after_a_failure_and_counts_sweeps(
        tmp_path: Path) -> None:
    spec = hpsearch.spec_from_dict(lenet_dict(), name="fake", base_dir=tmp_path)
    clock, calls, lines = FakeClock(), [], []

    def run(spec: hpsearch.StudySpec, *, extend: int) -> SweepSummary:
        calls.append((spec.schedule, extend))
        clock.sleep(2.5)                                  # the sweep outlasts two ticks
        if len(calls) == 2:
            raise RuntimeError("the tracking server is down")
        return _summary(spec, extend)

    sched = Scheduler(spec, cron="* * * * * */2", trials_per_run=2, max_runs=3, log=lines.append,
                      clock=clock, sleep=clock.sleep, run=run)
    ticks = sched.run_forever()

    assert [t.status for t in ticks if t.status != SKIPPED] == [DONE, FAILED, DONE, DONE]
    assert sched.finished_runs == 3 and len(calls) == 4
    assert all(extend == 2 for _, extend in calls)
    assert [s.tick for s, _ in calls] == ["2025-01-01T12:00:02+00:00", "2025-01-01T12:00:06+00:00",
                                          "2025-01-01T12:00:10+00:00", "2025-01-01T12:00:14+00:00"]
    assert all(s.cron == "* * * * * */2" and s.trials_per_run == 2 for s, _ in calls)
    skipped = [t for t in ticks if t.status == SKIPPED]
    assert [t.time.second for t in skipped] == [4, 8, 12]   # one tick came during each sweep
    text = "\n".join(lines)
    assert "sweep FAILED: RuntimeError: the tracking server is down; the schedule goes on" in text
    assert "skipped 1 tick(s) (2025-01-01T12:00:04+00:00): the sweep of tick" in text
    assert text.count("sweep done: 2 trial(s)") == 3


def test_a_tick_is_skipped_while_another_process_runs_the_study(tmp_path: Path) -> None:
    spec = hpsearch.spec_from_dict(lenet_dict(), name="busy", base_dir=tmp_path)
    study = optuna.create_study(study_name="busy", storage=open_storage(spec.storage, create=True))
    other = subprocess.Popen(["sleep", "60"])             # stands in for `hpsearch run` elsewhere
    try:
        study.set_user_attr("hpsearch_driver", {"host": socket.gethostname(), "pid": other.pid})
        calls, lines = [], []
        sched = Scheduler(spec, cron=EVERY_SECOND, trials_per_run=1, log=lines.append,
                          run=lambda spec, extend: calls.append(extend) or _summary(spec, extend))
        assert lock_holder(spec) == other.pid
        tick = sched.run_tick(datetime.now().astimezone())
        assert tick.status == SKIPPED and not calls
        assert f"skipped: study 'busy' is being run by process {other.pid}" in lines[-1]
    finally:
        other.kill()
        other.wait()
    assert lock_holder(spec) is None                      # a dead holder's lock is stale
    assert sched.run_tick(datetime.now().astimezone()).status == DONE and calls == [1]


@pytest.mark.parametrize("args,message", [
    (["--cron", "61 * * * *"], "schedule.cron: '61 * * * *' is not a cron expression"),
    (["--cron", "daily"], "schedule.cron: 'daily' is not a cron expression"),
    (["--cron", "* * * * *", "--trials-per-run", "0"], "schedule.trials_per_run: must be >= 1; got 0 "
                                                       "(from --trials-per-run 0)"),
    ([], "schedule.cron: no cron expression is set; give --cron EXPR"),
])
def test_bad_schedule_options_are_one_error_line(tmp_path: Path, args: list, message: str) -> None:
    spec = write_study(tmp_path, "lenet", lenet_dict())
    result = CliRunner().invoke(cli, ["schedule", str(spec), *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"Error: {spec}") and result.stderr.count("\n") == 1
    assert message in result.stderr


def test_a_bad_cron_in_the_file_names_its_line(tmp_path: Path) -> None:
    spec = write_study(tmp_path, "lenet", lenet_dict(schedule={"cron": "*/5 * * *", "max_runs": 2}))
    result = CliRunner().invoke(cli, ["validate", str(spec)])
    assert result.exit_code == 2
    assert "schedule.cron: '*/5 * * *' is not a cron expression" in result.stderr
    assert f"{spec}:" in result.stderr and "a 6th field is seconds" in result.stderr


# --------------------------------------------------------------------------- end to end

class Lines:
    """A subprocess's stdout, line by line, read on a thread (so the pipe never fills)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.q: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.q.put(line)
        self.q.put(None)

    def wait_for(self, text: str, timeout: float = 120) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.q.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r}; got:\n{''.join(self.seen)}")

    def rest(self) -> str:
        while (line := self.q.get(timeout=30)) is not None:
            self.seen.append(line)
        return "".join(self.seen)


def _start(args: list[str], env: dict, cwd: Path) -> tuple[subprocess.Popen, Lines]:
    env = {**env, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "hpsearch.cli", *args], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, Lines(proc)


def _is_png(data: bytes) -> bool:
    import io

    from PIL import Image
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return False
    image = Image.open(io.BytesIO(data))
    image.verify()
    return image.size[0] > 100 and image.size[1] > 100


@pytest.mark.slow
def test_schedule_three_sweeps_of_two_trials_skips_and_survives_a_failed_sweep(
        tmp_path: Path, env: dict) -> None:
    mnist = tmp_path / "mnist"
    shutil.copytree(REPO / "nets" / "data" / "mnist_sample", mnist)
    images = mnist / "train-images-idx3-ubyte.gz"
    good = images.read_bytes()
    images.write_bytes(b"not MNIST")                      # the first sweep that runs fails on it
    spec_path = write_study(tmp_path, "lenet", lenet_dict(
        pruner="median", data={"path": str(mnist), "limit": 300}, fixed={"epochs": 1}))
    spec = hpsearch.load_spec(spec_path)
    study = optuna.create_study(study_name="lenet", storage=open_storage(spec.storage, create=True))
    other = subprocess.Popen(["sleep", "120"])             # another driver holds the study at first
    study.set_user_attr("hpsearch_driver", {"host": socket.gethostname(), "pid": other.pid})

    proc, lines = _start(["schedule", str(spec_path), "--cron", EVERY_SECOND, "--trials-per-run", "2",
                          "--max-runs", "3", "--parallelism", "2"], env, tmp_path)
    try:
        lines.wait_for(f"skipped: study 'lenet' is being run by process {other.pid}")
        other.kill()
        other.wait()
        lines.wait_for("sweep FAILED: ")
        images.write_bytes(good)
        lines.wait_for("sweep of study 'lenet'")
        held = None
        for _ in range(200):                              # the sweep takes the driver lock
            held = lock_holder(spec)
            if held is not None:
                break
            time.sleep(0.05)
        assert held == proc.pid
        assert proc.wait(timeout=240) == 0, proc.stderr.read()
    finally:
        other.kill()
        proc.kill()
    out = lines.rest()
    assert "cannot read" in out and "the schedule goes on" in out
    assert "was still running" in out                     # ticks that came during a sweep
    assert out.count("sweep done: 2 trial(s)") == 3

    trials = optuna.load_study(study_name="lenet", storage=open_storage(spec.storage, create=True)).trials
    assert len(trials) == 6 and all(t.state.name == "COMPLETE" for t in trials)
    runs = mlflow_runs(tmp_path, "lenet")
    parents = sweep_runs(runs)
    children = [r for r in runs if r.data.tags.get("hpsearch.kind") == "trial"]
    assert len(parents) == 3 and len(children) == 6
    assert all(p.info.status == "FINISHED" for p in parents)
    assert {p.data.tags["hpsearch.schedule"] for p in parents} == {EVERY_SECOND}
    assert len({p.data.tags["hpsearch.tick"] for p in parents}) == 3
    assert sorted(c.data.tags["mlflow.parentRunId"] for c in children) == sorted(
        [p.info.run_id for p in parents] * 2)

    from mlflow import MlflowClient
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    for parent in parents:                                # acceptance 4: the plots, as PNG
        pngs = sorted(a.path for a in client.list_artifacts(parent.info.run_id, "plots"))
        assert pngs == ["plots/intermediate_values.png", "plots/optimization_history.png",
                        "plots/parallel_coordinate.png", "plots/param_importances.png"]
        for path in pngs:
            local = client.download_artifacts(parent.info.run_id, path, str(tmp_path / "dl"))
            assert _is_png(Path(local).read_bytes()), path


@pytest.mark.slow
def test_sigterm_inside_a_scheduled_sweep_exits_0_and_leaves_no_trial_running(
        tmp_path: Path, env: dict) -> None:
    spec_path = write_study(tmp_path, "term", lenet_dict(pruner="none", budget={"trials": 50}))
    proc, lines = _start(["schedule", str(spec_path), "--cron", EVERY_SECOND, "--trials-per-run", "6",
                          "--set", "data.limit=1500", "--set", "fixed.epochs=30"], env, tmp_path)
    try:
        spec = hpsearch.load_spec(spec_path)
        signal_while_a_trial_runs(proc, signal.SIGTERM, spec.storage, "term")   # trials of about 3 s
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    finally:
        proc.kill()
    assert "stopped: 0 sweep(s) finished" in lines.rest()

    trials = optuna.load_study(study_name="term", storage=open_storage(spec.storage, create=True)).trials
    assert not [t for t in trials if t.state.name == "RUNNING"]
    assert sum(t.state.name == "COMPLETE" for t in trials) >= 1   # finished trials are kept
    stopped = [t for t in trials if t.user_attrs.get("hpsearch_requeued")]
    assert stopped and all(t.state.name == "FAIL" for t in stopped)
    assert sum(t.state.name == "WAITING" for t in trials) == len(stopped)   # re-queued
    parents = sweep_runs(mlflow_runs(tmp_path, "term"))
    assert [p.info.status for p in parents] == ["KILLED"]
    assert parents[0].data.tags["hpsearch.schedule"] == EVERY_SECOND


@pytest.mark.slow
def test_once_runs_one_tagged_sweep_for_an_outside_scheduler(tmp_path: Path, env: dict) -> None:
    spec_path = write_study(tmp_path, "once", lenet_dict(pruner="none", schedule={"trials_per_run": 1}))
    proc = run_cli(["schedule", str(spec_path), "--once", "--set", "data.limit=300",
                    "--set", "fixed.epochs=1"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "sweep done: 1 trial(s)" in proc.stdout
    parents = sweep_runs(mlflow_runs(tmp_path, "once"))
    assert len(parents) == 1 and parents[0].data.tags["hpsearch.schedule"] == "once"
    assert datetime.fromisoformat(parents[0].data.tags["hpsearch.tick"]).tzinfo is not None
