"""The winner as an MLflow Model: a ``pyfunc`` flavor of our own over ``nets.load`` (no PyTorch).

The model directory holds the ``nets.save`` file (``artifacts/model.npz``), the model's code
(``hpsearch/mlflow_pyfunc.py``, MLflow's "models from code": nothing is unpickled; loading it needs
``hpsearch`` and ``nets`` importable, as with ``--env-manager local``), an input signature, an
input example, and explicit pip requirements (so nothing is inferred, which would load the model and
take seconds). It scores exactly as
``hpsearch predict`` does (:func:`hpsearch.scoring.score`):

================ ===================================== =========================================
net              input (one column)                    output
================ ===================================== =========================================
image classifier ``pixels``: 784 raw 0..255 numbers    ``long``: the class
autoencoder      ``pixels``, as above                  ``double``: reconstruction error
text classifier  ``text``: a raw document              ``string``: the class name
language model   ``text``: words; the last is scored   ``double``: log P(last word | the words before)
================ ===================================== =========================================

So ``mlflow.pyfunc.load_model``, ``mlflow models serve``, ``mlflow.models.predict`` and
``mlflow.pyfunc.spark_udf`` all work on it. Written by the driver only (:mod:`hpsearch.tracking`).
"""
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from hpsearch.scoring import (
    DEFAULT_COLUMNS,
    IMAGE,
    LM,
    RECONSTRUCT,
    TEXT,
    model_from_bytes,
    model_kind,
)

CODE = Path(__file__).with_name("mlflow_pyfunc.py")
WEIGHTS = "weights"                      # the artifact key of the .npz in the model directory
OUTPUT_TYPES = {IMAGE: "long", RECONSTRUCT: "double", TEXT: "string", LM: "double"}
_DTYPES = {IMAGE: "int64", RECONSTRUCT: "float64", TEXT: "object", LM: "float64"}


class NetsModel(mlflow.pyfunc.PythonModel):
    """A ``nets`` model as an MLflow ``PythonModel``: one input column in, one prediction out."""

    def load_context(self, context):
        import nets
        self.model = nets.load(context.artifacts[WEIGHTS])
        self.kind = model_kind(self.model)

    def predict(self, context, model_input: pd.DataFrame, params=None):
        from hpsearch.scoring import score
        values = _column(model_input, DEFAULT_COLUMNS[self.kind])
        values = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]
        return _array(score(self.model, self.kind, values), _DTYPES[self.kind])


def _array(values: list[Any], dtype: str) -> Any:
    """The predictions as a 1-D array (MLflow's REST answer: ``{"predictions": [...]}``); an
    object array, with None, when an input was null."""
    import numpy as np
    if dtype == "object" or any(v is None for v in values):
        return np.array(values, dtype=object)
    return np.array(values, dtype=dtype)


def _column(data: Any, name: str) -> list[Any]:
    """The input values: the named (else the only) column of a DataFrame, or a Series, an array of
    rows, a list, or a single text."""
    import numpy as np
    if isinstance(data, pd.DataFrame):
        if name not in data.columns and len(data.columns) != 1:
            raise ValueError(f"the input needs a column '{name}' (got: {', '.join(map(str, data.columns))})")
        return list(data[name] if name in data.columns else data.iloc[:, 0])
    if isinstance(data, pd.Series):
        return list(data)
    if isinstance(data, dict):
        return list(data[name])
    if isinstance(data, str):
        return [data]
    if isinstance(data, np.ndarray) and data.ndim == 1 and data.dtype.kind in "iuf":
        return [data]                                    # one image
    return list(data)


