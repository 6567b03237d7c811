"""Search spaces: the validated YAML parameters and their Optuna distributions.

Two kinds of space reach the driver:

* a tuple of :class:`ParamSpec` from the study file, turned into fixed Optuna distributions
  (``study.ask(fixed_distributions=...)``), so every trial's params are known before dispatch;
* a define-by-run function ``space(trial) -> dict`` (Python API only) that calls
  ``trial.suggest_*`` on the driver and returns the params to train with.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

DefineByRun = Callable[["optuna.trial.Trial"], dict[str, Any]]
"""A define-by-run space: called with an Optuna trial on the driver, returns the params."""

Scalar = Union[None, bool, int, float, str]


@dataclass(frozen=True)
class ParamSpec:
    """One searched hyperparameter, validated.

    ``kind`` is ``"float"``, ``"int"`` or ``"categorical"``; ``low``/``high``/``log``/``step``
    apply to the numeric kinds, ``choices`` to categorical.
    """

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Scalar, ...] = ()

    def describe(self) -> str:
        """A short human form, e.g. ``float [0.001, 0.5] log``."""
        if self.kind == "categorical":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        extra = " log" if self.log else (f" step {self.step}" if self.step else "")
        return f"{self.kind} [{self.low}, {self.high}]{extra}"


def to_distribution(p: ParamSpec) -> BaseDistribution:
    """The Optuna distribution of one parameter."""
    from optuna.distributions import (CategoricalDistribution, FloatDistribution,
                                      IntDistribution)
    if p.kind == "float":
        return FloatDistribution(float(p.low), float(p.high), log=p.log,
                                 step=None if p.step is None else float(p.step))
    if p.kind == "int":
        return IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
    return CategoricalDistribution(list(p.choices))


def distributions(params: tuple[ParamSpec, ...]) -> dict[str, BaseDistribution]:
    """Name -> Optuna distribution for every parameter of a study file's space."""
    return {p.name: to_distribution(p) for p in params}


def suggest(trial: optuna.trial.Trial, space: DefineByRun | None) -> dict[str, Any]:
    """The params of an asked trial: its fixed-distribution params, or ``space(trial)``."""
    if space is None:
        return dict(trial.params)
    params = space(trial)
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise TypeError(f"a define-by-run space must return a dict of str keys; got {params!r}")
    return params
