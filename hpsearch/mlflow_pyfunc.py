"""The code of hpsearch's MLflow Models ("models from code": MLflow copies this file into each model
directory and runs it on load, so nothing is unpickled). See :mod:`hpsearch.mlflow_model`."""
import mlflow.models

from hpsearch.mlflow_model import NetsModel

mlflow.models.set_model(NetsModel())
