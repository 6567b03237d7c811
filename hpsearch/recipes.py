"""Recipes and their data: the one place both the spec (driver) and the workers look them up.

Importing this module imports nothing heavy: ``nets`` (and so numba) is imported inside the
functions that need it, so :mod:`hpsearch.spec` can use it at validation time and stay light.
"""
from __future__ import annotations

import importlib
from collections import OrderedDict
from contextlib import suppress
from dataclasses import is_dataclass, replace
from typing import TYPE_CHECKING, Any

from hpsearch.errors import SpecError

if TYPE_CHECKING:
    from hpsearch.spec import StudySpec

DATA_CACHE_SIZE = 2
"""Data sets kept per process (a worker that sees a new data setting drops the oldest)."""

_DATA_CACHE: OrderedDict[tuple, Any] = OrderedDict()


# --------------------------------------------------------------------------- recipes

def available_recipes() -> dict[str, Any]:
    """The recipes the installed nets library offers (empty when nets is not importable)."""
    try:
        import nets
    except ImportError:
        return {}
    return dict(getattr(nets, "RECIPES", {}))


def is_recipe(obj: Any) -> bool:
    """A ``nets.Recipe``, or an object with a recipe's attributes."""
    with suppress(ImportError):
        import nets
        if hasattr(nets, "Recipe") and isinstance(obj, nets.Recipe):
            return True
    return all(hasattr(obj, a) for a in ("name", "defaults", "metrics", "load_data", "build"))


def resolve_recipe(net: str) -> Any:
    """A ``nets.Recipe`` from a built-in name or ``package.module:attr``.

    ``attr`` may be a Recipe or a zero-argument callable returning one.
    """
    if ":" not in net:
        recipes = available_recipes()
        if net not in recipes:
            raise LookupError(f"net '{net}' is not available in the installed nets library")
        return recipes[net]
    module_name, _, attr = net.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise AttributeError(f"module '{module_name}' has no attribute '{attr}'")
        obj = getattr(obj, part)
    if not is_recipe(obj) and callable(obj):
        obj = obj()
    if not is_recipe(obj):
        raise TypeError(f"{net} is not a nets.Recipe (got {type(obj).__name__} {obj!r:.40})")
    return obj


# --------------------------------------------------------------------------- data

def subsample(data: Any, limit: int | None) -> Any:
    """Keep the first ``limit`` training samples and ``max(100, limit // 4)`` validation ones.

    Works on ``nets.Data`` (splits with ``subset(n)``); other data objects are returned whole.
    """
    if limit is None or not is_dataclass(data):
        return data
    train, val = getattr(data, "train", None), getattr(data, "val", None)
    if not hasattr(train, "subset"):
        return data
    changes = {"train": train.subset(limit)}
    if hasattr(val, "subset"):
        changes["val"] = val.subset(max(100, limit // 4))
    return replace(data, **changes)


def data_settings(recipe: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The data settings among ``params`` (and the recipe's defaults): its ``data_keys``."""
    keys = getattr(recipe, "data_keys", ()) or ()
    merged = {**recipe.defaults, **params}
    return {k: merged[k] for k in keys if k in merged}


def load_data(recipe: Any, path: str | None, limit: int | None = None,
              settings: dict[str, Any] | None = None) -> Any:
    """The recipe's data, read once per process per settings, and subsampled to ``limit``.

    The last :data:`DATA_CACHE_SIZE` data sets stay cached.
    """
    settings = settings or {}
    key = (recipe.name, path, limit, tuple(sorted((k, repr(v)) for k, v in settings.items())))
    if key in _DATA_CACHE:
        _DATA_CACHE.move_to_end(key)
        return _DATA_CACHE[key]
    data = recipe.load_data(path, **settings) if settings else recipe.load_data(path)
    _DATA_CACHE[key] = subsample(data, limit)
    while len(_DATA_CACHE) > DATA_CACHE_SIZE:
        _DATA_CACHE.popitem(last=False)
    return _DATA_CACHE[key]


def load_spec_data(spec: StudySpec, recipe: Any) -> Any:
    """The study's data, read on the driver; a data problem is the spec's ``data.path`` error."""
    try:
        return load_data(recipe, spec.data.path, spec.data.limit, data_settings(recipe, spec.fixed))
    except Exception as exc:  # noqa: BLE001 - nets.DataError and whatever a custom loader raises
        where = spec.data.path or f"the bundled data of {spec.net}"
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise SpecError(spec.file, "data.path", f"cannot read {where}: {text}",
                        "check the files (see the nets data formats)") from None
