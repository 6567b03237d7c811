"""The text layers and the sequence loss against float64 central differences (relative error <= 1e-6),
including padding positions and sequences of length 1; then whole text models, end to end."""
import numpy as np
import pytest

from nets.gradcheck import check_layer, check_loss, numeric_grad, rel_error
from nets.losses import SeqNLLLoss
from nets.model import Model
from nets.models import rnn_lm, text_cnn, text_cnn_pools
from nets.text_layers import Conv1d, Elman, Embedding, MaxPool1d, SeqMask, TimeLinear

TOL = 1e-6

LAYERS = [
    pytest.param(lambda: Conv1d(4, 3), (7, 2), 2, id="conv1d-3"),
    pytest.param(lambda: Conv1d(3, 5, act="relu"), (9, 3), 2, id="conv1d-5-relu"),
    pytest.param(lambda: Conv1d(2, 2, act="tanh", chunk=3), (6, 2), 3, id="conv1d-chunks-of-3"),
    pytest.param(lambda: Conv1d(3, 1), (1, 4), 1, id="conv1d-length1"),
    pytest.param(lambda: MaxPool1d(2), (7, 3), 2, id="maxpool1d-2-odd"),
    pytest.param(lambda: MaxPool1d(5), (5, 2), 1, id="maxpool1d-global"),
    pytest.param(lambda: Elman(4), (5, 3), 2, id="elman"),
    pytest.param(lambda: Elman(3, in_proj=False), (4, 3), 3, id="elman-no-input-proj"),
    pytest.param(lambda: Elman(4), (1, 2), 2, id="elman-length1"),
    pytest.param(lambda: Elman(2, in_proj=False), (1, 2), 1, id="elman-length1-batch1"),
    pytest.param(lambda: Elman(16), (5, 3), 2, id="elman-vec-16"),
    pytest.param(lambda: Elman(20, in_proj=False), (6, 20), 5, id="elman-vec-20-overlap-batch5"),
    pytest.param(lambda: Elman(37), (3, 5), 3, id="elman-vec-37"),
    pytest.param(lambda: Elman(16), (1, 4), 1, id="elman-vec-length1-batch1"),
    pytest.param(lambda: TimeLinear(5), (3, 4), 2, id="timelinear"),
    pytest.param(lambda: TimeLinear(3), (1, 2), 1, id="timelinear-length1"),
]


@pytest.mark.parametrize("make, in_shape, batch", LAYERS)
def test_layer_gradients(make, in_shape, batch):
    errors = check_layer(make(), in_shape, batch)
    assert max(errors.values()) <= TOL, errors


IDS = [
    pytest.param(np.array([[3, 1, 4, 0, 0], [2, 2, 5, 1, 0]]), id="padded"),
    pytest.param(np.array([[3], [6]]), id="length1"),
    pytest.param(np.array([[5, 0, 0], [0, 0, 0]]), id="length1-and-all-padding"),
]


@pytest.mark.parametrize("ids", IDS)
def test_embedding_gradient_is_sparse_and_exact(ids):
    rng = np.random.default_rng(0)
    layer = Embedding(7, 3)
    model = Model([layer], (ids.shape[1],), dtype=np.float64, seed=1)
    r = rng.standard_normal(ids.shape + (3,))
    layer.g["w"][...] = 99.0                          # stale values must be cleared

    def f():
        return float(np.sum(layer.forward(ids) * r))

    f()
    assert layer.backward(r.copy()) is None
    assert rel_error(layer.g["w"].copy(), numeric_grad(f, layer.p["w"])) <= TOL
    unused = np.setdiff1d(np.arange(7), ids[ids != 0])
    assert not layer.g["w"][unused].any()             # padding row and rows not in the batch: zero
    assert not model.params[:3].any()                 # padding row stays zero


def test_frozen_embedding_has_no_parameters_and_no_gradient_path():
    layer = Embedding(6, 2, frozen=True)
    model = Model([layer], (3,), dtype=np.float64)
    assert model.n_params == 0 and layer.p == {}
    layer.set_table(np.arange(12.0).reshape(6, 2))
    out = layer.forward(np.array([[1, 5, 0]]))
    np.testing.assert_array_equal(out[0], [[2, 3], [10, 11], [0, 0]])
    assert layer.backward(np.ones_like(out)) is None


