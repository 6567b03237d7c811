"""Score data with a study's best model: a vectorised Spark SQL UDF, and Parquet in, Parquet out.

::

    import hpsearch
    hpsearch.register_udf(spark, "studies/lenet.yaml", name="lenet_predict")
    spark.sql("SELECT id, lenet_predict(pixels) AS digit FROM images")

    hpsearch predict studies/lenet.yaml --input images.parquet --output digits.parquet

What each net takes and returns (one input column; a null input gives a null result):

============ =========================================== ==============================================
net          input column                                result
============ =========================================== ==============================================
lenet        ``array<float|double|int>``: 784 raw pixel  ``int``: the class, 0..9 (argmax of the
             values 0..255, row-major 28x28 (as in the   log-probabilities)
             MNIST IDX files)
autoencoder  the same pixels                             ``double``: reconstruction error, the mean
                                                         over the 784 values of (output - pixel/255)^2
textcnn      ``string``: a raw document                  ``string``: the class name (e.g. the
                                                         newsgroup), tokenised as in training
rnn          ``string``: words; the last one is scored   ``double``: log P(last word | the words before
                                                         it), natural log; a sentence start ``<s>`` is
                                                         put first, unknown words count as ``<unk>``
============ =========================================== ==============================================

A custom net (``net: module:attr``) is scored by what it is: an embedding first is a text net (a
time-distributed output makes it a language model), else a log-softmax head is an image classifier
and an output the shape of the input an autoencoder. Pixels get the scaling the built-in recipes
train with (LeNet: MNIST mean/std; autoencoder: /255).

The weights: the best trial's ``model/model.npz`` (a ``nets.save`` file) is downloaded from MLflow
once on the driver, its bytes are broadcast once (on Spark Connect, which has no ``sparkContext``,
they travel inside the UDF itself), and every Python worker loads the model once (a per-worker cache
keyed by the bytes' SHA-256), then scores whole Arrow batches with ``model.predict``.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.errors import HpsearchError

if TYPE_CHECKING:          # numpy is imported where it is used: `import hpsearch` stays light
    import numpy as np

    from hpsearch.spec import StudySpec

IMAGE, RECONSTRUCT, TEXT, LM = "image_classifier", "reconstruction", "text_classifier", "language_model"
RETURN_TYPES = {IMAGE: "int", RECONSTRUCT: "double", TEXT: "string", LM: "double"}
DEFAULT_COLUMNS = {IMAGE: "pixels", RECONSTRUCT: "pixels", TEXT: "text", LM: "text"}
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
MODEL_CACHE_SIZE = 4
"""Models kept per Python worker (the oldest is decoded again from its broadcast when needed)."""
_MODELS: OrderedDict[str, tuple[Any, str]] = OrderedDict()   # SHA-256 of the bytes -> (model, kind)


@dataclass(frozen=True)
class Weights:
    """A model file's bytes and where they came from."""

    data: bytes
    source: str
    run_id: str | None = None

    @property
    def key(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


# --------------------------------------------------------------------------- the model

def model_from_bytes(data: bytes) -> Any:
    """A ``nets`` model from the bytes of a ``nets.save`` file."""
    import nets
    fd, path = tempfile.mkstemp(suffix=".npz", prefix="hpsearch-model-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return nets.load(path)
    finally:
        os.unlink(path)


def model_kind(model: Any) -> str:
    """What the model computes: IMAGE, RECONSTRUCT, TEXT or LM (see the module docstring)."""
    from nets.text_layers import Embedding, TimeLinear
    first, last = model.layers[0], model.layers[-1]
    if isinstance(first, Embedding):
        return LM if isinstance(last, TimeLinear) else TEXT
    if model.head == "logsoftmax":
        return IMAGE
    if tuple(model.output_shape) == tuple(model.input_shape):
        return RECONSTRUCT
    raise HpsearchError(f"cannot score this model: output {model.output_shape} from input "
                        f"{model.input_shape} is neither classes nor a reconstruction")


def _input_size(model: Any) -> int:
    size = 1
    for d in model.input_shape:
        size *= int(d)
    return size


def _pixel_scaling(kind: str) -> tuple[float, float]:
    from nets import models
    if kind == IMAGE:
        return 1.0 / (255.0 * models.MNIST_STD), -models.MNIST_MEAN / models.MNIST_STD
    return 1.0 / 255.0, 0.0


def _pixels(model: Any, kind: str, rows: list[Any]) -> np.ndarray:
    """Raw pixel rows -> the model's input batch, with nets' own preprocessing (``Split``)."""
    import numpy as np
    from nets.data.splits import Split
    size = int(np.prod(model.input_shape))
    bad = next((len(r) for r in rows if len(r) != size), None)
    if bad is not None:
        raise ValueError(f"each row must hold {size} pixel values (raw 0..255, row-major); got {bad}")
    raw = np.asarray([np.asarray(r, np.float32) for r in rows], np.float32).reshape(len(rows), size)
    scale, shift = _pixel_scaling(kind)
    return Split(raw, None, tuple(model.input_shape), scale, shift).inputs(model.dtype)


def _lm_scores(model: Any, texts: list[str]) -> list[float | None]:
    import numpy as np
    from nets.data.text import BOS, LM_SPECIALS, PAD, UNK, sentence_tokens
    index = {w: i for i, w in enumerate(model.vocab) if i >= len(LM_SPECIALS)}
    length = int(model.input_shape[0])
    samples = []
    for text in texts:
        ids = [BOS] + [index.get(w, UNK) for w in sentence_tokens(text)]
        samples.append(None if len(ids) < 2 else (ids[:-1][-length:], ids[-1]))
    real = [s for s in samples if s is not None]
    out: list[float | None] = [None] * len(samples)
    if not real:
        return out
    width = max(len(x) for x, _ in real)
    x = np.full((len(real), width), PAD, np.int32)
    for n, (ctx, _) in enumerate(real):
        x[n, :len(ctx)] = ctx
    logp = model.predict(x)                       # (sum of lengths, V): packed, row-major
    ends = np.cumsum([len(ctx) for ctx, _ in real]) - 1
    values = iter(float(logp[end, target]) for end, (_, target) in zip(ends, real))
    return [None if s is None else next(values) for s in samples]


def score(model: Any, kind: str, values: list[Any]) -> list[Any]:
    """Score a batch of input values (None allowed) with ``model``; one result (or None) each."""
    import numpy as np
    keep = [i for i, v in enumerate(values) if v is not None]
    out: list[Any] = [None] * len(values)
    if not keep:
        return out
    rows = [values[i] for i in keep]
    if kind == LM:
        got: list[Any] = _lm_scores(model, [str(r) for r in rows])
    elif kind == TEXT:
        from nets.data.text import encode_texts
        ids = encode_texts([str(r) for r in rows], model.vocab, int(model.input_shape[0]), model.arch.get("text"))
        best = model.predict(ids).argmax(axis=1)
        names = getattr(model, "classes", None)
        got = [names[i] if names else str(int(i)) for i in best]
    else:
        x = _pixels(model, kind, rows)
        y = model.predict(x)
        if kind == IMAGE:
            got = [int(i) for i in y.argmax(axis=1)]
        else:
            target = x.reshape(len(x), -1)
            got = [float(e) for e in np.mean((y.reshape(len(y), -1) - target) ** 2, axis=1,
                                             dtype=np.float64)]
    for i, v in zip(keep, got):
        out[i] = v
    return out


# --------------------------------------------------------------------------- the weights

def _download(client: Any, run_id: str, path: str) -> bytes | None:
    from hpsearch.scoped import environ
    bar = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR",
                                                                  "false")}
    with environ(bar), tempfile.TemporaryDirectory(prefix="hpsearch-dl-") as tmp:
        try:
            local = client.download_artifacts(run_id, path, tmp)
        except Exception:  # noqa: BLE001 - MLflow raises several kinds for a missing artifact
            return None
        return Path(local).read_bytes()


