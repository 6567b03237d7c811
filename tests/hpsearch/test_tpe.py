"""hpsearch's ``tpe`` (hpsearch.tpe.WindowedTPESampler): Optuna's TPE draw for draw below its
window; beyond it, TPE sees the best trials, the recent ones and a seeded sample of the rest, and
a seeded study still repeats itself."""
from __future__ import annotations

import random

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import create_trial

import hpsearch
from conftest import lenet_dict
from hpsearch.samplers import make_sampler
from hpsearch.tpe import GOOD, WindowedTPESampler, _vectorised_log_ndtr

DISTS = {"lr": FloatDistribution(1e-4, 1e-1, log=True), "momentum": FloatDistribution(0.5, 0.99),
         "batch_size": IntDistribution(8, 128, log=True), "dropout": FloatDistribution(0.0, 0.5)}


def _loss(p: dict) -> float:
    return (np.log10(p["lr"]) + 2) ** 2 + p["dropout"] + 0.01 * p["batch_size"] / 128


def _study(sampler: optuna.samplers.BaseSampler, n: int, direction: str = "minimize") -> optuna.Study:
    """A study holding ``n`` finished trials (every fifth pruned, with epochs)."""
    rng = random.Random(0)
    study = optuna.create_study(sampler=sampler, direction=direction)
    trials = []
    for i in range(n):
        p = {"lr": 10 ** rng.uniform(-4, -1), "momentum": rng.uniform(0.5, 0.99),
             "batch_size": int(round(2 ** rng.uniform(3, 7))), "dropout": rng.uniform(0.0, 0.5)}
        if i % 5 == 4:
            trials.append(create_trial(params=p, distributions=DISTS, state=optuna.trial.TrialState.PRUNED,
                                       intermediate_values={0: _loss(p), 1: _loss(p) / 2}))
        else:
            trials.append(create_trial(params=p, distributions=DISTS, value=_loss(p)))
    study.add_trials(trials)
    return study


def _draws(sampler: optuna.samplers.BaseSampler, start: int, asks: int) -> list[dict]:
    study = _study(sampler, start)
    out = []
    for _ in range(asks):
        trial = study.ask(fixed_distributions=DISTS)
        out.append(trial.params)
        study.tell(trial, _loss(trial.params))
    return out


def _same(ours: list[dict], theirs: list[dict]) -> bool:
    """The same draws, to rounding (the truncation masses are computed vectorised)."""
    return len(ours) == len(theirs) and all(
        a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], rel=1e-9) for k in a)
        for a, b in zip(ours, theirs))


def test_below_its_window_it_draws_as_optunas_tpe() -> None:
    ours = _draws(WindowedTPESampler(seed=3, window=250), 0, 40)         # random start-up, then TPE
    assert _same(ours, _draws(optuna.samplers.TPESampler(seed=3), 0, 40))
    assert not _same(ours, _draws(optuna.samplers.TPESampler(seed=4), 0, 40))
    assert _same(_draws(WindowedTPESampler(seed=4, window=250), 200, 5),
                 _draws(optuna.samplers.TPESampler(seed=4), 200, 5))


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_beyond_its_window_tpe_sees_the_best_the_recent_and_a_seeded_sample(direction: str) -> None:
    sampler = WindowedTPESampler(seed=1, window=300)
    study = _study(sampler, 1200, direction)
    finished = study.get_trials(deepcopy=False)
    view = sampler.window_of(study, finished, 1200)
    numbers = [t.number for t in view]
    assert len(view) == 300 and numbers == sorted(numbers)
    sign = 1 if direction == "minimize" else -1
    complete = sorted((t for t in finished if t.state.name == "COMPLETE"), key=lambda t: sign * t.value)
    assert {t.number for t in complete[:GOOD]} <= set(numbers)                   # TPE's good group
    assert set(range(1200 - 150, 1200)) <= set(numbers)                          # the recent half
    assert numbers == [t.number for t in sampler.window_of(study, finished, 1200)]  # seeded ...
    assert numbers != [t.number for t in sampler.window_of(study, finished, 1201)]  # ... per trial


def test_beyond_its_window_tpe_models_at_most_window_trials_and_repeats_itself() -> None:
    seen: list[int] = []

    class Counting(WindowedTPESampler):
        def _build_parzen_estimator(self, study, search_space, trials, handle_below):  # noqa: ANN001
            seen.append(len(trials))
            return super()._build_parzen_estimator(study, search_space, trials, handle_below)

    first = _draws(Counting(seed=7, window=400), 1500, 3)
    assert seen and sum(seen[:2]) == 400 and max(seen) <= 400 - GOOD              # good + the rest
    assert first == _draws(Counting(seed=7, window=400), 1500, 3)
    assert first != _draws(Counting(seed=8, window=400), 1500, 3)
    _draws(Counting(seed=7, window=None), 1500, 1)                                # window: null
    assert seen[-2] + seen[-1] == 1500


def test_the_vectorised_log_ndtr_is_optunas_and_is_put_back() -> None:
    from optuna.samplers._tpe import _truncnorm
    a = np.concatenate([np.linspace(-60, 12, 2001), [-20.0, 6.0, 0.0]])
    expected = _truncnorm._log_ndtr(a)
    with _vectorised_log_ndtr():
        got = _truncnorm._log_ndtr(a)
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-300)
    assert _truncnorm._log_ndtr(a).tolist() == expected.tolist()                # Optuna's again


def test_the_window_is_a_sampler_option() -> None:
    spec = hpsearch.spec_from_dict(lenet_dict(sampler={"name": "tpe", "window": None, "n_startup_trials": 5}))
    sampler = make_sampler(spec.sampler.name, dict(spec.sampler.options), 0)
    assert isinstance(sampler, WindowedTPESampler) and sampler._window is None
    assert make_sampler("tpe", {}, 0)._window == 400
    with pytest.raises(hpsearch.SpecError, match="window must be at least 250"):
        hpsearch.spec_from_dict(lenet_dict(sampler={"name": "tpe", "window": 10}))
