"""The Optuna SQLite store locked by another process for 10 s in the middle of a sweep (issue 15,
acceptance 4, second half): the driver waits (SQLite's busy timeout, 60 s in hpsearch.storage) and the
sweep completes with every trial recorded once, in Optuna and in MLflow."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import lenet_dict, mlflow_runs, verdicts_in, wait_for_verdicts, write_study

pytestmark = pytest.mark.slow


def test_sweep_survives_the_optuna_store_locked_for_10_s(tmp_path: Path, env: dict) -> None:
    db = tmp_path / "locked.optuna.db"    # a SQLite store (the default is a journal file)
    spec = write_study(tmp_path, "locked", lenet_dict(budget={"trials": 6}, storage=f"sqlite:///{db}",
                                                      execution={"backend": "local", "parallelism": 1}))
    sweep = subprocess.Popen([sys.executable, "-m", "hpsearch.cli", "run", str(spec), "--set", "data.limit=300",
                              "--set", "fixed.epochs=2"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_for_verdicts(sweep, db, 2)
        lock = sqlite3.connect(str(db), timeout=60, isolation_level=None)   # this test's process
        lock.execute("BEGIN EXCLUSIVE")
        try:
            before = verdicts_in(db)
            time.sleep(10)
            assert verdicts_in(db) == before          # the driver could not write for those 10 s ...
            assert sweep.poll() is None             # ... and it did not give up
        finally:
            lock.execute("COMMIT")
            lock.close()
        out, err = sweep.communicate(timeout=300)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
    assert sweep.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    import optuna
    study = optuna.load_study(study_name="locked", storage=f"sqlite:///{db}")
    states = [t.state.name for t in study.get_trials()]
    assert len(states) == 6 and all(s in ("COMPLETE", "PRUNED") for s in states), states
    runs = mlflow_runs(tmp_path, "locked")
    trials = sorted(int(r.data.tags["hpsearch.trial_number"]) for r in runs
                    if r.data.tags.get("hpsearch.kind") == "trial")
    assert trials == list(range(6))                          # one run per trial, none twice
    for r in runs:
        if r.data.tags.get("hpsearch.kind") == "trial":
            assert "val_loss" in r.data.metrics and "loss" in r.data.metrics
