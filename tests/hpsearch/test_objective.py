"""run_trial: one real (tiny) LeNet trial per outcome; failures come back as values."""
from __future__ import annotations

import os
import tempfile

import pytest

from hpsearch.objective import run_trial
from hpsearch.recipes import load_data, resolve_recipe
from hpsearch.records import COMPLETE, FAILED, PRUNED, TrialTask


def _task(net: str = "lenet", **params) -> TrialTask:
    return TrialTask(trial_id=0, number=0, net=net, params={"lr": 0.05, **params},
                     fixed={"epochs": 2, "batch_size": 32}, metric="val_loss", direction="minimize",
                     seed=0, data_limit=200)


def test_complete_trial_returns_history_and_loadable_weights() -> None:
    import nets
    result = run_trial(_task())
    assert result.state == COMPLETE and result.epochs == 2
    assert [h["epoch"] for h in result.history] == [1.0, 2.0]
    assert result.value == result.history[-1]["val_loss"]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.npz")
        with open(path, "wb") as fh:
            fh.write(result.weights)
        assert nets.load(path).params.size > 1000


def test_pruned_when_report_says_so() -> None:
    calls = []
    result = run_trial(_task(), lambda epoch, value: calls.append((epoch, value)) or True)
    assert result.state == PRUNED and result.epochs == 1 and len(calls) == 1
    assert result.weights is None


@pytest.mark.parametrize("mode,reason", [("raise", "RuntimeError: fragile net refuses to build"),
                                         ("nan", "diverged: loss became nan")])
def test_failures_are_values(mode: str, reason: str) -> None:
    result = run_trial(_task("recipes_for_tests:fragile", mode=mode))
    assert result.state == FAILED and result.reason.startswith(reason)
    assert "Traceback" in result.traceback and not result.lost


def test_unknown_metric_fails_the_trial() -> None:
    from dataclasses import replace
    result = run_trial(replace(_task(), metric="val_ppl"))
    assert result.state == FAILED and "reported no 'val_ppl'" in result.reason


def test_data_is_cached_and_subsampled() -> None:
    recipe = resolve_recipe("lenet")
    a = load_data(recipe, None, 200)
    assert a is load_data(recipe, None, 200)
    assert len(a.train) == 200 and len(a.val) == 100


def test_the_data_cache_keeps_the_latest_data_sets_only() -> None:
    from hpsearch import recipes
    recipe = resolve_recipe("lenet")
    first = load_data(recipe, None, 120)
    for limit in range(121, 121 + recipes.DATA_CACHE_SIZE):
        load_data(recipe, None, limit)
    assert len(recipes._DATA_CACHE) <= recipes.DATA_CACHE_SIZE
    assert load_data(recipe, None, 120) is not first     # evicted, read again


def test_custom_recipe_by_factory() -> None:
    assert resolve_recipe("recipes_for_tests:make_fragile").name == "fragile"


def test_prepare_run_uses_the_workers_data_unless_the_trial_searches_data_settings(tmp_path) -> None:
    from dataclasses import replace

    from hpsearch.objective import prepare_run
    from hpsearch.recipes import data_settings
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat and the dog ran to the red house near the old tree.\n" * 40)
    recipe = resolve_recipe("rnn")
    small = {"hidden": 8, "vocab": 30}
    held = load_data(recipe, str(corpus), 200, data_settings(recipe, small))      # what a worker holds
    plain = TrialTask(trial_id=0, number=0, net="rnn", params={"hidden": 8}, fixed={"vocab": 30, "epochs": 1},
                      metric="val_loss", direction="minimize", seed=3, data_limit=200,
                      data_path=str(corpus))
    run = prepare_run(plain, held)
    assert run.data is held and run.params["hidden"] == 8 and run.config.seed == 3
    searched = replace(plain, params={"hidden": 8, "max_len": 10})
    own = prepare_run(searched, held)
    assert own.data is not held and own.data.info["data_params"]["max_len"] == 10
    assert own.data is load_data(recipe, str(corpus), 200, data_settings(recipe, {**small, "max_len": 10}))


def test_warm_up_trains_the_trials_net_on_two_batches() -> None:
    from hpsearch.backends.spark import warm_numba
    warm_numba(_task())
    with pytest.raises(Exception, match="unknown parameter"):
        warm_numba(_task(nonsense=1))


def test_per_layer_draws_reach_the_net_as_a_list() -> None:
    """A conditional trial's flat params (units_1..n, the depth, momentum) train the net they name."""
    import nets
    task = TrialTask(trial_id=0, number=0, net="mlp", metric="val_top1", direction="maximize", seed=0,
                     params={"layers": 3, "units_1": 24, "units_2": 12, "units_3": 6, "optimizer": "sgd",
                             "momentum": 0.5},
                     fixed={"epochs": 1, "batch_size": 32}, data_limit=200,
                     per_layer=(("units", "layers", "hidden"),))
    assert task.train_params() == {"epochs": 1, "batch_size": 32, **task.params}     # logged flat
    assert task.net_params() == {"epochs": 1, "batch_size": 32, "optimizer": "sgd", "momentum": 0.5,
                                 "hidden": [24, 12, 6]}
    result = run_trial(task)
    assert result.state == COMPLETE, result.reason
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.npz")
        with open(path, "wb") as fh:
            fh.write(result.weights)
        assert [layer.n_out for layer in nets.load(path).layers] == [24, 12, 6, 10]
