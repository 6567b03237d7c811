"""Every layer and loss against float64 central differences (relative error <= 1e-6)."""
import numpy as np
import pytest

from nets.gradcheck import check_layer, check_loss
from nets.layers import Activation, Conv2d, Flatten, Linear, MaxPool2d
from nets.losses import MSELoss, NLLLoss

TOL = 1e-6

LAYERS = [
    pytest.param(lambda: Linear(5), (7,), 3, id="linear"),
    pytest.param(lambda: Linear(4, act="tanh"), (6,), 2, id="linear-tanh"),
    pytest.param(lambda: Linear(4, act="relu"), (6,), 3, id="linear-relu"),
    pytest.param(lambda: Linear(5, act="sigmoid"), (3,), 2, id="linear-sigmoid"),
    pytest.param(lambda: Linear(37, act="sigmoid"), (3,), 2, id="linear-sigmoid-vector-lanes"),
    pytest.param(lambda: Linear(3), (4,), 1, id="linear-batch1"),
    pytest.param(lambda: Linear(3, act="tanh"), (4,), 60, id="linear-batch60-plain-dx"),
    pytest.param(lambda: Conv2d(3, 3), (6, 7, 2), 2, id="conv-3x3-odd"),
    pytest.param(lambda: Conv2d(4, 5, act="tanh"), (9, 9, 1), 2, id="conv-5x5-tanh"),
    pytest.param(lambda: Conv2d(2, 3, stride=2), (7, 8, 3), 2, id="conv-stride2"),
    pytest.param(lambda: Conv2d(2, 3, stride=2, pad=1), (7, 5, 2), 2, id="conv-stride2-pad1"),
    pytest.param(lambda: Conv2d(3, 2, act="relu"), (5, 5, 2), 1, id="conv-relu-batch1"),
    pytest.param(lambda: MaxPool2d(2), (6, 6, 3), 2, id="maxpool-2"),
    pytest.param(lambda: MaxPool2d(3, 2), (7, 9, 2), 2, id="maxpool-3-stride2-odd"),
    pytest.param(lambda: MaxPool2d(2), (5, 5, 1), 1, id="maxpool-odd-batch1"),
    pytest.param(lambda: Activation("tanh"), (4, 3), 2, id="tanh"),
    pytest.param(lambda: Activation("relu"), (5,), 3, id="relu"),
    pytest.param(lambda: Activation("sigmoid"), (5,), 2, id="sigmoid"),
    pytest.param(lambda: Flatten(), (2, 3, 2), 2, id="flatten"),
]


@pytest.mark.parametrize("make, in_shape, batch", LAYERS)
def test_layer_gradients(make, in_shape, batch):
    errors = check_layer(make(), in_shape, batch)
    assert max(errors.values()) <= TOL, errors


@pytest.mark.parametrize("batch, classes", [(1, 3), (4, 10), (3, 2)])
def test_logsoftmax_nll_gradient(batch, classes):
    rng = np.random.default_rng(batch)
    logits = rng.standard_normal((batch, classes)) * 3
    labels = rng.integers(0, classes, batch)
    assert check_loss(NLLLoss(), logits, labels) <= TOL


def test_logsoftmax_nll_value_matches_numpy():
    rng = np.random.default_rng(1)
    logits, labels = rng.standard_normal((5, 7)), rng.integers(0, 7, 5)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    assert NLLLoss().forward(logits, labels) == pytest.approx(-logp[np.arange(5), labels].mean(), rel=1e-12)


@pytest.mark.parametrize("batch, dim", [(1, 1), (3, 7)])
def test_mse_gradient(batch, dim):
    rng = np.random.default_rng(dim)
    pred, target = rng.random((batch, dim)), rng.random((batch, dim))
    assert check_loss(MSELoss(), pred, target) <= TOL
    assert MSELoss().forward(pred, target) == pytest.approx(((pred - target) ** 2).mean(), rel=1e-12)


def test_check_detects_a_wrong_gradient():
    """The checker itself must fail on a broken backward pass."""
    layer = Linear(3)
    original = layer.backward

    def broken(dy):
        dx = original(dy)
        layer.g["w"][0, 0] += 0.1
        return dx

    layer.backward = broken
    assert check_layer(layer, (4,), 2)["w"] > 1e-3


