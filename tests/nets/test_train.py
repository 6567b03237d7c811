"""Training loop, optimizers, determinism, save/load and the `python -m nets` command."""
import json
import subprocess
import sys

import numpy as np
import pytest

import nets
from nets.optim import SGD, Adagrad, Adam, make_optimizer


def test_lenet_learns_on_the_shipped_sample():
    res = nets.train("lenet", {"epochs": 1})
    assert res.history[-1]["val_top1"] > 75.0
    assert res.history[-1]["loss"] < 1.5


def test_autoencoder_learns():
    res = nets.train("autoencoder", {"epochs": 2})
    h = res.history
    assert h[1]["val_loss"] < h[0]["val_loss"] < 0.1


def test_same_seed_bit_identical_weights():
    a = nets.train("lenet", {"epochs": 1, "batch_size": 64}, seed=5).model.params
    b = nets.train("lenet", {"epochs": 1, "batch_size": 64}, seed=5).model.params
    c = nets.train("lenet", {"epochs": 1, "batch_size": 64}, seed=6).model.params
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_on_epoch_end_stops_training():
    seen = []
    res = nets.train("autoencoder", {"epochs": 5}, on_epoch_end=lambda e, m: seen.append(e) or e == 2)
    assert seen == [1, 2] and res.stopped and len(res.history) == 2


def test_non_finite_loss_raises_diverged():
    with pytest.raises(nets.DivergedError):
        nets.train("lenet", {"epochs": 1, "lr": 1e30})


@pytest.mark.parametrize("params", [{"lr": -1.0}, {"batch_size": 0}, {"optimizer": "rmsprop"},
                                    {"momentum": 1.5}, {"nosuch": 1}])
def test_bad_params_raise_config_error(params):
    with pytest.raises(nets.ConfigError):
        nets.train("autoencoder", {"epochs": 1, **params})


def test_save_load_roundtrip_predicts_identically(tmp_path):
    res = nets.train("lenet", {"epochs": 1, "hidden": 20})
    path = nets.save(res.model, tmp_path / "m.npz")
    model = nets.load(path)
    x = nets.get_recipe("lenet").load_data(None).val.inputs()[:50]
    np.testing.assert_array_equal(model.predict(x), res.model.predict(x))
    assert model.layers[-2].n_out == 20


def test_mlp_of_depth_three_learns():
    res = nets.train("mlp", {"epochs": 1, "hidden": [128, 64, 32], "batch_size": 32})
    assert res.history[-1]["val_top1"] > 70.0


@pytest.mark.parametrize("net, hidden, widths", [
    ("mlp", [64, 32, 16], [64, 32, 16, 10]),
    ("autoencoder", [256, 64, 32], [256, 64, 32, 64, 256, 784]),
    ("lenet", [40, 20], [40, 20, 10]),
    ("lenet", 30, [30, 10]),
])
def test_layer_lists_save_and_load_back(tmp_path, net, hidden, widths):
    res = nets.train(net, {"epochs": 1, "hidden": hidden, "batch_size": 64})
    model = nets.load(nets.save(res.model, tmp_path / "m.npz"))
    assert [layer.n_out for layer in model.layers if hasattr(layer, "n_out")][-len(widths):] == widths
    x = nets.get_recipe(net).load_data(None).val.inputs()[:50]
    np.testing.assert_array_equal(model.predict(x), res.model.predict(x))


def test_load_rejects_a_non_model_file(tmp_path):
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(nets.DataError, match="x.npz"):
        nets.load(bad)


def _reference_sgd(p, g, steps, lr, mom, wd, lrd):
    p, buf = p.copy(), None
    for t in range(steps):
        d = g + wd * p
        if mom:
            buf = d.copy() if buf is None else mom * buf + (1 - mom) * d
            d = buf
        p = p - lr / (1 + t * lrd) * d
    return p


def test_sgd_matches_bigdl_formula():
    rng = np.random.default_rng(0)
    p0, g = rng.standard_normal(50), rng.standard_normal(50)
    opt, p = SGD(0.1, momentum=0.9, weight_decay=0.01, lr_decay=0.5), p0.copy()
    for _ in range(4):
        opt.step(p, g)
    np.testing.assert_allclose(p, _reference_sgd(p0, g, 4, 0.1, 0.9, 0.01, 0.5), rtol=1e-12)


def test_adagrad_and_adam_match_formulas():
    rng = np.random.default_rng(1)
    p0, g = rng.standard_normal(20), rng.standard_normal(20)
    p, opt = p0.copy(), Adagrad(0.1, lr_decay=0.2)
    acc, ref = np.zeros(20), p0.copy()
    for t in range(3):
        opt.step(p, g)
        acc += g * g
        ref -= 0.1 / (1 + t * 0.2) * g / (np.sqrt(acc) + 1e-10)
    np.testing.assert_allclose(p, ref, rtol=1e-12)
    p, opt = p0.copy(), Adam(0.01)
    m, v, ref = np.zeros(20), np.zeros(20), p0.copy()
    for t in range(1, 4):
        opt.step(p, g)
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        ref -= 0.01 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(p, ref, rtol=1e-12)
    assert isinstance(make_optimizer("adam", 0.1), Adam)


@pytest.mark.parametrize("name, names", [("sgd", ["buf"]), ("adagrad", ["acc"]), ("adam", ["m", "v"])])
def test_optimizer_state_is_its_own_arrays(name, names):
    """state(): the per-parameter arrays by name, in a fixed order; writing into them changes the next step."""
    g = np.random.default_rng(2).standard_normal(30)
    opt = make_optimizer(name, 0.1, momentum=0.5 if name == "sgd" else 0.0)
    assert opt.state() == {}
    p = np.zeros(30)
    opt.step(p, g)
    state = opt.state()
    assert list(state) == names and all(a.shape == p.shape for a in state.values())
    twin = make_optimizer(name, 0.1, momentum=0.5 if name == "sgd" else 0.0)
    q = np.zeros(30)
    twin.step(q, g)
    for a in twin.state().values():
        a *= 3.0                                  # a different state: the next steps differ
    opt.step(p, g), twin.step(q, g)
    assert not np.allclose(p, q)


