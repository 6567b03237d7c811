"""Every net reports its cost: params, infer_ms (stable across measurements) and train_s."""
from __future__ import annotations

import numpy as np

import nets
from nets.metrics import COST_METRICS, infer_ms


def _run(**params):
    return nets.prepare("lenet", {"epochs": 1, **params}, None, seed=0)


def test_every_epoch_reports_the_cost_metrics():
    run = _run(hidden=16)
    hist = run.fit()
    last = hist.epochs[-1]
    assert last["params"] == run.model.n_params == sum(p.size for layer in run.model.layers
                                                                    for p in layer.p.values())
    assert last["infer_ms"] > 0 and 0 < last["train_s"] <= hist.seconds
    assert set(COST_METRICS) <= set(nets.RECIPES["lenet"].metrics)
    assert nets.RECIPES["lenet"].metrics["val_top1"] == "maximize"   # a recipe's own stay


def test_infer_ms_is_stable_and_grows_with_the_net():
    """Acceptance: the same model measured 10 times varies by at most 10% (median absolute deviation)."""
    small, big = _run(conv1=4, conv2=8, hidden=16), _run(conv1=16, conv2=32, hidden=128)
    xs = np.array([infer_ms(small.model, small.data.val) for _ in range(10)])
    mad = np.median(np.abs(xs - np.median(xs)))
    print(f"infer_ms x10: median {np.median(xs):.3f} ms / 1000 samples, MAD {mad / np.median(xs):.1%}")
    assert mad <= 0.10 * np.median(xs)
    assert np.median([infer_ms(big.model, big.data.val) for _ in range(3)]) > np.median(xs)