def test_float32_forward_matches_float64():
    rng = np.random.default_rng(0)
    from nets.models import lenet5
    m32, m64 = lenet5(seed=3), lenet5(seed=3, dtype=np.float64)
    x = rng.standard_normal((4, 28, 28, 1))
    np.testing.assert_allclose(m32.forward(x.astype(np.float32)), m64.forward(x), rtol=1e-4, atol=1e-5)


# fused conv + max-pool, and the direct "flat row" kernels of one input channel (stride 1, no pad)
FUSED = [
    pytest.param(lambda: Conv2d(3, 5, act="tanh", pool=2), (12, 11, 1), 2, id="conv1ch-pool2-tanh-odd"),
    pytest.param(lambda: Conv2d(2, 3, pool=2), (7, 8, 1), 1, id="conv1ch-pool2-batch1"),
    pytest.param(lambda: Conv2d(4, 3, act="sigmoid", pool=3), (11, 9, 1), 2, id="conv1ch-pool3-sigmoid"),
    pytest.param(lambda: Conv2d(3, 3, act="relu"), (6, 9, 1), 2, id="conv1ch-relu-nopool"),
    pytest.param(lambda: Conv2d(2, 4), (4, 5, 1), 1, id="conv1ch-nopool-batch1"),
    pytest.param(lambda: Conv2d(8, 5, act="tanh", pool=2), (14, 13, 1), 2, id="conv1ch-pool2-oc8-two-groups"),
    pytest.param(lambda: Conv2d(12, 3, pool=2), (10, 40, 1), 1, id="conv1ch-pool2-oc12-wide-scalar-pool"),
    pytest.param(lambda: Conv2d(1, 5, act="relu", pool=2), (28, 28, 1), 2, id="conv1ch-pool2-oc1-mnist-size"),
    pytest.param(lambda: Conv2d(2, 3, stride=2), (9, 8, 1), 2, id="conv1ch-stride2-im2col-t"),
    pytest.param(lambda: Conv2d(3, 3, pool=2), (9, 8, 2), 2, id="conv-pool2-odd"),
    pytest.param(lambda: Conv2d(4, 3, act="tanh", pool=2), (8, 8, 3), 1, id="conv-pool2-tanh-batch1"),
    pytest.param(lambda: Conv2d(2, 3, stride=2, pad=1, act="relu", pool=2), (9, 7, 2), 2,
                 id="conv-stride2-pad1-pool2-relu"),
]


@pytest.mark.parametrize("make, in_shape, batch", FUSED)
def test_fused_conv_gradients(make, in_shape, batch):
    errors = check_layer(make(), in_shape, batch)
    assert max(errors.values()) <= TOL, errors


@pytest.mark.parametrize("act", [None, "tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("in_shape", [(12, 11, 1), (9, 10, 3)])
def test_fused_conv_pool_matches_separate_layers(act, in_shape):
    """Conv2d(pool=p) == Conv2d -> MaxPool2d -> act, values and gradients (float64)."""
    from nets.model import Model
    rng = np.random.default_rng(7)
    fused = Model([Conv2d(4, 3, act=act, pool=2)], in_shape, dtype=np.float64, seed=1)
    sep = Model([Conv2d(4, 3), MaxPool2d(2)] + ([Activation(act)] if act else []), in_shape,
                dtype=np.float64, seed=1)
    for m in (fused, sep):
        m.layers[0].need_dx = True
    x = rng.standard_normal((3,) + in_shape)
    ya, yb = fused.forward(x), sep.forward(x)
    np.testing.assert_allclose(ya, yb, rtol=1e-12, atol=1e-12)
    d = rng.standard_normal(ya.shape)
    dxa = fused.layers[0].backward(d.copy()).copy()
    dy = d.copy()
    for layer in reversed(sep.layers):
        dy = layer.backward(dy)
    np.testing.assert_allclose(dxa, dy, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fused.grads, sep.grads, rtol=1e-10, atol=1e-12)


def test_conv_chunked_im2col_matches_whole_batch(monkeypatch):
    """Conv2d's im2col path runs in chunks of samples; one sample per chunk must change nothing."""
    from nets.model import Model
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 9, 8, 3))
    d = rng.standard_normal((5, 5, 4, 4))     # output of 9x8 at stride 2, pad 1: 5x4, 4 channels
    outs = []
    for rows in (10 ** 9, 1):
        monkeypatch.setattr(Conv2d, "FWD_CHUNK_ROWS", rows)
        monkeypatch.setattr(Conv2d, "BWD_CHUNK_ROWS", rows)
        m = Model([Conv2d(4, 3, stride=2, pad=1, act="tanh")], (9, 8, 3), dtype=np.float64, seed=2)
        m.layers[0].need_dx = True
        y = m.forward(x).copy()
        dx = m.layers[0].backward(d.copy()).copy()
        outs.append((y, dx, m.grads.copy()))
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)
    monkeypatch.setattr(Conv2d, "BWD_CHUNK_ROWS", 7)
    monkeypatch.setattr(Conv2d, "FWD_CHUNK_ROWS", 7)
    errors = check_layer(Conv2d(3, 3, pool=2), (9, 8, 2), 3)
    assert max(errors.values()) <= TOL, errors


