"""Multi-objective studies: the spec, Pareto sets, MO-ASHA, sweeps (local and Spark), MLflow."""
from __future__ import annotations

import os
import random
from pathlib import Path

import optuna
import pytest
import yaml
from click.testing import CliRunner

from conftest import STUDIES, mlflow_runs, sweep_runs, write_study
from hpsearch.cli import cli
from hpsearch.errors import HpsearchError, SpecError
from hpsearch.mo_pruner import MOASHAPruner, record
from hpsearch.storage import open_storage
from hpsearch.pareto import crowding, fronts, pareto_indices, ranking
from hpsearch.spec import spec_from_dict

MO = {"metrics": ["val_top1", "infer_ms"], "directions": ["maximize", "minimize"]}
TINY = {"data.limit": 300, "fixed.epochs": 2}


def mo_dict(**changes) -> dict:
    """The shipped lenet-mo study, on the local backend."""
    data = yaml.safe_load((STUDIES / "lenet-mo.yaml").read_text())
    data["execution"] = {"backend": "local", "parallelism": 2}
    data.update(changes)
    return data


def brute_front(points: list[tuple[float, ...]], signs: tuple[int, ...]) -> set[int]:
    """The non-dominated points by definition (signs: +1 minimize, -1 maximize)."""
    def worse(a, b):   # b dominates a
        return all(s * y <= s * x for s, x, y in zip(signs, a, b)) and a != b and \
            any(s * y < s * x for s, x, y in zip(signs, a, b))
    return {i for i, p in enumerate(points) if not any(worse(p, q) for q in points)}


# --------------------------------------------------------------------------- the spec

BAD = {
    "unknown metric": ({"metrics": ["val_top1", "infer_mz"]}, "objective.metrics[1]",
                       "does not produce 'infer_mz'"),
    "duplicate metric": ({"metrics": ["val_top1", "val_top1"]}, "objective.metrics", "twice"),
    "direction count": ({**MO, "directions": ["maximize"]}, "objective.directions", "one direction per metric"),
    "wrong direction": ({**MO, "directions": ["minimize", "minimize"]}, "objective.directions[0]",
                        "should be maximized"),
    "not a direction": ({**MO, "directions": ["maximize", "smaller"]}, "objective.directions[1]", "Valid"),
    "metrics not a list": ({"metrics": "val_top1"}, "objective.metrics", "must be a list"),
    "metric and metrics": ({**MO, "metric": "val_loss"}, "objective", "unknown key 'metric'"),
}


@pytest.mark.parametrize("objective, key, problem", BAD.values(), ids=BAD.keys())
def test_bad_objectives_are_one_line_errors(objective, key, problem) -> None:
    with pytest.raises(SpecError) as err:
        spec_from_dict(mo_dict(objective=objective))
    line = err.value.line()
    assert "\n" not in line and f": {key}" in line and problem in line, line


@pytest.mark.parametrize("section, name, problem", [
    ("sampler", "cmaes", "searches a single objective"),
    ("pruner", "median", "prunes on a single objective"),
    ("pruner", "hyperband", "prunes on a single objective"),
])
def test_single_objective_samplers_and_pruners_are_refused(section, name, problem) -> None:
    with pytest.raises(SpecError, match=problem):
        spec_from_dict(mo_dict(**{section: {"name": name}}))


def test_mo_asha_needs_several_objectives_and_the_cli_exits_2(tmp_path: Path) -> None:
    data = mo_dict(objective={"metric": "val_loss"})
    path = write_study(tmp_path, "one", data)
    res = CliRunner().invoke(cli, ["validate", str(path)])
    assert res.exit_code == 2
    errors = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "mo_asha prunes multi-objective studies" in errors[0]


def test_directions_default_to_each_metrics_own() -> None:
    spec = spec_from_dict(mo_dict(objective={"metrics": ["val_top1", "params", "infer_ms"]}))
    assert spec.objective.multi and spec.objective.directions == ("maximize", "minimize", "minimize")
    assert spec.pruner.options["max_resource"] == 6
    one = spec_from_dict(mo_dict(objective={"metrics": ["val_loss"]}, pruner="none"))
    assert not one.objective.multi and (one.objective.metric, one.objective.direction) == ("val_loss", "minimize")