def _run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "nets", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_json_reports_every_epoch():
    r = _run_cli("train", "autoencoder", "--epochs", "2", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [e["epoch"] for e in out["epochs"]] == [1, 2]
    assert out["first_batch_s"] > 0 and out["total_seconds"] >= out["train_seconds"]
    assert "val_loss" in out["epochs"][-1]


def test_cli_bad_data_is_one_line_exit_2(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03\x00")
    r = _run_cli("train", "lenet", "--data", str(tmp_path))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in r.stderr


def test_train_is_the_function_and_the_loop_module_is_nets_training():
    import nets.training
    assert nets.train is nets.recipes.train and nets.training.fit is nets.fit


def test_buffer_caches_stay_bounded_when_batch_shapes_keep_changing():
    from nets.layers import MAX_BUFFERS, Linear
    from nets.losses import MSELoss
    from nets.model import Model
    model, loss = Model([Linear(3, act="tanh")], (4,), dtype=np.float64), MSELoss()
    rng = np.random.default_rng(0)
    for n in range(1, 3 * MAX_BUFFERS):
        x = rng.standard_normal((n, 4))
        y = model.forward(x)
        np.testing.assert_allclose(y, np.tanh(x @ model.layers[0].p["w"] + model.layers[0].p["b"]))
        loss.forward(y, np.zeros_like(y))
        model.backward(loss.backward())
    assert len(model.layers[0]._bufs) <= MAX_BUFFERS and len(loss._bufs) <= MAX_BUFFERS


def _own_mlp(hidden=16, seed=0, dtype=np.float32, arch=None):
    """A user's net named like the built-in mlp, on LeNet's (28, 28, 1) images."""
    from nets.layers import Flatten, Linear
    arch = {**(arch or {}), "builder": "tests.nets.test_train:OWN_MLP"}
    return nets.Model([Flatten(), Linear(hidden, act="relu"), Linear(10)], (28, 28, 1), seed=seed,
                      dtype=dtype, head="logsoftmax", arch=arch)


OWN_MLP = nets.Recipe(name="mlp", build=_own_mlp, loss="nll", load_data=nets.RECIPES["lenet"].load_data,
                      defaults={**{k: v for k, v in nets.RECIPES["lenet"].defaults.items()
                                   if k not in ("conv1", "conv2")}, "hidden": 16},
                      metrics=dict(nets.RECIPES["lenet"].metrics))


def test_a_users_recipe_named_like_a_builtin_loads_with_its_own_builder(tmp_path):
    """Same weight count as the built-in mlp (784-16-10), other input shape: the builder must win."""
    res = nets.train(OWN_MLP, {"epochs": 1, "batch_size": 64})
    model = nets.load(nets.save(res.model, tmp_path / "m.npz"))
    assert model.input_shape == (28, 28, 1)
    x = nets.get_recipe("lenet").load_data(None).val.inputs()[:20]
    np.testing.assert_array_equal(model.predict(x), res.model.predict(x))


TIMINGS = {"seconds", "samples_per_s", "train_s", "infer_ms"}


def _untimed(history):
    return [{k: v for k, v in h.items() if k not in TIMINGS} for h in history]


@pytest.mark.parametrize("recipe,params", [
    ("lenet", {"optimizer": "sgd", "momentum": 0.9, "lr_decay": 1e-3, "batch_size": 32}),
    ("autoencoder", {"optimizer": "adam", "lr": 0.003}),
    ("autoencoder", {"optimizer": "adagrad", "weight_decay": 1e-4, "batch_size": 64}),
])
def test_a_fit_continued_from_its_state_is_bit_identical_to_one_fit(recipe, params):
    import pickle
    whole = nets.prepare(recipe, {**params, "epochs": 3}, seed=4)
    hist = whole.fit()
    first = nets.prepare(recipe, {**params, "epochs": 1}, seed=4)
    part1 = first.fit()
    state = pickle.loads(pickle.dumps(part1.state))      # as it crosses to another process
    rest = nets.prepare(recipe, {**params, "epochs": 3}, seed=4)
    assert rest.model.params.tobytes() != state.params.tobytes()     # a fresh model, not the first one
    rest.config.start = state
    part2 = rest.fit()
    assert [h["epoch"] for h in part2.epochs] == [2, 3] and part2.state.epoch == 3
    assert rest.model.params.tobytes() == whole.model.params.tobytes()
    assert _untimed(part1.epochs + part2.epochs) == _untimed(hist.epochs)
    assert part2.epochs[-1]["train_s"] > part1.epochs[-1]["train_s"]     # training seconds carry on
    assert rest.opt.t == whole.opt.t and hist.state.epoch == 3


def test_a_fit_continued_without_its_optimizer_state_differs():
    params = {"optimizer": "sgd", "momentum": 0.9, "epochs": 2}
    whole = nets.prepare("autoencoder", params, seed=1)
    whole.fit()
    first = nets.prepare("autoencoder", {**params, "epochs": 1}, seed=1)
    state = first.fit().state
    state.opt = {"t": 0, "arrays": {}}                    # the momentum lost: the check above can fail
    rest = nets.prepare("autoencoder", params, seed=1)
    rest.config.start = state
    rest.fit()
    assert rest.model.params.tobytes() != whole.model.params.tobytes()
