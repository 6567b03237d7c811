"""nets: a small numpy + numba deep-learning library (LeNet-5, autoencoder, text CNN, RNN LM).

nets imports only numpy, numba (and scipy's BLAS through numba); never hpsearch, Spark, Optuna or MLflow.
"""
from nets.data.splits import Data, Split
from nets.errors import ConfigError, DataError, DivergedError, NetsError
from nets.io import load, save
from nets.model import Model
from nets.recipes import RECIPES, Recipe, Run, TrainResult, build_model, get_recipe, prepare, train
from nets.training import History, TrainConfig, TrainState, fit

__all__ = [
    "RECIPES", "Recipe", "Run", "TrainResult", "train", "prepare", "build_model", "get_recipe",
    "Model", "fit", "TrainConfig", "TrainState", "History", "Data", "Split",
    "save", "load", "NetsError", "DataError", "ConfigError", "DivergedError",
]