@pytest.mark.parametrize("ids", IDS)
def test_masked_timelinear_gradient_with_padding(ids):
    """Packed output: only the real positions are computed; dx is zero at padding positions."""
    rng = np.random.default_rng(1)
    mask = SeqMask()
    layer = TimeLinear(4, mask=mask)
    Model([layer], (ids.shape[1], 3), dtype=np.float64, seed=2)
    layer.need_dx = True
    mask.set(ids)
    x = rng.standard_normal(ids.shape + (3,))
    n = int((ids != 0).sum())
    r = rng.standard_normal((n, 4))

    def f():
        return float(np.sum(layer.forward(x) * r))

    f()
    dx = layer.backward(r.copy()).copy()
    assert rel_error(dx, numeric_grad(f, x)) <= TOL
    assert not dx[ids == 0].any()
    for name in ("w", "b"):
        g = layer.g[name].copy()
        assert rel_error(g, numeric_grad(f, layer.p[name])) <= TOL


@pytest.mark.parametrize("targets", [
    pytest.param(np.array([[2, 1, 0], [3, 0, 0]]), id="padded"),
    pytest.param(np.array([[4], [1]]), id="length1"),
    pytest.param(np.array([[1, 2, 3, 4]]), id="no-padding"),
])
def test_sequence_loss_gradient_ignores_padding(targets):
    rng = np.random.default_rng(2)
    logits = rng.standard_normal(targets.shape + (5,)) * 2
    loss = SeqNLLLoss()
    assert check_loss(loss, logits, targets) <= TOL
    loss.forward(logits, targets)
    assert not loss.backward()[targets == 0].any()
    # the value: mean over real tokens only
    z = logits[targets != 0]
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    want = -logp[np.arange(len(z)), targets[targets != 0]].mean()
    assert loss.forward(logits, targets) == pytest.approx(want, rel=1e-12)
    # packed logits (a masked TimeLinear's output) give the same value and gradient
    packed = z.copy()
    assert check_loss(SeqNLLLoss(), packed, targets) <= TOL
    assert SeqNLLLoss().forward(packed, targets) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("vocab", [16, 37, 300])
def test_sequence_loss_vector_lanes(vocab):
    """Vocabularies of whole 16-lane vectors plus a tail: float64 gradient and value, float32 value."""
    rng = np.random.default_rng(vocab)
    targets = rng.integers(1, vocab, (3, 4))
    targets[1, 2:] = 0
    logits = rng.standard_normal(targets.shape + (vocab,)) * 3
    assert check_loss(SeqNLLLoss(), logits, targets) <= TOL
    z = logits[targets != 0]
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    want = -logp[np.arange(len(z)), targets[targets != 0]].mean()
    assert SeqNLLLoss().forward(logits, targets) == pytest.approx(want, rel=1e-12)
    loss32 = SeqNLLLoss()
    assert loss32.forward(logits.astype(np.float32), targets) == pytest.approx(want, rel=1e-5)
    g = loss32.backward()[targets != 0]
    soft = np.exp(logp)
    soft[np.arange(len(z)), targets[targets != 0]] -= 1
    np.testing.assert_allclose(g, soft / len(z), rtol=2e-5, atol=1e-7)


def test_sequence_loss_nan_logit_gives_nan():
    logits = np.zeros((1, 2, 40), np.float32)
    logits[0, 1, 17] = np.nan
    assert np.isnan(SeqNLLLoss().forward(logits, np.array([[3, 5]])))


def _model_gradient_errors(model, x, y, loss) -> float:
    """Relative error of every parameter gradient of loss(model(x), y), float64 central differences."""
    loss.forward(model.forward(x), y)
    model.backward(loss.backward())
    analytic = model.grads.copy()
    numeric = numeric_grad(lambda: loss.forward(model.forward(x), y), model.params)
    return rel_error(analytic, numeric)


def test_rnn_lm_end_to_end_gradient_with_padding_and_length1():
    from nets.data.text import BOS, EOS
    model = rnn_lm(9, hidden=3, length=4, dtype=np.float64, seed=3)
    x = np.array([[BOS, 5, 6, 7], [BOS, 8, 0, 0], [BOS, 0, 0, 0]])      # lengths 4, 2, 1
    y = np.array([[5, 6, 7, EOS], [8, EOS, 0, 0], [EOS, 0, 0, 0]])
    assert _model_gradient_errors(model, x, y, SeqNLLLoss()) <= TOL