def _from_run(run_id: str, uri: str | None) -> Weights:
    from hpsearch.tracking import quiet_mlflow
    with quiet_mlflow():
        return _read_run(run_id, uri)


def _read_run(run_id: str, uri: str | None) -> Weights:
    from mlflow import MlflowClient

    from hpsearch.tracking import resolve_uri
    uri = resolve_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    try:
        run = client.get_run(run_id)
    except Exception as exc:  # noqa: BLE001 - unknown run, unreachable server
        raise HpsearchError(f"cannot read MLflow run {run_id} from {uri}: "
                            f"{' '.join(str(exc).split())[:200]}",
                            "check the run id and --tracking-uri / MLFLOW_TRACKING_URI") from None
    tags = run.data.tags
    tries = [(run_id, "model/model.npz")]
    if tags.get("hpsearch.kind") == "sweep":   # a sweep's parent run: its best trial's weights
        best = tags.get("hpsearch.best_run_id")
        tries = ([(best, "model/model.npz")] if best else []) + [(run_id, "best_model/model.npz")]
    for rid, path in tries:
        data = _download(client, rid, path)
        if data is not None:
            return Weights(data, f"runs:/{rid}/{path}", rid)
    raise HpsearchError(f"MLflow run {run_id} has no model weights ({', '.join(p for _, p in tries)})",
                        "the study must run with tracking.log_weights: true (the default)")


