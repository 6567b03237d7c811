"""Nets recipes for bench/fanout.py: trials that cost (almost) nothing, or exactly one second.

Both train a real LeNet on one batch of the shipped sample; ``sleepy`` also sleeps one second in its
builder, so its trials are one-second trials whatever the machine.
"""
from __future__ import annotations

import time

import nets

_LENET = nets.RECIPES["lenet"]


def _trivial_data(path=None):
    d = _LENET.load_data(path)
    return nets.Data(d.train.subset(12), d.val.subset(12), d.source)


def _sleepy_build(**kw):
    time.sleep(1.0)
    return _LENET.build(**kw)


trivial = nets.Recipe(name="trivial", build=_LENET.build, loss="nll", load_data=_trivial_data,
                      defaults={**_LENET.defaults, "epochs": 1}, metrics=dict(_LENET.metrics))
sleepy = nets.Recipe(name="sleepy", build=_sleepy_build, loss="nll", load_data=_trivial_data,
                     defaults={**_LENET.defaults, "epochs": 1}, metrics=dict(_LENET.metrics))