DIRECT = [
    pytest.param(lambda **kw: Conv2d(12, 5, pool=2, **kw), (12, 12, 6), 2, id="direct-lenet-conv2"),
    pytest.param(lambda **kw: Conv2d(20, 3, act="tanh", **kw), (7, 9, 6), 3, id="direct-oc20-nopool-short-rows"),
    pytest.param(lambda **kw: Conv2d(5, 4, stride=2, act="relu", **kw), (11, 13, 5), 2, id="direct-stride2-relu"),
    pytest.param(lambda **kw: Conv2d(3, 5, act="sigmoid", pool=2, **kw), (14, 21, 8), 2,
                 id="direct-q40-pool-sigmoid"),
    pytest.param(lambda **kw: Conv2d(4, 4, **kw), (6, 6, 4), 1, id="direct-q16-batch1"),
]


@pytest.mark.parametrize("make, in_shape, batch", DIRECT)
def test_direct_conv_gradients(make, in_shape, batch):
    layer = make()
    errors = check_layer(layer, in_shape, batch)
    assert layer.algo == "direct"
    assert max(errors.values()) <= TOL, errors


@pytest.mark.parametrize("make, in_shape, batch", DIRECT)
def test_direct_conv_matches_im2col(make, in_shape, batch):
    """The direct kernels and the im2col + BLAS path give the same outputs and gradients."""
    from nets.model import Model
    rng = np.random.default_rng(11)
    x = rng.standard_normal((batch,) + in_shape)
    outs = []
    for algo in ("direct", "im2col"):
        m = Model([make(algo=algo)], in_shape, dtype=np.float64, seed=4)
        layer = m.layers[0]
        assert layer.algo == algo
        layer.need_dx = True
        y = m.forward(x).copy()
        d = np.random.default_rng(12).standard_normal(y.shape)
        dx = layer.backward(d).copy()
        outs.append((y, dx, m.grads.copy()))
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)



def _run_conv(layer_factory, in_shape, x, d, algo):
    from nets.model import Model
    m = Model([layer_factory(algo)], in_shape, dtype=np.float64, seed=5)
    layer = m.layers[0]
    layer.need_dx = True
    assert algo is None or layer.algo == algo
    y = m.forward(x).copy()
    dx = layer.backward(d(y.shape)).copy()
    return y, dx, m.grads.copy()