def _from_spec(spec: StudySpec, trial: int | None = None) -> Weights:
    from hpsearch.study import chosen_trial
    from hpsearch.tracking import find_trial_run
    best = chosen_trial(spec, trial)
    run_id = best.run_id or find_trial_run(spec, best.number)   # written after the verdict
    if not run_id:
        raise HpsearchError(f"trial {best.number} of study '{spec.name}' has no MLflow run",
                            "run the study again: hpsearch run " + spec.file)
    return _from_run(run_id, spec.tracking.uri)


def load_weights(source: Any, tracking_uri: str | None = None) -> Weights:
    """The model bytes for ``source``: a StudySpec or study file (its best trial), an MLflow run id
    (a trial's run, or a sweep's parent run: its best trial), ``runs:/ID/PATH``, or a ``.npz`` file."""
    from hpsearch.spec import StudySpec, load_spec
    if isinstance(source, Weights):
        return source
    if isinstance(source, StudySpec):
        return _from_spec(source)
    text = str(source)
    if text.startswith("runs:/"):
        rid, _, path = text[len("runs:/"):].partition("/")
        from mlflow import MlflowClient

        from hpsearch.tracking import resolve_uri
        data = _download(MlflowClient(tracking_uri=resolve_uri(tracking_uri)), rid, path)
        if data is None:
            raise HpsearchError(f"cannot download {text}", "check the run id, the path and the tracking URI")
        return Weights(data, text, rid)
    if _RUN_ID.match(text):
        return _from_run(text, tracking_uri)
    path = Path(text).expanduser()
    if path.suffix in (".yaml", ".yml"):
        return _from_spec(load_spec(path))
    if path.is_file():
        return Weights(path.read_bytes(), str(path))
    raise HpsearchError(f"{text!r} is not a study file, an MLflow run id or a model file",
                        "give studies/NAME.yaml, a 32-character run id, runs:/ID/model/model.npz "
                        "or a .npz saved by nets")


# --------------------------------------------------------------------------- Spark

class Inline:
    """The weights inside the UDF's closure (Spark Connect): what a broadcast is on classic Spark."""

    def __init__(self, data: bytes) -> None:
        self.value = data


