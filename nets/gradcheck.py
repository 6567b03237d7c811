"""Finite-difference gradient checks for layers and losses (float64, central differences)."""
from __future__ import annotations

import numpy as np

from nets.layers import Layer
from nets.model import Model


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / max(||a||, ||b||), 0 when both are 0."""
    den = max(np.linalg.norm(a), np.linalg.norm(b))
    return 0.0 if den == 0 else float(np.linalg.norm(a - b) / den)


def numeric_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """d f / d x by central differences; f() reads x, which is perturbed in place and restored."""
    g = np.zeros_like(x)
    flat, gf = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gf[i] = (fp - fm) / (2 * eps)
    return g


def check_layer(layer: Layer, in_shape: tuple[int, ...], batch: int = 2, seed: int = 0,
                eps: float = 1e-6) -> dict[str, float]:
    """Relative errors of dx and of every parameter gradient for L = sum(layer(x) * R)."""
    rng = np.random.default_rng(seed)
    model = Model([layer], in_shape, dtype=np.float64, seed=seed)
    layer.need_dx = True
    x = rng.standard_normal((batch,) + tuple(in_shape))
    r = rng.standard_normal((batch,) + tuple(model.output_shape))

    def f() -> float:
        return float(np.sum(layer.forward(x) * r))

    f()
    dx = layer.backward(r.copy())
    errors = {"x": rel_error(np.asarray(dx).copy(), numeric_grad(f, x, eps))}
    analytic = {name: g.copy() for name, g in layer.g.items()}
    for name, p in layer.p.items():
        errors[name] = rel_error(analytic[name], numeric_grad(f, p, eps))
    return errors


def check_loss(loss, pred: np.ndarray, target: np.ndarray, eps: float = 1e-6) -> float:
    """Relative error of d loss / d pred."""
    loss.forward(pred, target)
    analytic = loss.backward().copy()
    return rel_error(analytic, numeric_grad(lambda: loss.forward(pred, target), pred, eps))


def check_model(model: Model, loss, x: np.ndarray, target: np.ndarray, eps: float = 1e-6) -> float:
    """Relative error of d loss / d every parameter of a whole (float64) model, end to end."""
    model.grads[:] = 0
    loss.forward(model.forward(x), target)
    model.backward(loss.backward().copy())
    analytic = model.grads.copy()
    return rel_error(analytic, numeric_grad(lambda: loss.forward(model.forward(x), target), model.params, eps))