@pytest.mark.parametrize("seed", range(24))
def test_fast_conv_paths_match_im2col_on_random_shapes(seed):
    """Random shapes through the flat-row (one channel) and direct (KW*C >= 16) kernels, against the
    im2col + BLAS path: outputs, input and parameter gradients (float64)."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 6))
    flat = seed % 2 == 0
    cmin = -(-16 // k)
    C = 1 if flat else int(rng.integers(cmin, cmin + 8))
    stride = 1 if flat else int(rng.integers(1, 3))
    pool = int(rng.choice([0, 2, 2, 3]))
    OC = int(rng.integers(1, 35))
    act = [None, "tanh", "relu", "sigmoid"][seed % 4]
    need = (k + pool * stride) if pool else k
    H, W = int(rng.integers(need, need + 30)), int(rng.integers(need, need + 40))
    B = int(rng.integers(1, 6))
    in_shape = (H, W, C)

    def make(algo=None):
        return Conv2d(OC, k, stride=stride, act=act, pool=pool, algo=algo)

    probe = make()
    try:
        probe.build(in_shape)
    except ValueError:
        pytest.skip("pool does not fit")      # the shape generator may give a too-small output
    assert probe.algo == ("flat" if flat else "direct")
    x = rng.standard_normal((B,) + in_shape)
    gen = np.random.default_rng(seed + 100)
    dys = {}

    def d(shape):
        return dys.setdefault(shape, gen.standard_normal(shape))

    fast = _run_conv(make, in_shape, x, d, None)
    ref = _run_conv(make, in_shape, x, d, "im2col_t" if flat else "im2col")
    for a, b in zip(fast, ref):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kw, in_shape, chosen", [
    ({"n_out": 6, "kernel": 5, "act": "tanh", "pool": 2}, (28, 28, 1), "flat"),           # LeNet's conv1
    ({"n_out": 12, "kernel": 5, "pool": 2}, (12, 12, 6), "direct"),                       # LeNet's conv2
    ({"n_out": 3, "kernel": 3, "stride": 2}, (9, 8, 1), "im2col_t"),
    ({"n_out": 3, "kernel": 3, "pad": 1}, (9, 8, 1), "im2col"),
    ({"n_out": 3, "kernel": 16}, (20, 17, 1), "flat"),                                   # all four fit
])
def test_conv_algorithms_chosen_once_and_all_that_fit_agree(kw, in_shape, chosen):
    """build takes the first algorithm that fits; every one that fits gives the same values and gradients."""
    from nets.layers import ALGOS
    from nets.model import Model
    layer = Conv2d(**kw)
    layer.build(in_shape)
    assert layer.algo == chosen
    rng = np.random.default_rng(21)
    x = rng.standard_normal((3,) + in_shape)
    outs = {}
    for algo in ALGOS:
        try:
            m = Model([Conv2d(**kw, algo=algo)], in_shape, dtype=np.float64, seed=6)
        except ValueError:
            assert algo != chosen and algo != "im2col"   # im2col fits every shape
            continue
        m.layers[0].need_dx = True
        y = m.forward(x).copy()
        dx = m.layers[0].backward(np.random.default_rng(22).standard_normal(y.shape)).copy()
        outs[algo] = (y, dx, m.grads.copy())
    assert chosen in outs and "im2col" in outs
    for algo, got in outs.items():
        for a, b in zip(got, outs["im2col"]):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10, err_msg=algo)
    if kw["kernel"] == 16:
        assert sorted(outs) == sorted(ALGOS)


def test_conv_unknown_algorithm_is_refused():
    with pytest.raises(ValueError, match="algo must be one of"):
        Conv2d(3, 3, algo="fft")


# --------------------------------------------------------------------------- whole nets of any depth

DEEP = [
    pytest.param("mlp", [7, 5, 4], id="mlp-depth3"),
    pytest.param("mlp", [6], id="mlp-depth1"),
    pytest.param("autoencoder", [9, 6, 3], id="autoencoder-3-mirrored"),
    pytest.param("autoencoder", 5, id="autoencoder-int"),
    pytest.param("lenet", [6, 5], id="lenet-fc2"),
]


@pytest.mark.parametrize("net, hidden", DEEP)
def test_whole_net_gradients_at_any_depth(net, hidden):
    """Every parameter of a multi-layer net against central differences (small widths, float64)."""
    from nets.gradcheck import check_model
    from nets.losses import LOSSES
    from nets.models import autoencoder, lenet5, mlp
    rng = np.random.default_rng(0)
    if net == "mlp":
        model, x = mlp(hidden, classes=3, n_in=8, seed=1, dtype=np.float64), rng.standard_normal((3, 8))
        target, loss = rng.integers(0, 3, 3), LOSSES["nll"]()
    elif net == "autoencoder":
        model, x = autoencoder(hidden, n_in=10, seed=1, dtype=np.float64), rng.random((3, 10))
        target, loss = x.copy(), LOSSES["mse"]()
    else:
        model = lenet5(hidden, conv1=2, conv2=3, classes=4, seed=1, dtype=np.float64)
        x = rng.standard_normal((2, 28, 28, 1))
        target, loss = rng.integers(0, 4, 2), LOSSES["nll"]()
    n_linear = sum(type(layer).__name__ == "Linear" for layer in model.layers)
    depth = 1 if isinstance(hidden, int) else len(hidden)
    assert n_linear == {"mlp": depth + 1, "autoencoder": 2 * depth, "lenet": depth + 1}[net]
    assert check_model(model, loss, x, target) <= TOL


@pytest.mark.parametrize("hidden", [[], [0], [4, -1], list(range(1, 10)), [2.5], True])
def test_bad_layer_lists_are_config_errors(hidden):
    from nets.errors import ConfigError
    from nets.models import mlp
    with pytest.raises(ConfigError, match="hidden must be"):
        mlp(hidden)