def signature_and_example(model: Any, kind: str) -> tuple[Any, Any]:
    """The input/output signature and a one-row input example for a model of ``kind``."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema
    from mlflow.types.schema import Array
    column = DEFAULT_COLUMNS[kind]
    if kind in (IMAGE, RECONSTRUCT):
        size = int(np.prod(model.input_shape))
        side = round(size ** 0.5)
        image = np.zeros((side, size // side))
        image[side // 4: 3 * side // 4, side // 2 - 1: side // 2 + 2] = 255.0   # a stroke: a "1"
        inputs = Schema([ColSpec(Array(DataType.double), column)])
        example = pd.DataFrame({column: [image.ravel().tolist()]})
    else:
        words = [w for w in getattr(model, "vocab", [])[:40] if w.isalpha()][:8] or ["hello", "world"]
        inputs = Schema([ColSpec(DataType.string, column)])
        example = pd.DataFrame({column: [" ".join(words)]})
    outputs = Schema([ColSpec(getattr(DataType, OUTPUT_TYPES[kind]), "prediction")])
    return ModelSignature(inputs=inputs, outputs=outputs), example


def pip_requirements() -> list[str]:
    """What loading the model needs, pinned to this environment (never inferred: that is slow)."""
    from importlib.metadata import PackageNotFoundError, version

    import numba
    import numpy
    import pandas
    reqs = [f"mlflow=={mlflow.__version__}", f"numpy=={numpy.__version__}",
            f"numba=={numba.__version__}", f"pandas=={pandas.__version__}"]
    try:
        reqs.append(f"hpsearch=={version('hpsearch')}")
    except PackageNotFoundError:
        reqs.append("hpsearch")
    return reqs


def save(weights: bytes, path: str, mlflow_model: Any = None) -> str:
    """Write the MLflow Model directory for the ``nets.save`` bytes ``weights`` at ``path``;
    returns the model's kind."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    model = model_from_bytes(weights)
    kind = model_kind(model)
    signature, example = signature_and_example(model, kind)
    with tempfile.TemporaryDirectory(prefix="hpsearch-model-") as tmp:
        npz = os.path.join(tmp, "model.npz")
        with open(npz, "wb") as fh:
            fh.write(weights)
        mlflow.pyfunc.save_model(path, python_model=str(CODE), artifacts={WEIGHTS: npz},
                                 signature=signature, input_example=example,
                                 pip_requirements=pip_requirements(), mlflow_model=mlflow_model)
    return kind


def log(client: Any, experiment_id: str, run_id: str, name: str, weights: bytes,
        tags: dict[str, str] | None = None, params: dict[str, Any] | None = None) -> str:
    """Log ``weights`` as an MLflow Model named ``name`` of run ``run_id`` (a LoggedModel, so
    ``models:/<id>`` and ``runs:/<run_id>/<name>`` both load it) through ``client`` alone: no
    active run, no global tracking URI. Returns the model id."""
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model
    logged = client.create_logged_model(experiment_id, name=name, source_run_id=run_id,
                                        tags=tags or None,
                                        params={k: str(v) for k, v in (params or {}).items()} or None)
    try:
        with tempfile.TemporaryDirectory(prefix="hpsearch-mlmodel-") as tmp:
            local = os.path.join(tmp, name)
            meta = Model(artifact_path=logged.artifact_location, run_id=run_id,
                         model_uuid=logged.model_id, model_id=logged.model_id)
            save(weights, local, meta)
            client.log_model_artifacts(logged.model_id, local)
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    return logged.model_id


ALIAS = "champion"


def register(client: Any, name: str, model_id: str, run_id: str, value: float, metric: str,
             direction: str, tags: dict[str, str] | None = None, alias: str = ALIAS) -> str:
    """A new version of registered model ``name`` (created when missing) from LoggedModel
    ``model_id``, its objective ``value`` in the version's tags; ``alias`` moves to it only when it
    beats the version the alias points at (same metric; ``direction``), or when no version has the
    alias. A champion whose metric differs, or that has no ``hpsearch.value`` (an alias set by hand),
    keeps the alias. Returns a one-line note of what happened."""
    from mlflow.exceptions import MlflowException
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    # the LoggedModel's artifact location, not models:/ID, which MLflow resolves with the global
    # tracking URI rather than this client's
    source = client.get_logged_model(model_id).artifact_location
    version = client.create_model_version(
        name, source=source, run_id=run_id, model_id=model_id,
        tags={**(tags or {}), "hpsearch.value": repr(float(value)), "hpsearch.metric": metric,
              "hpsearch.direction": direction}).version
    try:
        champion = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        champion = None
    here = f"{name} version {version} ({metric} {value:.6g})"
    if champion is not None:
        old = champion.tags.get("hpsearch.value")
        same = champion.tags.get("hpsearch.metric") == metric and old is not None
        better = same and (value < float(old) if direction == "minimize" else value > float(old))
        if not better:
            why = (f"{metric} {float(old):.6g}, not beaten" if same else
                   f"not comparable: its metric is {champion.tags.get('hpsearch.metric') or 'unknown'}")
            return f"{here}; '{alias}' stays on version {champion.version} ({why})"
    client.set_registered_model_alias(name, alias, version)
    return f"{here}, now '{alias}'"
