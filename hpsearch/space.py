"""Search spaces: the validated YAML parameters and their Optuna distributions.

Three kinds of space reach the driver:

* a tuple of :class:`ParamSpec` from the study file, turned into fixed Optuna distributions
  (``study.ask(fixed_distributions=...)``), so every trial's params are known before dispatch;
* the same with conditional parameters (``when:``) or per-layer lists (``per_layer:``): a
  :class:`Conditional` space, suggested define-by-run in dependency order, so a trial holds exactly
  its active parameters (``units_1 ... units_n`` for a depth of n; ``momentum`` only under sgd);
* a define-by-run function ``space(trial) -> dict`` (Python API only) that calls
  ``trial.suggest_*`` on the driver and returns the params to train with.

Trials store flat params (what Optuna, MLflow and the plots see); :func:`net_params` folds the
per-layer ones into the list the net takes (``units_1, units_2`` -> ``hidden: [.., ..]``).
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

MAX_LAYERS = 8
"""The most layers a ``per_layer`` list may have (the depth parameter's ``high``)."""

Layout = tuple[tuple[str, str, str], ...]
"""The per-layer lists of a space: ``(param, depth param, net param)``, e.g. ``("units", "layers",
"hidden")``: the trial's ``units_1 ... units_<layers>`` go to the net as ``hidden: [...]``."""


@dataclass(frozen=True)
class ParamSpec:
    """One searched hyperparameter, validated.

    ``kind`` is ``"float"``, ``"int"`` or ``"categorical"``; ``low``/``high``/``log``/``step``
    apply to the numeric kinds, ``choices`` to categorical. ``when`` holds ``(categorical param,
    values)`` pairs that must all hold for the parameter to be drawn; ``per_layer`` names the int
    parameter whose value is the number of layers (one draw ``name_i`` per layer), handed to the net
    as its parameter ``target`` (default: ``name``).
    """

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Scalar, ...] = ()
    when: tuple[tuple[str, tuple[Scalar, ...]], ...] = ()
    per_layer: str | None = None
    target: str | None = None

    def describe(self) -> str:
        """A short human form, e.g. ``float [0.001, 0.5] log`` or ``float [0, 0.9] when optimizer=sgd``."""
        if self.kind == "categorical":
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            extra = " log" if self.log else (f" step {self.step}" if self.step else "")
            text = f"{self.kind} [{self.low}, {self.high}]{extra}"
        if self.per_layer:
            text += f" per layer of {self.per_layer} (as {self.target or self.name})"
        for key, values in self.when:
            text += f" when {key}=" + "|".join(str(v) for v in values)
        return text

    def depends_on(self) -> tuple[str, ...]:
        """The parameters this one needs drawn first."""
        return tuple(k for k, _ in self.when) + ((self.per_layer,) if self.per_layer else ())


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
    """Name -> Optuna distribution for every parameter of an unconditional space."""
    return {p.name: to_distribution(p) for p in params}


def is_conditional(params: tuple[ParamSpec, ...]) -> bool:
    """Whether some parameter is drawn only sometimes (``when``) or per layer (``per_layer``)."""
    return any(p.when or p.per_layer for p in params)


def layout(params: tuple[ParamSpec, ...]) -> Layout:
    """The per-layer lists of a space (see :data:`Layout`)."""
    return tuple((p.name, p.per_layer, p.target or p.name) for p in params if p.per_layer)


def layer_names(name: str, n: int) -> list[str]:
    """The flat names of a per-layer parameter's draws: ``units_1 ... units_n``."""
    return [f"{name}_{i}" for i in range(1, n + 1)]


def in_order(params: tuple[ParamSpec, ...]) -> tuple[ParamSpec, ...]:
    """The parameters with each after those it depends on (the spec has refused cycles)."""
    done: dict[str, ParamSpec] = {}
    left = list(params)
    while left:
        ready = [p for p in left if all(d in done for d in p.depends_on())]
        if not ready:
            raise ValueError("cyclic conditions: " + ", ".join(p.name for p in left))
        for p in ready:
            done[p.name] = p
            left.remove(p)
    return tuple(done.values())


def is_active(p: ParamSpec, values: dict[str, Any]) -> bool:
    """Whether ``p`` is drawn given the values drawn so far (its conditions hold, its depth is drawn)."""
    if p.per_layer and p.per_layer not in values:
        return False
    return all(k in values and _one_of(values[k], allowed) for k, allowed in p.when)


def _one_of(value: Any, allowed: tuple[Scalar, ...]) -> bool:
    return any(type(value) is type(a) and value == a for a in allowed)


def active_names(params: tuple[ParamSpec, ...], values: dict[str, Any]) -> set[str]:
    """The flat names a trial with these ``values`` must hold (to tell a complete draw)."""
    names: set[str] = set()
    for p in in_order(params):
        if not is_active(p, values):
            continue
        names.update(layer_names(p.name, int(values[p.per_layer])) if p.per_layer else [p.name])
    return names


class Conditional:
    """A study file's conditional space as a define-by-run function: ``space(trial) -> params``.

    Parameters are suggested in dependency order; an inactive one is not suggested at all, so it is
    absent from the trial (not zero), and a per-layer one is suggested once per layer.
    """

    def __init__(self, params: tuple[ParamSpec, ...]) -> None:
        self.params = in_order(params)

    def __call__(self, trial: optuna.trial.Trial) -> dict[str, Any]:
        import warnings
        values: dict[str, Any] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")     # Optuna's experimental and fallback notes
            for p in self.params:
                if not is_active(p, values):
                    continue
                names = layer_names(p.name, int(values[p.per_layer])) if p.per_layer else [p.name]
                for name in names:
                    values[name] = _draw(trial, name, p)
        return values

    def complete(self, values: dict[str, Any]) -> bool:
        """Whether a trial's params are a whole draw (a driver may have died half-way)."""
        return active_names(self.params, values) <= set(values)


def _draw(trial: optuna.trial.Trial, name: str, p: ParamSpec) -> Any:
    if p.kind == "float":
        return trial.suggest_float(name, float(p.low), float(p.high), log=p.log,
                                   step=None if p.step is None else float(p.step))
    if p.kind == "int":
        return trial.suggest_int(name, int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
    return trial.suggest_categorical(name, list(p.choices))


def net_params(params: dict[str, Any], lists: Layout) -> dict[str, Any]:
    """Flat trial params -> the net's: each per-layer parameter's draws become one list under its
    net parameter, and the depth parameters (which only size the lists) are dropped."""
    if not lists:
        return dict(params)
    out = dict(params)
    for name, depth, target in lists:
        n = params.get(depth)
        if n is None:
            continue
        out[target] = [params[k] for k in layer_names(name, int(n))]
        for k in layer_names(name, MAX_LAYERS):
            out.pop(k, None)
    for _, depth, _ in lists:
        out.pop(depth, None)
    return out


def suggest(trial: optuna.trial.Trial, space: DefineByRun | None) -> dict[str, Any]:
    """The params of an asked trial: its fixed-distribution params, or ``space(trial)``."""
    if space is None:
        return dict(trial.params)
    params = space(trial)
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise TypeError(f"a define-by-run space must return a dict of str keys; got {params!r}")
    return params
