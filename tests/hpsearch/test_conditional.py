"""Conditional and per-layer search spaces: the shipped studies/mlp.yaml swept on Spark (every trial's
Optuna and MLflow params are exactly its active ones, and the net got the list), and a driver that
died mid-ask re-queues only whole draws."""
from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient

import hpsearch
from conftest import STUDIES, mlflow_runs, write_study
from hpsearch.space import Conditional, active_names, is_active
from hpsearch.storage import REQUEUED, open_storage, requeue_orphans

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _mlp(**changes) -> dict:
    data = yaml.safe_load((STUDIES / "mlp.yaml").read_text())
    data.update(changes)
    return data


def _assert_active_exactly(params: dict) -> None:
    """The rules of studies/mlp.yaml, spelled out: units_1..units_<layers>, momentum iff sgd, lr_decay
    iff adagrad, and nothing else."""
    expected = {"layers", "optimizer", "lr", "batch_size"}
    expected |= {f"units_{i}" for i in range(1, params["layers"] + 1)}
    expected |= {"momentum"} if params["optimizer"] == "sgd" else set()
    expected |= {"lr_decay"} if params["optimizer"] == "adagrad" else set()
    assert set(params) == expected, params


@pytest.mark.slow
@pytest.mark.spark
def test_mlp_study_on_spark_logs_exactly_the_active_params(tmp_path: Path, spark, monkeypatch) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    data = _mlp(data={"path": None, "limit": 300}, fixed={"epochs": 1}, budget={"trials": 10},
                execution={"backend": "spark", "parallelism": 2})
    data["sampler"]["n_startup_trials"] = 4
    spec = hpsearch.load_spec(write_study(tmp_path, "mlp", data))
    summary = hpsearch.run_study(spec, spark=spark)
    assert summary.counts["complete"] + summary.counts["pruned"] == 10, summary
    trials = optuna.load_study(study_name="mlp", storage=open_storage(spec.storage, create=True)).trials
    assert len({len(t.params) for t in trials}) > 1                      # the space really is conditional
    runs = {int(r.data.tags["hpsearch.trial_number"]): r for r in mlflow_runs(tmp_path, "mlp")
            if r.data.tags.get("hpsearch.kind") == "trial"}
    assert sorted(runs) == [t.number for t in trials]
    for t in trials:
        _assert_active_exactly(t.params)
        logged = runs[t.number].data.params
        assert set(logged) == set(t.params) | set(spec.fixed)             # absent, not zero or null
        assert all(logged[k] == str(v) for k, v in t.params.items())
    best = min(trials, key=lambda t: (-t.value if t.value is not None else 1e9, t.number))
    model_file = MlflowClient(uri).download_artifacts(runs[best.number].info.run_id, "model/model.npz",
                                                     str(tmp_path))
    import nets
    widths = [layer.n_out for layer in nets.load(model_file).layers]
    assert widths == [best.params[f"units_{i}"] for i in range(1, best.params["layers"] + 1)] + [10]


def test_a_dead_drivers_half_drawn_conditional_trial_is_not_requeued(tmp_path: Path) -> None:
    spec = hpsearch.spec_from_dict(_mlp(execution={"backend": "local"}), base_dir=tmp_path)
    space = Conditional(spec.space)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s")
    whole = study.ask()
    drawn = space(whole)                                   # every active param of its draw
    half = study.ask()
    half.suggest_int("layers", 3, 3)                       # died before units_1..3 were drawn
    assert active_names(spec.space, drawn) == set(drawn) and not space.complete(half.params)
    assert requeue_orphans(study, None, complete=space.complete) == 2
    trials = study.trials[:2]
    assert all(t.state.name == "FAIL" and t.user_attrs[REQUEUED] for t in trials)
    assert "nothing re-queued" in trials[1].user_attrs["fail_reason"]
    queued = [t for t in study.get_trials() if t.state.name == "WAITING"]
    assert len(queued) == 1 and queued[0].system_attrs["fixed_params"] == drawn
    again = space(study.ask())                             # the queued draw comes back whole
    assert again == drawn
    assert not any(is_active(p, {}) for p in spec.space if p.per_layer or p.when)
