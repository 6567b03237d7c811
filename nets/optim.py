"""Optimizers over the flat parameter buffer, with BigDL's learning-rate decay.

The base class owns `step`: it computes the current rate clr = lr / (1 + t * lr_decay), where t is the
number of steps taken so far, and calls `_update(params, grads, clr)`, the one method a subclass writes.
The arrays an optimizer keeps per parameter (momentum, accumulators, moments) are `state()`.
"""
from __future__ import annotations

import numpy as np

from nets.errors import ConfigError
from nets.kernels import optim as ko


class Optimizer:
    def __init__(self, lr: float, lr_decay: float = 0.0, weight_decay: float = 0.0) -> None:
        if not lr > 0:
            raise ConfigError(f"lr must be > 0; got {lr!r}")
        if lr_decay < 0:
            raise ConfigError(f"lr_decay must be >= 0; got {lr_decay!r}")
        if weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0; got {weight_decay!r}")
        self.lr, self.lr_decay, self.weight_decay = float(lr), float(lr_decay), float(weight_decay)
        self.t = 0
        self._arrays: dict[str, np.ndarray] = {}

    def step(self, params: np.ndarray, grads: np.ndarray) -> None:
        clr = self.lr / (1.0 + self.t * self.lr_decay)
        self._update(params, grads, clr)
        self.t += 1

    def _update(self, params: np.ndarray, grads: np.ndarray, clr: float) -> None:
        raise NotImplementedError

    def state(self) -> dict[str, np.ndarray]:
        """The per-parameter arrays by name, in a fixed order (empty before the first step), each shaped
        like the flat parameter buffer. They are the optimizer's own: writing into them (data-parallel
        ranks average them) changes its next steps."""
        return dict(self._arrays)

    def checkpoint(self) -> dict:
        """Everything the next steps depend on, copied: the step count and the arrays (`restore`)."""
        return {"t": self.t, "arrays": {k: v.copy() for k, v in self._arrays.items()}}

    def restore(self, checkpoint: dict) -> None:
        """Continue from a `checkpoint()` (of an optimizer of the same kind and settings)."""
        self.t = int(checkpoint["t"])
        self._arrays = {k: np.array(v) for k, v in checkpoint["arrays"].items()}

    def _state(self, params: np.ndarray, name: str) -> np.ndarray:
        s = self._arrays.get(name)
        if s is None or s.shape != params.shape:
            s = self._arrays[name] = np.zeros_like(params)
        return s


class SGD(Optimizer):
    """SGD with momentum; dampening defaults to momentum, as in BigDL (torch uses 0)."""

    def __init__(self, lr: float, momentum: float = 0.0, dampening: float | None = None,
                 nesterov: bool = False, **kw) -> None:
        super().__init__(lr, **kw)
        if not 0 <= momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1); got {momentum!r}")
        self.momentum = float(momentum)
        self.dampening = self.momentum if dampening is None else float(dampening)
        self.nesterov = bool(nesterov)

    def _update(self, params, grads, clr):
        buf = self._state(params, "buf")
        ko.sgd_update(params, grads, buf, clr, self.momentum, self.dampening, self.weight_decay,
                      self.nesterov, self.t == 0)


class Adagrad(Optimizer):
    def __init__(self, lr: float, eps: float = 1e-10, **kw) -> None:
        super().__init__(lr, **kw)
        self.eps = float(eps)

    def _update(self, params, grads, clr):
        ko.adagrad_update(params, grads, self._state(params, "acc"), clr, self.weight_decay, self.eps)


class Adam(Optimizer):
    def __init__(self, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, **kw) -> None:
        super().__init__(lr, **kw)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def _update(self, params, grads, clr):
        ko.adam_update(params, grads, self._state(params, "m"), self._state(params, "v"), clr,
                       self.beta1, self.beta2, self.eps, self.weight_decay, self.t + 1)


OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "adam": Adam}


def make_optimizer(name: str, lr: float, *, momentum: float = 0.0, lr_decay: float = 0.0,
                   weight_decay: float = 0.0) -> Optimizer:
    if name not in OPTIMIZERS:
        raise ConfigError(f"optimizer must be one of {sorted(OPTIMIZERS)}; got {name!r}")
    if not 0 <= momentum < 1:
        raise ConfigError(f"momentum must be in [0, 1); got {momentum!r}")
    kw = dict(lr_decay=lr_decay, weight_decay=weight_decay)
    if name == "sgd":
        return SGD(lr, momentum=momentum, **kw)
    return OPTIMIZERS[name](lr, **kw)
