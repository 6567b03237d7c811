"""Save and load a model: one .npz file with the flat weights and the architecture as JSON."""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import numpy as np

from nets.errors import DataError
from nets.model import Model


def save(model: Model, path: str | Path) -> Path:
    """Write atomically (temp file + rename), so a crash never leaves half a model."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    arch = json.dumps({**model.arch, "input_shape": list(model.input_shape)})
    np.savez(tmp, params=model.params, arch=np.array(arch))
    os.replace(tmp, path)
    return path


def load(path: str | Path) -> Model:
    from nets.recipes import RECIPES, build_model

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            params, arch = z["params"], json.loads(str(z["arch"]))
    except FileNotFoundError:
        raise DataError(path, "no such model file") from None
    except (OSError, ValueError, KeyError) as e:
        raise DataError(path, f"not a nets model file ({e})") from None
    name = arch.get("recipe")
    if name in RECIPES:
        recipe = RECIPES[name]
    elif arch.get("builder"):
        mod, _, attr = arch["builder"].partition(":")
        recipe = getattr(importlib.import_module(mod), attr)
        recipe = recipe() if callable(recipe) and not hasattr(recipe, "build") else recipe
    else:
        raise DataError(path, f"unknown architecture {name!r}")
    model = build_model(recipe, arch.get("hparams", {}), dtype=params.dtype)
    if model.params.shape != params.shape:
        raise DataError(path, f"weights have {params.size} values, architecture needs {model.params.size}")
    model.params[:] = params
    return model
