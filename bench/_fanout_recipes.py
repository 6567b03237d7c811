"""Nets recipes for bench/fanout.py: trials that cost (almost) nothing, or exactly one second.

Both train a real LeNet on one batch of the shipped sample; ``sleepy`` also sleeps one second in its
first backward pass, so its trials are one-second trials whatever the machine (and building or
loading its model, as the MLflow Model of a best trial does, costs no second).
"""
from __future__ import annotations

import time

import nets

_LENET = nets.RECIPES["lenet"]


def _trivial_data(path=None):
    d = _LENET.load_data(path)
    return nets.Data(d.train.subset(12), d.val.subset(12), d.source)


def _napping(model):
    """``model``, sleeping one second in its first backward pass: a trial (training) takes one
    second more, while building or loading the model (the MLflow Model, predict) takes none."""
    backward, napped = model.backward, [False]

    def napping_backward(*args, **kwargs):
        if not napped[0]:
            time.sleep(1.0)
            napped[0] = True
        return backward(*args, **kwargs)

    model.backward = napping_backward
    return model


def _sleepy_build(**kw):
    return _napping(_LENET.build(**kw))


trivial = nets.Recipe(name="trivial", build=_LENET.build, loss="nll", load_data=_trivial_data,
                      defaults={**_LENET.defaults, "epochs": 1}, metrics=dict(_LENET.metrics))
sleepy = nets.Recipe(name="sleepy", build=_sleepy_build, loss="nll", load_data=_trivial_data,
                     defaults={**_LENET.defaults, "epochs": 1}, metrics=dict(_LENET.metrics))


def _tiny_data(path=None):
    d = nets.RECIPES["mlp"].load_data(path)
    return nets.Data(d.train.subset(12), d.val.subset(12), d.source)


def _napping_mlp(hidden=4, **kw):
    return _napping(nets.RECIPES["mlp"].build(hidden=hidden, **kw))


# bench/scale.py: trials whose compute is a 784-4-10 MLP on 12 images (about a millisecond), so that
# 16 or 64 slots of them do not need 16 or 64 cores; ``napper`` also sleeps one second
_MLP = nets.RECIPES["mlp"]
tiny = nets.Recipe(name="tiny", build=_MLP.build, loss="nll",
                   load_data=_tiny_data, defaults={**_MLP.defaults, "epochs": 1, "hidden": 4},
                   metrics=dict(_MLP.metrics))
napper = nets.Recipe(name="napper", build=_napping_mlp, loss="nll", load_data=_tiny_data,
                     defaults={**_MLP.defaults, "epochs": 1, "hidden": 4}, metrics=dict(_MLP.metrics))
