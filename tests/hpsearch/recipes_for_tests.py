"""Custom nets recipes for the hpsearch tests (named in study files as recipes_for_tests:ATTR).

``fragile`` is LeNet with one more hyperparameter, ``mode``:
  ok     trains normally;
  raise  the builder raises RuntimeError;
  nan    the weights are scaled to overflow, so the loss is NaN (nets raises DivergedError);
  die    the worker process kills itself (a lost worker, not a bad config);
  say    trains normally, after writing "fragile says hello" to stdout without a newline.
"""
from __future__ import annotations

import os
import signal

import numpy as np

import nets

_LENET = nets.RECIPES["lenet"]


def _build_fragile(mode: str = "ok", **kw):
    if mode == "raise":
        raise RuntimeError("fragile net refuses to build")
    if mode == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "say":
        print("fragile says hello", end="")
    model = _LENET.build(**kw)
    if mode == "nan":
        model.params *= np.float32(1e30)
    return model


fragile = nets.Recipe(name="fragile", build=_build_fragile, loss=_LENET.loss,
                      load_data=_LENET.load_data, defaults={**_LENET.defaults, "mode": "ok"},
                      metrics=dict(_LENET.metrics))


def make_fragile():
    """A zero-argument factory, as a study's `net: module:attr` may name."""
    return fragile


not_a_recipe = 42
