"""The study plots: drawn from an Optuna study (no nets involved), skipped with a note when they
cannot be drawn, and logged as PNG artifacts of the sweep's MLflow parent run."""
from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from PIL import Image

import hpsearch
from conftest import lenet_dict
from hpsearch import plots
from hpsearch.tracking import Tracker

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _objective(trial: optuna.Trial) -> float:
    lr = trial.suggest_float("lr", 1e-3, 0.3, log=True)
    hidden = trial.suggest_int("hidden", 16, 128)
    batch = trial.suggest_categorical("batch_size", [8, 16, 32])
    for epoch in (1, 2, 3):
        trial.report(lr * 10 / epoch + hidden / 1000 + batch / 100, epoch)
    return lr * 10 / 3 + hidden / 1000 + batch / 100


def _study(n: int, storage: str | None = None, name: str | None = None) -> optuna.Study:
    study = optuna.create_study(storage=storage, study_name=name, sampler=optuna.samplers.RandomSampler(0))
    study.optimize(_objective, n_trials=n)
    return study


def _valid_png(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    image.verify()
    return image.size


def test_four_plots_as_valid_png(tmp_path: Path) -> None:
    files, notes = plots.render(_study(6), tmp_path, "val_loss")
    assert notes == []
    assert sorted(f.name for f in files) == sorted(f"{name}.png" for name in plots.PLOTS)
    for f in files:
        width, height = _valid_png(f.read_bytes())
        assert width > 300 and height > 200


def _conditional(trial: optuna.Trial) -> float:
    """A conditional space as hpsearch draws it: momentum under sgd only, one units_i per layer."""
    optimizer = trial.suggest_categorical("optimizer", ["sgd", "adam"])
    layers = trial.suggest_int("layers", 1, 3)
    value = sum(trial.suggest_int(f"units_{i}", 8, 64) for i in range(1, layers + 1)) / 100
    if optimizer == "sgd":
        value += trial.suggest_float("momentum", 0.0, 0.9)
    trial.report(value, 1)
    return value


def test_plots_of_a_conditional_study_where_only_some_trials_have_a_param(tmp_path: Path) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(1))
    study.optimize(_conditional, n_trials=12)
    assert {len(t.params) for t in study.trials} != {len(study.trials[0].params)}   # really conditional
    files, notes = plots.render(study, tmp_path, "val_top1")
    assert notes == [] and len(files) == len(plots.PLOTS)
    for f in files:
        _valid_png(f.read_bytes())
    assert plots.common_params(study) == ["layers", "optimizer", "units_1"]


@pytest.mark.parametrize("n,skipped", [
    (0, {"optimization_history", "parallel_coordinate", "param_importances", "intermediate_values"}),
    (1, {"param_importances"}),
])
def test_a_plot_that_cannot_be_drawn_is_a_note_not_a_crash(tmp_path: Path, n: int, skipped: set) -> None:
    files, notes = plots.render(_study(n), tmp_path, "val_loss")
    assert {f.stem for f in files} == set(plots.PLOTS) - skipped
    assert {note.split(" skipped: ")[0] for note in notes} == skipped
    if n == 1:
        assert notes == ["param_importances skipped: needs >= 2 completed trials; the study has 1"]


def test_the_parent_run_gets_the_plots_and_notes(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for name, n, log_plots in (("many", 4, True), ("one", 1, True), ("off", 4, False)):
        spec = hpsearch.spec_from_dict(lenet_dict(tracking={"uri": uri, "plots": log_plots}),
                                       name=name, base_dir=tmp_path)
        study = _study(n, f"sqlite:///{tmp_path / (name + '.db')}", name)
        spec = replace(spec, storage=f"sqlite:///{tmp_path / (name + '.db')}")
        tracker = Tracker(spec, uri)
        parent = tracker.start_sweep({"trials": n})
        tracker.end_sweep(study.best_trial, {"complete": n, "pruned": 0, "failed": 0})
        run = tracker.client.get_run(parent)
        assert run.info.status == "FINISHED"
        pngs = sorted(a.path for a in tracker.client.list_artifacts(parent, "plots"))
        if name == "off":
            assert pngs == [] and "hpsearch.plots_skipped" not in run.data.tags
            continue
        expected = set(plots.PLOTS) - ({"param_importances"} if n == 1 else set())
        assert pngs == sorted(f"plots/{p}.png" for p in expected)
        for path in pngs:
            local = tracker.client.download_artifacts(parent, path, str(tmp_path / name))
            _valid_png(Path(local).read_bytes())
        note = run.data.tags.get("hpsearch.plots_skipped")
        assert (note is None) if n > 1 else note.startswith("param_importances skipped: needs >= 2")


def test_tracking_plots_must_be_a_boolean(tmp_path: Path) -> None:
    with pytest.raises(hpsearch.SpecError, match="tracking.plots: must be true or false"):
        hpsearch.spec_from_dict(lenet_dict(tracking={"plots": "yes"}), base_dir=tmp_path)