# --------------------------------------------------------------------------- Pareto sets

def test_fronts_match_the_definition() -> None:
    rng = random.Random(3)
    for n, k in ((1, 2), (12, 2), (40, 2), (30, 3)):
        pts = [tuple(rng.randint(0, 9) for _ in range(k)) for _ in range(n)]
        dirs = ["minimize"] * k
        assert set(pareto_indices(pts, dirs)) == brute_front(pts, (1,) * k)
        fs = fronts(pts)
        assert sorted(i for f in fs for i in f) == list(range(n))
        rest = list(range(n))
        for f in fs:    # each front is the Pareto set of what the fronts before it left
            assert set(f) == {rest[i] for i in brute_front([pts[j] for j in rest], (1,) * k)}
            rest = [i for i in rest if i not in f]


def test_ranking_breaks_ties_by_crowding_distance() -> None:
    front = [(0.0, 10.0), (1.0, 9.0), (5.0, 5.0), (10.0, 0.0), (9.5, 0.4)]
    dist = crowding(front, range(5))
    assert dist[0] == dist[3] == float("inf") and dist[2] > dist[1] and dist[2] > dist[4]
    assert ranking(front + [(11.0, 11.0)]) == [0, 3, 2, 1, 4, 5]


def test_mo_asha_promotes_the_top_third_of_a_rung() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"],
                                pruner=MOASHAPruner(min_resource=1, reduction_factor=3, max_resource=9))
    pruner = study.pruner
    assert [e for e in range(1, 10) if pruner.is_rung(e)] == [1, 3]

    def report(values: tuple[float, float], epoch: int = 1) -> bool:
        trial = study.ask()
        record(study, trial._trial_id, epoch, list(values))
        return pruner.prune(study, study._storage.get_trial(trial._trial_id))

    assert report((50.0, 5.0)) is False        # alone at the rung: it goes on
    assert report((40.0, 6.0)) is True         # dominated by the first; 2 // 3 -> keep 1
    assert report((60.0, 4.0)) is False        # dominates both
    assert report((10.0, 9.0)) is True
    # on the front with (60, 4), both extremes (inf crowding): the older wins the one place (5 // 3)
    assert report((99.0, 99.0)) is True
    assert report((98.0, 50.0)) is True        # front of 3: the two extremes take the 2 places
    assert report((100.0, 3.0)) is False       # dominates every other
    assert report((1.0, 1.0), epoch=2) is False   # not a rung


# --------------------------------------------------------------------------- sweeps

def _check_pareto(spec, study: optuna.Study) -> tuple:
    import hpsearch
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    front = hpsearch.best_trial(spec)
    assert isinstance(front, tuple) and front
    expected = brute_front([tuple(t.values) for t in done], (-1, 1))
    assert {t.number for t in front} == {done[i].number for i in expected}
    return front


def test_a_local_mo_sweep_prunes_and_logs_its_pareto_set(tmp_path: Path, monkeypatch) -> None:
    import hpsearch
    from hpsearch.study import chosen_trial

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    path = write_study(tmp_path, "mo", mo_dict(budget={"trials": 8}, sampler={"name": "tpe", "seed": 1},
                                               fixed={"epochs": 3, "optimizer": "sgd"}))
    spec = hpsearch.load_spec(path, {"data.limit": 300})
    summary = hpsearch.run_study(spec)
    study = optuna.load_study(study_name="mo", storage=open_storage(spec.storage, create=True))
    front = _check_pareto(spec, study)
    assert {t.number for t in summary.top} == {t.number for t in front}
    assert summary.counts["pruned"] >= 1               # MO-ASHA stopped someone at epoch 1
    for t in study.trials:                              # the driver stored every epoch's values
        assert t.user_attrs["mo_epoch:1"] and len(t.user_attrs["mo_epoch:1"]) == 2
    with pytest.raises(HpsearchError, match="--trial N"):
        chosen_trial(spec)
    assert chosen_trial(spec, front[0].number).number == front[0].number
    runs = mlflow_runs(tmp_path, "mo")
    tagged = {int(r.data.tags["hpsearch.trial_number"]) for r in runs
              if r.data.tags.get("hpsearch.pareto") == "true"}
    assert tagged == {t.number for t in front}
    child = next(r for r in runs if r.data.tags.get("hpsearch.kind") == "trial")
    assert {"val_top1", "infer_ms", "params", "train_s"} <= set(child.data.metrics)
    res = CliRunner().invoke(cli, ["best", str(path), "--json"])
    assert res.exit_code == 0, res.output
    import json
    got = json.loads(res.output)
    assert [p["number"] for p in got["pareto"]] == sorted(t.number for t in front)
    assert set(got["pareto"][0]["values"]) == {"val_top1", "infer_ms"}


