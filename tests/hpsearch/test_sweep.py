"""End-to-end sweeps through the CLI (subprocesses, local backend, real SQLite Optuna + MLflow)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from hpsearch.storage import default_storage

from conftest import (STUDIES, TINY, lenet_dict, mlflow_runs, run_cli, signal_while_a_trial_runs,
                      stored_study, sweep_runs, trial_runs, write_study)


@pytest.mark.slow
def test_lenet_sweep_mlflow_layout_budget_and_extend(tmp_path: Path, env: dict) -> None:
    spec = tmp_path / "lenet.yaml"
    spec.write_text((STUDIES / "lenet.yaml").read_text())
    args = ["run", str(spec), "--backend", "local", "--trials", "6", *TINY]

    proc = run_cli(args, env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "mlflow ui --backend-store-uri sqlite:///" in proc.stdout
    assert "top " in proc.stdout

    runs = mlflow_runs(tmp_path, "lenet")
    parents, children = sweep_runs(runs), trial_runs(runs)
    assert len(parents) == 1 and len(children) == 6
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert {"sampler", "pruner", "budget.trials", "best.lr"} <= set(parent.data.params)
    assert "best_value" in parent.data.metrics
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert {"lr", "batch_size", "hidden", "momentum", "epochs"} <= set(run.data.params)
        history = client.get_metric_history(run.info.run_id, "val_loss")
        steps = sorted(m.step for m in history)
        assert steps == list(range(1, len(steps) + 1)) and steps
        state = run.data.tags["hpsearch.state"]
        assert run.info.status == {"complete": "FINISHED", "pruned": "KILLED"}[state]
        assert run.data.metrics["epochs"] == len(steps)
        if state == "pruned":
            assert len(steps) < 2

    best_run = parent.data.tags["hpsearch.best_run_id"]
    local = client.download_artifacts(best_run, "model/model.npz", str(tmp_path / "dl"))
    import nets
    model = nets.load(local)
    assert model.params.size > 1000

    show = run_cli(["show", str(spec), "--json"], env, tmp_path)
    trials = json.loads(show.stdout)["trials"]
    assert len(trials) == 6 and all(t["epochs"] >= 1 for t in trials)
    best = json.loads(run_cli(["best", str(spec), "--json"], env, tmp_path).stdout)
    assert best["mlflow_run_id"] == best_run

    again = run_cli(args, env, tmp_path)
    assert again.returncode == 0, again.stderr
    assert "budget met: 6 of 6" in again.stdout
    assert "MLflow: mlflow ui --backend-store-uri" in again.stdout     # where to look, on a rerun too
    assert len(stored_study(tmp_path).trials) == 6
    assert len(mlflow_runs(tmp_path, "lenet")) == 7

    more = run_cli([*args, "--extend", "3"], env, tmp_path)
    assert more.returncode == 0, more.stderr
    assert len(stored_study(tmp_path).trials) == 9
    runs = mlflow_runs(tmp_path, "lenet")
    assert len(trial_runs(runs)) == 9 and len(sweep_runs(runs)) == 2


@pytest.mark.slow
def test_sigkilled_driver_resumes_and_finishes_its_budget(tmp_path: Path, env: dict) -> None:
    spec = write_study(tmp_path, "resume", lenet_dict(pruner="none", budget={"trials": 8}))
    args = [sys.executable, "-m", "hpsearch.cli", "run", str(spec), "--set", "data.limit=1500",
            "--set", "fixed.epochs=3"]
    proc = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    done = 0
    deadline = time.monotonic() + 180
    while done < 2 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, "driver ended before it could be killed"
        done += line.startswith("trial ")
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)  # the driver only: its workers see EOF and exit
    proc.wait(timeout=30)
    proc.stdout.close()

    study = stored_study(tmp_path, "resume")
    running = [t for t in study.trials if t.state.name == "RUNNING"]
    finished_before = {t.number for t in study.trials if t.state.is_finished()}
    assert running, [t.state for t in study.trials]
    assert len(finished_before) < 8

    again = run_cli(args[3:], env, tmp_path)
    assert again.returncode == 0, again.stderr + again.stdout
    assert "re-queued" in again.stdout

    trials = stored_study(tmp_path, "resume").trials
    requeued = [t for t in trials if t.user_attrs.get("hpsearch_requeued")]
    verdicts = [t for t in trials if t.state.is_finished() and not t.user_attrs.get("hpsearch_requeued")]
    assert len(verdicts) == 8
    assert {t.number for t in requeued} == {t.number for t in running}
    assert all(t.state.name == "FAIL" and "re-queued" in t.user_attrs["fail_reason"] for t in requeued
               if len(t.params) == 4)  # (a trial killed while being asked had fewer params)
    later = [t.params for t in trials if t.number > max(t.number for t in running)]
    assert all(t.params in later for t in requeued if len(t.params) == 4)  # the same params ran again

    children = trial_runs(mlflow_runs(tmp_path, "resume"))
    numbers = [int(r.data.tags["hpsearch.trial_number"]) for r in children]
    assert len(numbers) == len(set(numbers))  # no trial has two runs
    assert set(numbers) == {t.number for t in trials if t.state.is_finished()}
    parents = sweep_runs(mlflow_runs(tmp_path, "resume"))
    assert sorted(r.info.status for r in parents) == ["FAILED", "FINISHED"]  # the killed sweep: FAILED
    parent_ids = {r.info.run_id for r in parents}
    for run in children:
        assert run.info.status in ("FINISHED", "FAILED")
        assert run.data.tags["mlflow.parentRunId"] in parent_ids


@pytest.mark.slow
def test_failing_trials_are_failed_with_reason_and_the_sweep_goes_on(tmp_path: Path, env: dict) -> None:
    data = lenet_dict(net="recipes_for_tests:fragile", pruner="none", sampler="grid",
                      budget={"trials": 8})
    data["search_space"] = {"mode": {"choices": ["ok", "raise", "nan", "die"]},
                            "batch_size": {"choices": [16, 32]}}
    spec = write_study(tmp_path, "fragile", data)
    proc = run_cli(["run", str(spec), "--set", "data.limit=300", "--set", "fixed.epochs=1",
                    "--set", "fixed.lr=0.05"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr

    trials = stored_study(tmp_path, "fragile").trials
    assert len(trials) == 8
    by_mode: dict[str, list] = {}
    for t in trials:
        by_mode.setdefault(t.params["mode"], []).append(t)
    assert all(t.state.name == "COMPLETE" for t in by_mode["ok"])
    assert all(t.state.name == "FAIL" for t in by_mode["raise"] + by_mode["nan"] + by_mode["die"])
    assert all(t.user_attrs["fail_reason"] == "worker process died (signal 9)" for t in by_mode["die"])
    assert proc.stdout.count("retrying it") == 2  # a lost worker is retried once
    assert all("RuntimeError: fragile net refuses to build" in t.user_attrs["fail_reason"]
               for t in by_mode["raise"])
    assert all(t.user_attrs["fail_reason"].startswith("diverged: loss became nan")
               for t in by_mode["nan"])

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    for run in trial_runs(mlflow_runs(tmp_path, "fragile")):
        mode = run.data.params["mode"]
        assert run.info.status == ("FINISHED" if mode == "ok" else "FAILED")
        if mode in ("raise", "nan"):
            assert run.data.tags["hpsearch.fail_reason"]
            assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["traceback.txt"]


@pytest.mark.slow
def test_hyperband_prunes_a_third_and_saves_epochs(tmp_path: Path, env: dict) -> None:
    spec = tmp_path / "lenet.yaml"
    spec.write_text((STUDIES / "lenet.yaml").read_text())  # as shipped: 12 trials, 6 epochs, hyperband
    proc = run_cli(["run", str(spec), "--backend", "local", "--parallelism", "2"], env, tmp_path,
                   timeout=600)
    assert proc.returncode == 0, proc.stderr
    trials = stored_study(tmp_path).trials
    assert len(trials) == 12
    pruned = sum(t.state.name == "PRUNED" for t in trials)
    epochs = sum(t.user_attrs["epochs"] for t in trials)
    print(f"hyperband: {pruned}/12 pruned, {epochs}/72 epochs ({epochs / 72:.0%})")
    assert pruned >= 4
    assert epochs <= 0.6 * 72


@pytest.mark.slow
def test_sigterm_fails_and_requeues_running_trials(tmp_path: Path, env: dict) -> None:
    spec = write_study(tmp_path, "term", lenet_dict(pruner="none", budget={"trials": 6}))
    # trials of about 3 s: the signal comes while one has just started
    args = [sys.executable, "-m", "hpsearch.cli", "run", str(spec), "--set", "data.limit=1500",
            "--set", "fixed.epochs=30"]
    proc = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    signal_while_a_trial_runs(proc, signal.SIGTERM, default_storage(tmp_path, "term"), "term")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "run the same command again to resume" in err

    trials = stored_study(tmp_path, "term").trials
    stopped = [t for t in trials if t.user_attrs.get("hpsearch_requeued")]
    assert stopped and all(t.state.name == "FAIL" for t in stopped)
    assert sum(t.state.name == "WAITING" for t in trials) == len(stopped)
    runs = mlflow_runs(tmp_path, "term")
    assert sweep_runs(runs)[0].info.status == "KILLED"
    assert all(r.info.status in ("FINISHED", "FAILED") for r in trial_runs(runs))

    again = run_cli(args[3:], env, tmp_path)
    assert again.returncode == 0, again.stderr
    trials = stored_study(tmp_path, "term").trials
    assert sum(t.state.is_finished() and not t.user_attrs.get("hpsearch_requeued") for t in trials) == 6


def test_verbose_prints_the_phases_from_the_process_start(tmp_path: Path, env: dict) -> None:
    import re
    spec = write_study(tmp_path, "phases", lenet_dict(budget={"trials": 2}, fixed={"epochs": 2}))
    t0 = time.perf_counter()
    proc = run_cli(["run", str(spec), "--verbose"], env, tmp_path)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    at = {m.group(2): float(m.group(1)) for m in
          re.finditer(r"^phase\s+([\d.]+) s\s+(.+?)(?: \(took [\d.]+ s\))?$", proc.stderr, re.M)}
    steps = ["sweep started", "data", "MLflow checked", "backend ready", "study open",
             "pruning channel checked", "MLflow parent run started", "first trial dispatched",
             "first trial started (on its worker)", "last trial back", "plots drawn", "MLflow written",
             "backend closed"]
    assert set(steps) <= set(at), proc.stderr
    # counted from the process start: the imports and the spec come before the sweep
    assert 0 < at["sweep started"] <= at["data"] <= at["study open"] < at["first trial dispatched"]
    assert at["first trial dispatched"] <= at["first trial started (on its worker)"] < wall
    # the end: every trial back, then MLflow's last records (the plots among them), then the backend
    assert at["first trial started (on its worker)"] < at["last trial back"] <= at["plots drawn"]
    assert at["plots drawn"] <= at["MLflow written"] <= at["backend closed"] < wall
