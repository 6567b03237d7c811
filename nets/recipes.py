"""Recipes: a model builder, its loss, its data loader, its default settings and the metrics it
reports. `prepare(recipe, params, data, seed=...)` sets a training run up (settings, data, model, loss,
optimizer): `train` (`python -m nets train`), hpsearch's trials, its data-parallel ranks and its
warm-up all start there."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from nets import models
from nets.data.mnist import load_mnist
from nets.data.splits import Data, Split
from nets.errors import ConfigError
from nets.losses import LOSSES, Loss
from nets.metrics import COST_METRICS
from nets.model import Model
from nets.optim import Optimizer, make_optimizer
from nets.training import History, TrainConfig, fit

TRAIN_KEYS = ("epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "lr_decay")


@dataclass(frozen=True)
class Recipe:
    """How to build, feed and train one kind of net.

    build(hparams, seed) -> Model takes the architecture hyperparameters (the keys of `defaults`
    that are not training settings or data settings, plus the sizes the data fixes, from
    `Data.info["arch"]`: vocabulary size, classes, ...); load_data(path or None, **data settings) -> Data,
    where the data settings are the keys of `defaults` named in `data_keys` (sequence length, classes,
    vocabulary size, GloVe file, ...); loss is a key of nets.LOSSES; metrics maps each reported metric
    to "minimize" or "maximize" (every recipe also reports nets.metrics.COST_METRICS: params, infer_ms,
    train_s); list_keys names the architecture settings that also take a list of layer
    widths (`hidden: [256, 64]`: one layer per width).
    """

    name: str
    build: Callable[..., Model]
    loss: str
    load_data: Callable[[str | None], Data]
    defaults: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    data_keys: tuple = ()
    list_keys: tuple = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", {**COST_METRICS, **self.metrics})

    def arch_params(self, params: dict) -> dict:
        return {k: v for k, v in params.items() if k not in TRAIN_KEYS and k not in self.data_keys}

    def data_params(self, params: dict) -> dict:
        """The data settings among `params` (all of them when `params` are resolved: defaults filled in)."""
        return {k: params[k] for k in self.data_keys if k in params}


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


def mnist_flat(path: str | None = None) -> Data:
    """MNIST for classifiers that see 784 values (the mlp): normalised like LeNet's images."""
    m = load_mnist(path)
    scale, shift = 1.0 / (255.0 * models.MNIST_STD), -models.MNIST_MEAN / models.MNIST_STD
    return Data(Split(m.train_images, m.train_labels.astype(np.int64), (784,), scale, shift),
                Split(m.test_images, m.test_labels.astype(np.int64), (784,), scale, shift),
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
        _CLASSIFY, list_keys=("hidden",)),
    "autoencoder": Recipe(
        "autoencoder", lambda hidden=32, seed=0, **kw: models.autoencoder(hidden, seed=seed, **kw),
        "mse", mnist_reconstruct,
        {"epochs": 2, "batch_size": 150, "lr": 0.01, "optimizer": "adagrad", "hidden": 32, **_COMMON},
        {"loss": "minimize", "val_loss": "minimize"}, list_keys=("hidden",)),
    "mlp": Recipe(
        "mlp", lambda hidden=128, seed=0, **kw: models.mlp(hidden, seed=seed, **kw),
        "nll", mnist_flat,
        {"epochs": 2, "batch_size": 32, "lr": 0.05, "optimizer": "sgd", "hidden": 128, **_COMMON},
        _CLASSIFY, list_keys=("hidden",)),
}


def text_classify(path: str | None = None, **settings) -> Data:
    from nets.data.text import load_newsgroups
    return load_newsgroups(path, **settings)


def text_corpus(path: str | None = None, **settings) -> Data:
    from nets.data.text import load_corpus
    return load_corpus(path, **settings)


RECIPES["textcnn"] = Recipe(
    "textcnn", models.text_cnn, "nll", text_classify,
    {"epochs": 2, "batch_size": 128, "lr": 0.01, "optimizer": "adagrad", **_COMMON, "lr_decay": 2e-4,
     "embed": 100, "filters": 128, "hidden": 100, "fine_tune": False, "embed_init": "normal",
     "seq_len": 1000, "classes": None, "vocab": 20000, "skip_top": 0, "glove": None,
     "drop_headers": False, "val_fraction": 0.2, "pipeline": 2},
    _CLASSIFY,
    data_keys=("seq_len", "classes", "vocab", "skip_top", "glove", "drop_headers", "val_fraction", "pipeline"))

RECIPES["rnn"] = Recipe(
    "rnn", models.rnn_lm, "seq_nll", text_corpus,
    {"epochs": 2, "batch_size": 12, "lr": 0.1, "optimizer": "sgd", **_COMMON, "hidden": 40,
     "vocab": 4000, "max_len": 50, "val_fraction": 0.2},
    {"loss": "minimize", "val_loss": "minimize", "val_ppl": "minimize"},
    data_keys=("vocab", "max_len", "val_fraction"))


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


def load_data(recipe: str | Recipe, path: str | None = None, params: dict | None = None) -> Data:
    """The recipe's data at `path`, read with the data settings among `params` (defaults otherwise)."""
    recipe = get_recipe(recipe)
    return recipe.load_data(path, **recipe.data_params(params or {}))


