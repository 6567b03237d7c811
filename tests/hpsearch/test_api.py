"""The Python API: load_spec / spec_from_dict, run_study with a define-by-run space and a custom
net, best_trial; the registries; and the driver's guard against two drivers on one study."""
from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest
import yaml

import hpsearch
from hpsearch.errors import SpecError
from conftest import STUDIES, lenet_dict
from hpsearch.errors import StorageError
from hpsearch.samplers import PRUNERS, SAMPLERS, make_pruner, make_sampler
from hpsearch.space import distributions
from hpsearch.storage import open_storage, store_file


def test_public_api_is_small() -> None:
    assert 10 <= len(hpsearch.__all__) <= 14
    assert all(hasattr(hpsearch, name) for name in hpsearch.__all__)


@pytest.mark.parametrize("path", sorted(STUDIES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_studies_validate(path: Path) -> None:
    spec = hpsearch.load_spec(path)
    assert spec.name == path.stem and store_file(spec.storage).parent == path.parent
    assert store_file(spec.storage).name in (f"{path.stem}.optuna.journal", f"{path.stem}.optuna.db")
    assert spec.summary()["net"] == spec.net
    if spec.net in ("lenet", "autoencoder", "mlp"):
        spec.check_runnable()
    else:
        with pytest.raises(hpsearch.SpecError, match="data.path"):
            spec.check_runnable()


def test_overrides_and_floats_in_exponent_form(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("net: lenet\nsearch_space:\n  lr: {type: float, low: 1e-4, high: 1e-1, log: true}\n"
                    "objective: {metric: val_top1}\nbudget: {timeout: 1h30m}\n")
    spec = hpsearch.load_spec(path, overrides={"fixed.epochs": 3, "sampler": "random"})
    assert spec.space[0].low == 1e-4 and spec.objective.direction == "maximize"
    assert spec.fixed == {"epochs": 3} and spec.sampler.name == "random"
    assert spec.budget.timeout_s == 5400.0 and spec.epochs == 3


def _space(trial: optuna.Trial) -> dict:
    return {"lr": trial.suggest_float("lr", 0.01, 0.2, log=True),
            "batch_size": trial.suggest_categorical("batch_size", [16, 32]), "mode": "ok"}


@pytest.mark.slow
def test_define_by_run_space_with_a_custom_net(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    data = lenet_dict(net="recipes_for_tests:make_fragile", pruner={"name": "median"},
                      budget={"trials": 3}, data={"limit": 200}, fixed={"epochs": 1})
    del data["search_space"]         # the function is the space
    spec = hpsearch.spec_from_dict(data, name="custom", base_dir=tmp_path, define_by_run=True)
    import logging

    import mlflow  # noqa: F401 - it sets its logger's level on import
    levels = {name: logging.getLogger(name).level for name in ("optuna", "mlflow", "alembic")}
    summary = hpsearch.run_study(spec, space=_space)
    assert {name: logging.getLogger(name).level for name in levels} == levels   # quiet only during it
    assert summary.added == 3 and summary.counts["complete"] >= 1
    trials = hpsearch.trial_summaries(spec)
    assert [set(t.params) for t in trials] == [{"lr", "batch_size"}] * 3
    best = hpsearch.best_trial(spec)
    assert best.state == "COMPLETE" and best.run_id
    assert summary.best.number == best.number


def test_define_by_run_spec_may_leave_out_search_space(tmp_path: Path) -> None:
    data = lenet_dict()
    del data["search_space"]
    with pytest.raises(SpecError, match="search_space"):
        hpsearch.spec_from_dict(data, base_dir=tmp_path)
    spec = hpsearch.spec_from_dict(data, base_dir=tmp_path, define_by_run=True)
    assert spec.space == ()
    with pytest.raises(SpecError, match="pass space=") as err:
        hpsearch.run_study(spec)
    assert err.value.key == "search_space"
    with pytest.raises(SpecError, match="grid needs"):
        hpsearch.spec_from_dict({**data, "sampler": {"name": "grid"}}, base_dir=tmp_path, define_by_run=True)
    # a search_space that is there is still validated
    bad = lenet_dict(search_space={"lr": {"type": "float", "low": 1, "high": 0}})
    with pytest.raises(SpecError, match="search_space.lr"):
        hpsearch.spec_from_dict(bad, base_dir=tmp_path, define_by_run=True)
    assert list(tmp_path.iterdir()) == []


def test_a_running_driver_is_not_disturbed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    spec = hpsearch.spec_from_dict(lenet_dict(), name="locked", base_dir=tmp_path)
    study = optuna.create_study(study_name="locked", storage=open_storage(spec.storage, create=True))
    study.set_user_attr("hpsearch_driver", {"host": os.uname().nodename, "pid": os.getppid()})
    with pytest.raises(StorageError, match="is being run by process"):
        hpsearch.run_study(spec)
    assert not (tmp_path / "mlflow.db").exists()
    storage = open_storage(spec.storage, create=False)
    assert optuna.load_study(study_name="locked", storage=storage).user_attrs["hpsearch_driver"]


def test_show_before_any_run_is_a_clear_error(tmp_path: Path) -> None:
    spec = hpsearch.spec_from_dict(lenet_dict(), name="never", base_dir=tmp_path)
    with pytest.raises(StorageError, match="no study store"):
        hpsearch.best_trial(spec)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_is_seedable_and_samples_the_space(name: str) -> None:
    space = {"batch_size": {"choices": [8, 16]}, "hidden": {"type": "int", "low": 16, "high": 20},
             "lr": {"type": "float", "low": 0.01, "high": 0.1, "step": 0.01}}
    missing = SAMPLERS[name].missing_requirement()
    if missing:   # e.g. gp without torch: validation must say so, naming the key and the fix
        with pytest.raises(SpecError, match="sampler") as err:
            hpsearch.spec_from_dict(lenet_dict(search_space=space, sampler={"name": name}))
        assert missing in str(err.value)
        return
    spec = hpsearch.spec_from_dict(lenet_dict(search_space=space))
    draws = []
    for _ in range(2):
        study = optuna.create_study(sampler=make_sampler(name, {}, 7, spec.space))
        params = []
        for i in range(4):
            trial = study.ask(fixed_distributions=distributions(spec.space))
            study.tell(trial, float(i))
            params.append(trial.params)
        draws.append(params)
    assert draws[0] == draws[1]


@pytest.mark.parametrize("name", [n for n in SAMPLERS if n != "grid"])
def test_every_sampler_draws_exactly_the_active_params_of_a_conditional_space(name: str) -> None:
    """What each sampler does with `when`/`per_layer` (README): tpe models them (multivariate + group),
    the others draw what they do not model at random; all are seeded and draw only active params."""
    from hpsearch.errors import SpecError
    from hpsearch.space import Conditional, active_names
    data = yaml.safe_load((STUDIES / "mlp.yaml").read_text())
    data.update(sampler={"name": name}, execution={"backend": "local"})
    hint = SAMPLERS[name].missing_requirement()
    if hint:   # e.g. gp without torch (CI): the study is refused at validation, with the install hint
        with pytest.raises(SpecError, match=f"sampler.name: sampler '{name}' needs .*{hint}"):
            hpsearch.spec_from_dict(data)
        return
    spec = hpsearch.spec_from_dict(data)
    space = Conditional(spec.space)
    draws = []
    for _ in range(2):
        study = optuna.create_study(sampler=make_sampler(name, {}, 7, spec.space), direction="maximize")
        params = []
        for i in range(12):
            trial = study.ask()
            values = space(trial)
            assert set(values) == set(trial.params) == active_names(spec.space, values)
            study.tell(trial, float(len(values) + i % 3))
            params.append(values)
        draws.append(params)
    assert draws[0] == draws[1]
    assert len({len(p) for p in draws[0]}) > 1
    if name == "tpe":
        assert study.sampler._multivariate and study.sampler._group


@pytest.mark.parametrize("name", [n for n in PRUNERS if n != "mo_asha"])   # mo_asha: test_multi_objective
def test_every_pruner_builds_from_the_spec(name: str) -> None:
    spec = hpsearch.spec_from_dict(lenet_dict(pruner={"name": name, **(
        {"percentile": 25.0} if name == "percentile" else {})}))
    pruner = make_pruner(spec.pruner.name, spec.pruner.options)
    study = optuna.create_study(pruner=pruner)
    trial = study.ask()
    trial.report(1.0, 1)
    assert trial.should_prune() in (True, False)
