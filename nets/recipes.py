"""Recipes: a model builder, its loss, its data loader, its default settings and the metrics it
reports. `train(name, params)` is what `python -m nets train` and hpsearch's trials call."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from nets import models
from nets.data.mnist import load_mnist
from nets.data.splits import Data, Split
from nets.errors import ConfigError
from nets.losses import LOSSES
from nets.model import Model
from nets.optim import make_optimizer
from nets.train import History, TrainConfig, fit

TRAIN_KEYS = ("epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "lr_decay")


@dataclass(frozen=True)
class Recipe:
    """How to build, feed and train one kind of net.

    build(hparams, seed) -> Model takes the architecture hyperparameters (the keys of `defaults`
    that are not training settings); load_data(path or None) -> Data; loss is a key of nets.LOSSES;
    metrics maps each reported metric to "minimize" or "maximize".
    """

    name: str
    build: Callable[..., Model]
    loss: str
    load_data: Callable[[str | None], Data]
    defaults: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    def arch_params(self, params: dict) -> dict:
        return {k: v for k, v in params.items() if k not in TRAIN_KEYS}


@dataclass
class TrainResult:
    model: Model
    history: list[dict]
    stopped: bool
    seconds: float
    first_batch_s: float


def mnist_classify(path: str | None = None) -> Data:
    m = load_mnist(path)
    scale, shift = 1.0 / (255.0 * models.MNIST_STD), -models.MNIST_MEAN / models.MNIST_STD
    return Data(Split(m.train_images, m.train_labels.astype(np.int64), (28, 28, 1), scale, shift),
                Split(m.test_images, m.test_labels.astype(np.int64), (28, 28, 1), scale, shift),
                source=str(m.source))


def mnist_reconstruct(path: str | None = None) -> Data:
    m = load_mnist(path)
    return Data(Split(m.train_images, None, (784,), 1.0 / 255.0),
                Split(m.test_images, None, (784,), 1.0 / 255.0), source=str(m.source))


_COMMON = {"momentum": 0.0, "weight_decay": 0.0, "lr_decay": 0.0}
_CLASSIFY = {"loss": "minimize", "val_loss": "minimize", "val_top1": "maximize", "val_top5": "maximize"}

RECIPES: dict[str, Recipe] = {
    "lenet": Recipe(
        "lenet", lambda hidden=100, conv1=6, conv2=12, seed=0, **kw: models.lenet5(
            hidden, conv1, conv2, seed=seed, **kw),
        "nll", mnist_classify,
        {"epochs": 2, "batch_size": 12, "lr": 0.05, "optimizer": "sgd", "hidden": 100,
         "conv1": 6, "conv2": 12, **_COMMON},
        _CLASSIFY),
    "autoencoder": Recipe(
        "autoencoder", lambda hidden=32, seed=0, **kw: models.autoencoder(hidden, seed=seed, **kw),
        "mse", mnist_reconstruct,
        {"epochs": 2, "batch_size": 150, "lr": 0.01, "optimizer": "adagrad", "hidden": 32, **_COMMON},
        {"loss": "minimize", "val_loss": "minimize"}),
}


def get_recipe(name_or_recipe: str | Recipe) -> Recipe:
    if isinstance(name_or_recipe, Recipe):
        return name_or_recipe
    if name_or_recipe not in RECIPES:
        raise ConfigError(f"unknown net {name_or_recipe!r}; choose one of {sorted(RECIPES)}")
    return RECIPES[name_or_recipe]


def resolve_params(recipe: Recipe, params: dict | None) -> dict:
    params = dict(params or {})
    unknown = sorted(set(params) - set(recipe.defaults))
    if unknown:
        raise ConfigError(f"{recipe.name}: unknown parameter(s) {unknown}; known: {sorted(recipe.defaults)}")
    merged = {**recipe.defaults, **params}
    for key in ("epochs", "batch_size"):
        if int(merged[key]) != merged[key] or merged[key] < 1:
            raise ConfigError(f"{key} must be a whole number >= 1; got {merged[key]!r}")
        merged[key] = int(merged[key])
    return merged


def build_model(recipe: Recipe, params: dict, seed: int = 0, dtype=np.float32) -> Model:
    arch = {"recipe": recipe.name, "hparams": recipe.arch_params(params)}
    return recipe.build(**recipe.arch_params(params), seed=seed, dtype=dtype, arch=arch)


def train(recipe: str | Recipe, params: dict | None = None, data=None, *, epochs: int | None = None,
          seed: int = 0, on_epoch_end=None, reduce_grads=None, on_batch=None) -> TrainResult:
    """Train one configuration. `data` is a path, None (the shipped sample) or a `Data`."""
    t0 = time.perf_counter()
    recipe = get_recipe(recipe)
    p = resolve_params(recipe, params)
    if epochs is not None:
        p["epochs"] = int(epochs)
    if not isinstance(data, Data):
        data = recipe.load_data(data)
    model = build_model(recipe, p, seed)
    opt = make_optimizer(p["optimizer"], p["lr"], momentum=p["momentum"], lr_decay=p["lr_decay"],
                         weight_decay=p["weight_decay"])
    cfg = TrainConfig(epochs=p["epochs"], batch_size=p["batch_size"], seed=seed)
    hist: History = fit(model, LOSSES[recipe.loss](), opt, data.train, data.val, cfg,
                        on_epoch_end, reduce_grads, on_batch)
    return TrainResult(model, hist.epochs, hist.stopped, time.perf_counter() - t0, hist.first_batch_s)