def ship(spark: Any, data: bytes) -> Any:
    """The weights for the workers: a broadcast on classic Spark, else (Spark Connect) :class:`Inline`."""
    try:
        context = spark.sparkContext
    except Exception:  # noqa: BLE001 - Spark Connect raises its own "not supported" error
        return Inline(data)
    return context.broadcast(data)


def _worker_model(key: str, bc: Any) -> tuple[Any, str]:
    got = _MODELS.get(key)
    if got is None:
        model = model_from_bytes(bc.value)
        got = (model, model_kind(model))
    _keep_model(key, got)
    return got


def _keep_model(key: str, model: tuple[Any, str]) -> None:
    _MODELS[key] = model
    _MODELS.move_to_end(key)
    while len(_MODELS) > MODEL_CACHE_SIZE:
        _MODELS.popitem(last=False)


def score_series(key: str, bc: Any, col: Any) -> Any:
    """The UDF body, on a worker: a pandas Series of inputs -> a Series of results."""
    import pandas as pd
    model, kind = _worker_model(key, bc)
    values = [None if v is None or (isinstance(v, float) and v != v) else v for v in col.tolist()]
    dtype = {IMAGE: "Int32", RECONSTRUCT: "float64", TEXT: "object", LM: "float64"}[kind]
    return pd.Series(score(model, kind, values), index=col.index, dtype=dtype)


def register_udf(spark: Any, source: Any, name: str = "predict", *,
                 tracking_uri: str | None = None) -> Any:
    """Register a vectorised (pandas/Arrow) UDF ``name(column)`` over a model's weights.

    Args:
        spark: a SparkSession, classic (the weights are broadcast) or Spark Connect (they travel
            inside the UDF).
        source: a StudySpec or study file (its best trial), an MLflow run id, ``runs:/ID/PATH``, or
            a ``.npz`` model file.
        name: the SQL function name.
        tracking_uri: the MLflow store for a run id (a study's own ``tracking.uri`` otherwise).

    Returns:
        the UDF, also usable from the DataFrame API: ``df.select(udf("pixels"))``.

    Example::

        hpsearch.register_udf(spark, "studies/lenet.yaml", name="lenet_predict")
        spark.sql("SELECT lenet_predict(pixels) AS digit FROM images")
    """
    import pandas as pd
    from pyspark.sql.functions import pandas_udf
    weights = load_weights(source, tracking_uri)
    model = model_from_bytes(weights.data)
    kind = model_kind(model)
    bc = ship(spark, weights.data)
    key = weights.key
    _keep_model(key, (model, kind))                # the driver's own (local-mode workers are others)

    def predict(col: pd.Series) -> pd.Series:
        return score_series(key, bc, col)

    predict.__annotations__ = {"col": pd.Series, "return": pd.Series}
    predict.__name__ = predict.__qualname__ = name
    udf = pandas_udf(predict, RETURN_TYPES[kind])
    spark.udf.register(name, udf)
    return udf