@pytest.mark.parametrize("pretrained, fine_tune", [(False, False), (True, False), (True, True)],
                         ids=["learned", "glove-frozen", "glove-fine-tuned"])
def test_text_cnn_end_to_end_gradient(pretrained, fine_tune):
    from nets.losses import NLLLoss
    model = text_cnn(8, 3, length=14, embed=3, filters=2, hidden=3, pretrained=pretrained,
                     fine_tune=fine_tune, dtype=np.float64, seed=4)
    if pretrained:
        model.layers[0].set_table(np.random.default_rng(5).standard_normal((8, 3)))
    x = np.array([[1, 2, 3, 4, 5, 6, 7, 1, 2, 3, 0, 0, 0, 0], [7, 6, 5, 4, 3, 2, 1, 0, 0, 0, 0, 0, 0, 0]])
    assert _model_gradient_errors(model, x, np.array([2, 0]), NLLLoss()) <= TOL
    assert ("w" in model.layers[0].p) == (not pretrained or fine_tune)   # a frozen table is no parameter


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("pretrained", [False, True], ids=["learned", "glove-frozen"])
def test_text_cnn_first_conv_per_word_matches_per_position(dtype, tol, pretrained):
    """The first conv fused with the embedding (once per distinct word) against the plain im2col path:
    same outputs and gradients, with repeated words, padding, an all-padding row and unseen ids."""
    from nets.losses import NLLLoss
    rng = np.random.default_rng(7)
    x = rng.integers(1, 30, (5, 60))
    x[:, 40:] = 0
    x[1, 3:] = 0
    x[2] = 0
    y = rng.integers(0, 4, 5)
    runs = []
    for fused in (True, False):
        model = text_cnn(50, 4, length=60, embed=6, filters=8, hidden=5, pretrained=pretrained,
                         dtype=dtype, seed=3)
        if pretrained:
            model.layers[0].set_table(np.random.default_rng(5).standard_normal((50, 6)))
        if not fused:                               # back to the class's own (im2col) forward/backward
            del model.layers[1].forward, model.layers[1].backward
            model.layers[0].fused = False
        out = model.forward(x).copy()
        loss = NLLLoss()
        loss.forward(out, y)
        model.grads[...] = 0
        model.backward(loss.backward())
        runs.append((out, model.grads.copy()))
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    assert np.abs(runs[0][1]).max() > 0


def test_text_cnn_pools_follow_the_length():
    assert text_cnn_pools(1000) == (5, 5, 35)
    assert text_cnn_pools(500) == (5, 5, 15)
    assert text_cnn_pools(100)[2] >= 1 and text_cnn_pools(13) == (1, 1, 1)
    with pytest.raises(Exception, match="seq_len"):
        text_cnn_pools(12)


@pytest.mark.parametrize("B, T, H", [(6, 7, 40), (1, 3, 16), (5, 1, 23)])
def test_elman_vector_kernels_match_scalar(B, T, H):
    """The lane kernels (H >= 16) against the scalar ones, float64 and float32."""
    from nets.kernels import text as kt
    rng = np.random.default_rng(H)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 2e-6)):
        a = rng.standard_normal((B, T, H)).astype(dtype)
        wh = (rng.standard_normal((H, H)) / np.sqrt(H)).astype(dtype)
        bias = rng.standard_normal(H).astype(dtype)
        h1, h2 = np.empty_like(a), np.empty_like(a)
        kt.elman_forward(h1, a, wh, bias)
        kt.elman_forward_vec(h2, a, wh, bias)
        np.testing.assert_allclose(h2, h1, rtol=tol, atol=tol)
        dh = rng.standard_normal((B, T, H)).astype(dtype)
        dz1, dz2 = np.empty_like(a), np.empty_like(a)
        kt.elman_backward(dz1, np.empty_like(wh), np.empty_like(bias), dh, h1, wh)
        kt.elman_backward_vec(dz2, dh, h1, np.ascontiguousarray(wh.T))
        np.testing.assert_allclose(dz2, dz1, rtol=10 * tol, atol=10 * tol)

