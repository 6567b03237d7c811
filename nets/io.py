"""Save and load a model: one .npz file with the flat weights and the architecture as JSON.

Text models add, in the same file: their constants (a frozen GloVe table: `const_<layer>_<name>`), their
vocabulary (`vocab`, one word per line, line i = id i) and class names (`classes`)."""
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
    extras = {f"const_{i}_{name}": a for i, layer in enumerate(model.layers)
              for name, a in getattr(layer, "consts", {}).items()}
    for key in ("vocab", "classes"):
        if getattr(model, key, None):
            extras[key] = np.array("\n".join(getattr(model, key)))
    np.savez(tmp, params=model.params, arch=np.array(arch), **extras)
    os.replace(tmp, path)
    return path


def load(path: str | Path) -> Model:
    from nets.recipes import RECIPES, build_model

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            params, arch = z["params"], json.loads(str(z["arch"]))
            extras = {k: z[k] for k in z.files if k.startswith("const_") or k in ("vocab", "classes")}
    except FileNotFoundError:
        raise DataError(path, "no such model file") from None
    except (OSError, ValueError, KeyError) as e:
        raise DataError(path, f"not a nets model file ({e})") from None
    name = arch.get("recipe")
    if arch.get("builder"):               # a user's recipe, even one named like a built-in (mlp)
        mod, _, attr = arch["builder"].partition(":")
        recipe = getattr(importlib.import_module(mod), attr)
        recipe = recipe() if callable(recipe) and not hasattr(recipe, "build") else recipe
    elif name in RECIPES:
        recipe = RECIPES[name]
    else:
        raise DataError(path, f"unknown architecture {name!r}")
    model = build_model(recipe, arch.get("hparams", {}), dtype=params.dtype)
    if model.params.shape != params.shape:
        raise DataError(path, f"weights have {params.size} values, architecture needs {model.params.size}")
    model.params[:] = params
    if "text" in arch:                                       # the text pipeline (absent: the first one)
        model.arch["text"] = arch["text"]
    for key, a in extras.items():
        if key in ("vocab", "classes"):
            setattr(model, key, str(a).split("\n"))
            continue
        i, name = key[len("const_"):].split("_", 1)
        consts = getattr(model.layers[int(i)], "consts", {})
        if name not in consts or consts[name].shape != a.shape:
            raise DataError(path, f"constant {key} {a.shape} does not fit the architecture")
        consts[name][...] = a
    return model