def _check_input(path: str, column: str, kind: str, net: str, size: int) -> None:
    """The input's column exists, has the net's type, holds rows, and (pixels) every row holds
    ``size`` finite numbers; read with pyarrow one batch at a time before Spark starts."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    try:
        dataset = ds.dataset(path, format="parquet")
        schema = dataset.schema
    except (OSError, pa.ArrowException) as exc:
        raise HpsearchError(f"--input {path}: cannot read it as Parquet: "
                            f"{' '.join(str(exc).split())[:200]}") from None
    if column not in schema.names:
        raise HpsearchError(f"--input {path} has no column '{column}' (it has: "
                            f"{', '.join(schema.names) or 'none'})", "name the input column with --column C")
    t = schema.field(column).type
    if kind in (IMAGE, RECONSTRUCT):
        ok = (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) and (
            pa.types.is_integer(t.value_type) or pa.types.is_floating(t.value_type))
        want = f"an array of numbers ({size} raw 0..255 pixel values)"
    else:
        ok = pa.types.is_string(t) or pa.types.is_large_string(t)
        want = "text (string)"
    if not ok:
        raise HpsearchError(f"column '{column}' of {path} is {t}; {net} takes {want}",
                            "see hpsearch.scoring for each net's input format")
    try:
        rows = _scan_rows(dataset, column, size if kind in (IMAGE, RECONSTRUCT) else None)
    except (OSError, pa.ArrowException) as exc:
        raise HpsearchError(f"--input {path}: cannot read column '{column}': "
                            f"{' '.join(str(exc).split())[:200]}") from None
    except ValueError as exc:
        raise HpsearchError(f"--input {path}: column '{column}' {exc}",
                            f"{net} takes {want} per row (null rows give a null prediction)") from None
    if rows == 0:
        raise HpsearchError(f"--input {path} has no rows; nothing to score")


def _scan_rows(dataset: Any, column: str, size: int | None) -> int:
    """Rows of ``column``; with ``size``: ValueError at the first row that is not ``size`` finite numbers."""
    import pyarrow as pa
    import pyarrow.compute as pc
    rows = 0
    for batch in dataset.to_batches(columns=[column], batch_size=4096):
        arr = batch.column(0)
        if size is not None and len(arr):
            lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
            nulls = arr.is_null().to_numpy(zero_copy_only=False)
            bad = [i for i in (lengths != size).nonzero()[0] if not nulls[i]]
            if bad:
                raise ValueError(f"row {rows + bad[0]} holds {int(lengths[bad[0]])} values, not {size}")
            values = pc.list_flatten(arr)
            if pa.types.is_floating(values.type):
                finite = pc.is_finite(values).to_numpy(zero_copy_only=False)
                if not finite.all():
                    row = pc.list_parent_indices(arr).to_numpy()[int((~finite).argmax())]
                    raise ValueError(f"row {rows + int(row)} holds NaN or an infinity")
            if values.null_count:
                row = pc.list_parent_indices(arr).to_numpy()[int(values.is_null().to_numpy(
                    zero_copy_only=False).argmax())]
                raise ValueError(f"row {rows + int(row)} holds a null pixel value")
        rows += len(arr)
    return rows


def predict_parquet(spec: StudySpec, input_path: str, output_path: str, column: str | None = None,
                    *, master: str | None = None, spark: Any = None,
                    trial: int | None = None) -> dict[str, Any]:
    """Score a Parquet file with the study's best model (or trial ``trial``'s: a multi-objective
    study has no single best); write it with a ``prediction`` column.

    Everything is checked (input, output, column, weights) before Spark starts.

    Returns:
        ``{"rows", "column", "kind", "source", "output"}``.
    """
    if not Path(input_path).exists():
        raise HpsearchError(f"--input {input_path}: no such file or directory")
    if Path(output_path).exists():
        raise HpsearchError(f"--output {output_path} already exists", "remove it or choose another path")
    weights = load_weights(spec) if trial is None else _from_spec(spec, trial)
    model = model_from_bytes(weights.data)
    kind = model_kind(model)
    column = column or DEFAULT_COLUMNS[kind]
    _check_input(str(input_path), column, kind, spec.net, _input_size(model))
    if spark is None:
        from hpsearch.backends.spark import spark_session
        conf = spec.execution.spark_conf or {}
        spark = spark_session(master or spec.execution.master, spec.execution.parallelism,
                              app_name=f"hpsearch predict {spec.name}", conf=conf,
                              archive="spark.driver.extraJavaOptions" not in conf)
    udf = register_udf(spark, weights, name="hpsearch_" + re.sub(r"\W", "_", spec.name))
    from pyspark.sql.functions import col
    df = spark.read.parquet(str(input_path))
    df.withColumn("prediction", udf(col(f"`{column}`"))).write.parquet(str(output_path))
    rows = spark.read.parquet(str(output_path)).count()
    return {"rows": rows, "column": column, "kind": kind, "source": weights.source,
            "output": str(output_path)}
