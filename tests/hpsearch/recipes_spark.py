"""Recipes for the Spark tests (imported by Spark's Python workers through PYTHONPATH).

``once`` is LeNet whose worker process kills itself (SIGKILL) the first time it builds a model for a
given ``marker`` file, and trains normally after: a lost worker that a retry recovers from.
``sleepy`` sleeps ``sleep`` seconds before building, for cancellation tests.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import nets

_LENET = nets.RECIPES["lenet"]


def _build_once(marker: str = "", **kw):
    if marker and not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return _LENET.build(**kw)


def _build_sleepy(sleep: float = 0.0, **kw):
    time.sleep(sleep)
    return _LENET.build(**kw)


once = nets.Recipe(name="once", build=_build_once, loss="nll", load_data=_LENET.load_data,
                   defaults={**_LENET.defaults, "marker": ""}, metrics=dict(_LENET.metrics))
sleepy = nets.Recipe(name="sleepy", build=_build_sleepy, loss="nll", load_data=_LENET.load_data,
                     defaults={**_LENET.defaults, "sleep": 0.0}, metrics=dict(_LENET.metrics))