@pytest.mark.slow
@pytest.mark.spark
def test_lenet_mo_runs_on_spark_with_its_pareto_set_in_mlflow(tmp_path: Path, spark, monkeypatch) -> None:
    import hpsearch
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    path = tmp_path / "lenet-mo.yaml"
    path.write_text((STUDIES / "lenet-mo.yaml").read_text())     # as shipped: backend spark
    spec = hpsearch.load_spec(path, {**TINY, "budget.trials": 8, "fixed.epochs": 3,
                                     "execution.parallelism": 2})
    summary = hpsearch.run_study(spec, spark=spark)
    assert sum(summary.counts.values()) == 8
    study = optuna.load_study(study_name="lenet-mo", storage=open_storage(spec.storage, create=True))
    front = _check_pareto(spec, study)
    runs = mlflow_runs(tmp_path, "lenet-mo")
    parent = sweep_runs(runs)[0]
    assert parent.data.tags["hpsearch.pareto_trials"] == ",".join(str(t.number) for t in front)
    client = MlflowClient(uri)
    files = {a.path for a in client.list_artifacts(parent.info.run_id, "pareto")}
    assert files == {"pareto/pareto_set.json", "pareto/pareto_set.csv", "pareto/pareto_front.png"}
    children = [r for r in runs if r.data.tags.get("hpsearch.kind") == "trial"]
    assert {r.data.tags.get("hpsearch.pareto") for r in children if r.data.tags["hpsearch.state"] == "complete"} \
        <= {"true", "false"}
    assert sum(r.data.tags.get("hpsearch.pareto") == "true" for r in children) == len(front)
    workers = {r.data.tags["hpsearch.worker"] for r in children}
    assert all(str(os.getpid()) not in w for w in workers)     # trials ran in Spark tasks

    # predict: no single best, so --trial N; it scores with that trial's own model
    import numpy as np
    import pandas as pd

    import nets
    from hpsearch.scoring import predict_parquet
    from nets.recipes import mnist_classify
    raw = mnist_classify().val.x.reshape(-1, 784)[:40]
    images = tmp_path / "images.parquet"
    pd.DataFrame({"id": np.arange(len(raw)), "pixels": list(raw.astype(np.float32))}).to_parquet(images)
    with pytest.raises(HpsearchError, match="--trial N"):
        predict_parquet(spec, str(images), str(tmp_path / "none.parquet"), spark=spark)
    pick = front[-1]
    predict_parquet(spec, str(images), str(tmp_path / "out.parquet"), spark=spark, trial=pick.number)
    local = client.download_artifacts(pick.run_id, "model/model.npz", str(tmp_path))
    want = nets.load(local).predict(mnist_classify().val.inputs()[:40]).argmax(axis=1)
    got = pd.read_parquet(tmp_path / "out.parquet").sort_values("id")["prediction"].to_numpy()
    assert (got == want).all()


def test_the_front_plot_draws_every_pair_of_three_objectives(tmp_path: Path) -> None:
    from optuna.distributions import FloatDistribution

    from hpsearch.pareto_log import plot
    rng = random.Random(0)
    trials = [optuna.trial.create_trial(values=[rng.random() for _ in range(3)], params={"x": 0.5},
                                        distributions={"x": FloatDistribution(0, 1)}) for _ in range(9)]
    path = tmp_path / "front.png"
    plot(trials, ("val_top1", "infer_ms", "params"), ["maximize", "minimize", "minimize"], path)
    from PIL import Image
    width, height = Image.open(path).size
    assert width > 2.5 * height            # three panels side by side
