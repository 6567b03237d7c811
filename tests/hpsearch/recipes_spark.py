"""Recipes for the Spark tests (imported by Spark's Python workers through PYTHONPATH).

``once`` is LeNet whose worker process kills itself (SIGKILL) the first time it builds a model for a
given ``marker`` file, and trains normally after: a lost worker that a retry recovers from.
``sleepy`` sleeps ``sleep`` seconds before building, for cancellation tests.
``late`` kills its worker at its second build for a ``marker`` (a trial's second rung), once.
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


def _build_late(marker: str = "", **kw):
    """Counts its builds for ``marker`` (one per rung of a trial run rung by rung) in that file and
    kills its worker at the second one: a worker lost in the middle of a trial."""
    if marker:
        path = Path(marker)
        n = int(path.read_text()) + 1 if path.exists() else 1
        path.write_text(str(n))
        if n == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    return _LENET.build(**kw)


late = nets.Recipe(name="late", build=_build_late, loss="nll", load_data=_LENET.load_data,
                   defaults={**_LENET.defaults, "marker": ""}, metrics=dict(_LENET.metrics))
