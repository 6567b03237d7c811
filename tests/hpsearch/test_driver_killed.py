"""The driver SIGKILLed right after a trial's verdict reached the Optuna store (before anything after
it, MLflow included): the rerun holds that trial in the store and in MLflow, whole and once."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from hpsearch.storage import default_storage, load_existing_study

from conftest import lenet_dict, mlflow_runs, run_cli, write_study

# runs the study with Optuna's tell wrapped: the first COMPLETE verdict is stored, then the process
# dies on the spot (SIGKILL: no finally, no atexit, no flush)
KILLER = """
import os, signal, sys
import optuna
from optuna.trial import TrialState
import hpsearch

tell = optuna.Study.tell

def tell_then_die(self, trial, values=None, state=None, **kw):
    out = tell(self, trial, values, state, **kw)
    if state in (None, TrialState.COMPLETE) and values is not None:
        os.kill(os.getpid(), signal.SIGKILL)
    return out

optuna.Study.tell = tell_then_die
hpsearch.run_study(hpsearch.load_spec(sys.argv[1], {"data.limit": 600, "fixed.epochs": 3}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local"])
def test_driver_killed_right_after_a_verdict_loses_nothing(tmp_path: Path, env: dict, backend: str) -> None:
    data = lenet_dict(pruner="none", budget={"trials": 4})
    data["execution"]["backend"] = backend
    spec = write_study(tmp_path, "killed", data)
    sets = ["data.limit=600", "fixed.epochs=3"]
    proc = subprocess.run([sys.executable, "-c", KILLER, str(spec)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == -9, proc.stderr[-2000:]

    storage = default_storage(tmp_path, "killed")
    told = [t for t in load_existing_study(storage, "killed").trials if t.state.name == "COMPLETE"]
    assert len(told) == 1                    # the verdict was stored, then the driver died
    number = told[0].number

    again = run_cli(["run", str(spec), *[a for s in sets for a in ("--set", s)]], env, tmp_path)
    assert again.returncode == 0, again.stderr + again.stdout

    trials = load_existing_study(storage, "killed").trials
    verdicts = [t for t in trials if t.state.is_finished() and not t.user_attrs.get("hpsearch_requeued")]
    assert len(verdicts) == 4 and number in {t.number for t in verdicts}
    children = [r for r in mlflow_runs(tmp_path, "killed") if r.data.tags.get("hpsearch.kind") == "trial"]
    numbers = sorted(int(r.data.tags["hpsearch.trial_number"]) for r in children)
    assert numbers == sorted(t.number for t in trials if t.state.is_finished())   # one run each
    (run,) = [r for r in children if int(r.data.tags["hpsearch.trial_number"]) == number]
    assert run.info.status == "FINISHED"
    assert set(told[0].params) <= set(run.data.params)
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    for metric in ("loss", "val_loss", "val_top1"):
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, metric))
        assert steps == [1, 2, 3], (metric, steps)       # every epoch's metrics, not just the objective