def data_info(data) -> dict | None:
    """The text metadata of a Data (vocabulary, classes, sizes), also found on its splits."""
    info = getattr(data, "info", None)
    return info if info is not None else getattr(getattr(data, "train", None), "info", None)


def build_model(recipe: Recipe, params: dict, seed: int = 0, dtype=np.float32, info: dict | None = None) -> Model:
    """The recipe's model; `info` (a text Data's info) adds the sizes the data fixes, the vocabulary,
    the class names and pre-trained embedding vectors."""
    hparams = {**recipe.arch_params(params), **((info or {}).get("arch") or {})}
    arch = {"recipe": recipe.name, "hparams": hparams}
    model = recipe.build(**hparams, seed=seed, dtype=dtype, arch=arch)
    if info:
        attach_text_info(model, info)
    return model


def attach_text_info(model: Model, info: dict) -> None:
    """Vocabulary and class names onto the model (nets.save keeps them); GloVe vectors into its table."""
    model.vocab = list(info.get("vocab") or [])
    if info.get("text"):                                     # how its text becomes ids (nets.data.text)
        model.arch["text"] = dict(info["text"])
    if info.get("classes") is not None:
        model.classes = list(info["classes"])
    if info.get("embedding") is not None:
        from nets.text_layers import Embedding
        next(layer for layer in model.layers if isinstance(layer, Embedding)).set_table(info["embedding"])


def check_data_params(recipe: Recipe, explicit: dict, info: dict | None) -> None:
    """Data read beforehand must have been read with the data settings asked for now, and explicit
    architecture settings must fit the sizes the data fixes (--embed vs the GloVe vectors' width)."""
    for k, v in ((info or {}).get("arch") or {}).items():   # sizes the data fixes (GloVe's width)
        if k in explicit and explicit[k] != v:
            raise ConfigError(f"{recipe.name}: {k}={explicit[k]!r} does not fit the data, which fixes {k}={v!r}")
    read_with = (info or {}).get("data_params")
    if not read_with:
        return
    diff = {k: v for k, v in recipe.data_params(explicit).items() if k in read_with and read_with[k] != v}
    if diff:
        k = sorted(diff)[0]
        raise ConfigError(f"{recipe.name}: the data was read with {k}={read_with[k]!r}, not {diff[k]!r}; "
                          "read it again with these settings (nets.recipes.load_data)")


@dataclass
class Run:
    """One training run, set up: the settings (defaults filled in), the data, and the model, loss,
    optimizer and loop settings built from them."""

    recipe: Recipe
    params: dict
    data: Data
    model: Model
    loss: Loss
    opt: Optimizer
    config: TrainConfig

    def fit(self, on_epoch_end=None, reduce_grads=None, on_batch=None) -> History:
        """Train on the data's training split, validating on its validation split (nets.fit's hooks)."""
        return fit(self.model, self.loss, self.opt, self.data.train, self.data.val, self.config,
                   on_epoch_end, reduce_grads, on_batch)


def prepare(recipe: str | Recipe, params: dict | None = None, data=None, *, seed: int = 0,
            epochs: int | None = None, load: Callable[[str | None, dict], Data] | None = None) -> Run:
    """Set one training run up: the one place that turns a recipe, `params` and a seed into a model,
    loss, optimizer, loop settings and data.

    `params` are checked (unknown keys, whole epochs and batch sizes) and completed with the recipe's
    defaults; `epochs` overrides theirs. `data` is a loaded `Data`, or a path (None: the shipped
    sample) that `load(path, data settings)` reads (default: the recipe's own loader, with the
    settings as keywords). Data read beforehand must have been read with the data settings `params`
    name (ConfigError otherwise).
    """
    recipe = get_recipe(recipe)
    p = resolve_params(recipe, params)
    if epochs is not None:
        p["epochs"] = int(epochs)
    if not isinstance(data, Data):
        data = (load or _own_loader(recipe))(data, recipe.data_params(p))
    info = data_info(data)
    check_data_params(recipe, params or {}, info)
    model = build_model(recipe, p, seed, info=info)
    opt = make_optimizer(p["optimizer"], p["lr"], momentum=p["momentum"], lr_decay=p["lr_decay"],
                         weight_decay=p["weight_decay"])
    cfg = TrainConfig(epochs=p["epochs"], batch_size=p["batch_size"], seed=seed)
    return Run(recipe, p, data, model, LOSSES[recipe.loss](), opt, cfg)


def _own_loader(recipe: Recipe) -> Callable[[str | None, dict], Data]:
    return lambda path, settings: recipe.load_data(path, **settings)


def train(recipe: str | Recipe, params: dict | None = None, data=None, *, epochs: int | None = None,
          seed: int = 0, on_epoch_end=None, reduce_grads=None, on_batch=None) -> TrainResult:
    """Train one configuration. `data` is a path, None (the shipped sample) or a `Data`."""
    t0 = time.perf_counter()
    run = prepare(recipe, params, data, seed=seed, epochs=epochs)
    hist = run.fit(on_epoch_end, reduce_grads, on_batch)
    return TrainResult(run.model, hist.epochs, hist.stopped, time.perf_counter() - t0, hist.first_batch_s)
