"""Name -> factory registries for Optuna samplers and pruners.

The registries serve the YAML lookup (``sampler: {name: tpe, seed: 1, n_startup_trials: 5}``) and
test parametrisation alike. Optuna is imported only when a factory is called.
"""
from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna.pruners import BasePruner
    from optuna.samplers import BaseSampler

    from hpsearch.space import ParamSpec

# Constructor arguments that are not plain YAML options (callables, objects) or set elsewhere.
_NOT_OPTIONS = frozenset({"seed", "search_space", "constraints_func", "independent_sampler",
                          "weights", "gamma", "source_trials", "x0"})


@dataclass(frozen=True)
class Factory:
    """An Optuna class named by module and attribute, loaded on first use.

    ``requires`` names an extra package the class needs at run time, checked at validation.
    """

    module: str
    attr: str
    requires: str | None = None
    install: str | None = None

    def load(self) -> type:
        return getattr(importlib.import_module(self.module), self.attr)

    def missing_requirement(self) -> str | None:
        """A one-line install hint when ``requires`` cannot be imported, else ``None``."""
        if self.requires is None:
            return None
        try:
            importlib.import_module(self.requires)
        except ImportError:
            return f"pip install {self.install or self.requires}"
        return None

    def option_names(self) -> list[str]:
        """Keyword arguments the YAML may pass to the constructor (with ``**options``, those of
        the class it extends too)."""
        cls = self.load()
        params = inspect.signature(cls).parameters
        names = [n for n, p in params.items() if p.kind == p.KEYWORD_ONLY or p.kind == p.POSITIONAL_OR_KEYWORD]
        if any(p.kind == p.VAR_KEYWORD for p in params.values()):
            names += [n for n in inspect.signature(cls.__mro__[1]).parameters if n not in names]
        return [n for n in names if n not in _NOT_OPTIONS]


SAMPLERS: dict[str, Factory] = {
    "tpe": Factory("hpsearch.tpe", "WindowedTPESampler"),   # Optuna's TPESampler + ``window``
    "random": Factory("optuna.samplers", "RandomSampler"),
    "grid": Factory("optuna.samplers", "GridSampler"),
    "cmaes": Factory("optuna.samplers", "CmaEsSampler", requires="cmaes"),
    "qmc": Factory("optuna.samplers", "QMCSampler", requires="scipy"),
    "gp": Factory("optuna.samplers", "GPSampler", requires="torch", install="torch"),
    "nsga2": Factory("optuna.samplers", "NSGAIISampler"),
    "nsga3": Factory("optuna.samplers", "NSGAIIISampler"),
}
SINGLE_OBJECTIVE_SAMPLERS = frozenset({"cmaes"})
"""Samplers that cannot search several objectives."""

PRUNERS: dict[str, Factory] = {
    "none": Factory("optuna.pruners", "NopPruner"),
    "median": Factory("optuna.pruners", "MedianPruner"),
    "percentile": Factory("optuna.pruners", "PercentilePruner"),
    "successive_halving": Factory("optuna.pruners", "SuccessiveHalvingPruner"),
    "hyperband": Factory("optuna.pruners", "HyperbandPruner"),
    "mo_asha": Factory("hpsearch.mo_pruner", "MOASHAPruner"),
}
MULTI_OBJECTIVE_PRUNERS = frozenset({"none", "mo_asha"})
"""The pruners of multi-objective studies (the others need a single value per epoch)."""


def grid_values(params: tuple[ParamSpec, ...]) -> dict[str, list[Any]]:
    """The grid of every parameter; ValueError(name, problem) when one has no finite grid."""
    grid: dict[str, list[Any]] = {}
    for p in params:
        if p.when or p.per_layer:
            raise ValueError(p.name, "the grid sampler cannot search a conditional or per-layer "
                             "parameter (a grid point sets every parameter)",
                             "use sampler tpe (or random), or drop when/per_layer")
        if p.kind == "categorical":
            grid[p.name] = list(p.choices)
        elif p.kind == "int" and not p.log:
            grid[p.name] = list(range(int(p.low), int(p.high) + 1, int(p.step or 1)))
        elif p.kind == "float" and p.step and not p.log:
            n = int(math.floor((p.high - p.low) / p.step + 1e-9)) + 1
            grid[p.name] = [round(p.low + i * p.step, 12) for i in range(n)]
        else:
            raise ValueError(p.name, "the grid sampler needs choices, an int range, or a float step",
                             "give it a step or choices")
    return grid


def make_sampler(name: str, options: dict[str, Any], seed: int | None,
                 params: tuple[ParamSpec, ...] = ()) -> BaseSampler:
    """A seeded Optuna sampler from its registry name and YAML options.

    TPE on a conditional space (``when``, ``per_layer``) models the parameters that occur together
    jointly: ``multivariate`` and ``group`` default to true (the YAML may still set them)."""
    from hpsearch.space import is_conditional
    cls = SAMPLERS[name].load()
    if name == "tpe" and is_conditional(params):
        options = {"multivariate": True, "group": True, **options}
    if name == "grid":
        return cls(grid_values(params), seed=seed, **options)
    return cls(seed=seed, **options)


def next_decision(name: str, options: dict[str, Any]) -> Callable[[int], int]:
    """``after(epoch)``: the first epoch after ``epoch`` at which the pruner may stop a trial. Successive
    halving (and Hyperband's brackets, and MO-ASHA) decide only at rungs, ``min_resource *
    reduction_factor**k``, so a trial run rung by rung needs no job boundary in between; other pruners
    may decide after any epoch."""
    if name not in ("successive_halving", "hyperband", "mo_asha") or "min_resource" not in options:
        return lambda epoch: epoch + 1
    eta = int(options.get("reduction_factor", 4 if name == "successive_halving" else 3))
    first = int(options["min_resource"]) * eta ** int(options.get("min_early_stopping_rate", 0))

    def after(epoch: int) -> int:
        r = first
        while r <= epoch:
            r *= eta
        return r
    return after


def make_pruner(name: str, options: dict[str, Any]) -> BasePruner:
    """An Optuna pruner from its registry name and YAML options."""
    return PRUNERS[name].load()(**options)
