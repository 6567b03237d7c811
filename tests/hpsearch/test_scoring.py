"""Scoring with the best model: the Spark SQL UDF (on the session-wide local[2] session), the
scoring of each net against nets in-process, and `hpsearch predict`."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hpsearch
import nets
from conftest import lenet_dict, run_cli, write_study
from hpsearch import scoring
from nets.recipes import mnist_classify, mnist_reconstruct


@pytest.fixture(scope="module")
def lenet_study(tmp_path_factory) -> tuple[Path, hpsearch.StudySpec, str]:
    """A finished 2-trial LeNet sweep (local backend) with its own MLflow store."""
    tmp = tmp_path_factory.mktemp("scoring")
    path = write_study(tmp, "lenet", lenet_dict(
        pruner="none", data={"path": None, "limit": 300}, fixed={"epochs": 1}, budget={"trials": 2},
        tracking={"uri": f"sqlite:///{tmp / 'mlflow.db'}", "plots": False}))
    spec = hpsearch.load_spec(path)
    return path, spec, hpsearch.run_study(spec).parent_run_id


@pytest.fixture(scope="module")
def images(lenet_study) -> tuple[Path, np.ndarray]:
    """The 1,000 MNIST test images of the sample as Parquet: id, pixels (784 raw 0..255 floats)."""
    path = lenet_study[0].parent / "images.parquet"
    raw = mnist_classify().val.x.reshape(-1, 784)
    pd.DataFrame({"id": np.arange(len(raw)), "pixels": list(raw.astype(np.float32))}).to_parquet(path)
    return path, raw


def _best_model(spec: hpsearch.StudySpec) -> nets.Model:
    """The best trial's weights, fetched from MLflow without hpsearch.scoring."""
    from mlflow import MlflowClient
    run_id = hpsearch.best_trial(spec).run_id
    local = MlflowClient(spec.tracking.uri).download_artifacts(
        run_id, "model/model.npz", str(Path(spec.file).parent / f"dl-{run_id}"))
    return nets.load(local)


def _in_process_classes(spec: hpsearch.StudySpec) -> np.ndarray:
    return _best_model(spec).predict(mnist_classify().val.inputs()).argmax(axis=1)


@pytest.mark.slow
@pytest.mark.spark
def test_sql_udf_on_local2_gives_the_in_process_predictions(spark, lenet_study, images) -> None:
    path, spec, parent = lenet_study
    parquet, raw = images
    assert len(raw) >= 1000
    spark.read.parquet(str(parquet)).repartition(3).createOrReplaceTempView("images")
    hpsearch.register_udf(spark, spec, name="lenet_predict")
    got = spark.sql("SELECT id, lenet_predict(pixels) AS digit FROM images").toPandas()
    got = got.sort_values("id")
    assert str(spark.sql("SELECT lenet_predict(pixels) FROM images").schema[0].dataType) == "IntegerType()"
    expected = _in_process_classes(spec)
    assert got["id"].tolist() == list(range(len(raw)))
    assert np.array_equal(got["digit"].to_numpy(), expected)   # exactly nets' own predictions
    assert len(set(expected)) > 3                              # a trained net, not a constant

    # the same from the study file and from the sweep's parent run id
    for source in (str(path), parent):
        hpsearch.register_udf(spark, source, name="again", tracking_uri=spec.tracking.uri)
        again = spark.sql("SELECT id, again(pixels) AS d FROM images").toPandas().sort_values("id")
        assert np.array_equal(again["d"].to_numpy(), _in_process_classes(spec))


@pytest.mark.slow
def test_predict_command_writes_the_same(lenet_study, images, env: dict) -> None:
    path, spec, _ = lenet_study
    parquet, raw = images
    out = path.parent / "digits.parquet"
    proc = run_cli(["predict", str(path), "--input", str(parquet), "--output", str(out),
                    "--master", "local[2]"], env, path.parent)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {len(raw)} row(s) to {out}" in proc.stdout
    got = pd.read_parquet(out).sort_values("id")
    assert list(got.columns) == ["id", "pixels", "prediction"]
    assert np.array_equal(got["prediction"].to_numpy(), _in_process_classes(spec))

    again = run_cli(["predict", str(path), "--input", str(parquet), "--output", str(out)], env, path.parent)
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = run_cli(["predict", str(path), "--input", str(parquet), "--output", str(out) + "2",
                   "--column", "image"], env, path.parent)
    assert bad.returncode == 2 and "has no column 'image' (it has: id, pixels)" in bad.stderr
    wrong = run_cli(["predict", str(path), "--input", str(parquet), "--output", str(out) + "2",
                     "--column", "id"], env, path.parent)
    assert wrong.returncode == 2 and "column 'id' of" in wrong.stderr
    assert "lenet takes an array of numbers (784 raw 0..255 pixel values)" in wrong.stderr


# --------------------------------------------------------------------------- the other nets

def _newsgroups(root: Path) -> Path:
    words = {"space": "orbit rocket launch planet moon nasa shuttle",
             "autos": "engine wheel brake car drive motor tire",
             "med": "doctor patient disease drug health clinic cure"}
    rng = random.Random(0)
    for name, vocab in words.items():
        (root / name).mkdir(parents=True)
        for i in range(8):
            (root / name / f"{i}.txt").write_text(
                " ".join(rng.choice(vocab.split() + ["the", "and", "with"]) for _ in range(30)))
    return root


def _corpus(path: Path) -> Path:
    rng = random.Random(0)
    words = "the king is dead . long live the queen ! a horse , my kingdom for a horse".split()
    path.write_text("\n\n".join(" ".join(rng.choice(words) for _ in range(12)) + "." for _ in range(60)))
    return path


TEXTS = ["the rocket launch to the moon", "my car needs a new brake", "see a doctor about the drug",
         "unknown words only", "", None, "the king is", "long live the horse", "a", "kingdom"]


@pytest.fixture(scope="module")
def text_models(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("text_models")
    cnn = nets.train("textcnn", {"seq_len": 20, "embed": 8, "filters": 4, "hidden": 8, "skip_top": 0,
                                 "batch_size": 8, "epochs": 2}, data=str(_newsgroups(tmp / "news")))
    rnn = nets.train("rnn", {"hidden": 8, "vocab": 30, "max_len": 10, "epochs": 2},
                     data=str(_corpus(tmp / "corpus.txt")))
    ae = nets.train("autoencoder", {"hidden": 16, "epochs": 1}, data=None)
    return {name: nets.save(r.model, tmp / f"{name}.npz")
            for name, r in (("textcnn", cnn), ("rnn", rnn), ("autoencoder", ae))}


def _expected(name: str, model: nets.Model, values: list) -> list:
    """Each net's result computed with nets directly, one input at a time."""
    from nets.data.text import BOS, LM_SPECIALS, UNK, encode_texts, sentence_tokens
    out = []
    for v in values:
        if v is None:
            out.append(None)
        elif name == "textcnn":
            ids = encode_texts([v], model.vocab, model.input_shape[0], model.arch.get("text"))
            out.append(model.classes[int(model.predict(ids).argmax())])
        elif name == "rnn":
            index = {w: i for i, w in enumerate(model.vocab) if i >= len(LM_SPECIALS)}
            ids = [BOS] + [index.get(w, UNK) for w in sentence_tokens(v)]
            out.append(None if len(ids) < 2 else
                       float(model.predict(np.array([ids[:-1]], np.int32))[-1, ids[-1]]))
        else:
            x = np.asarray(v, np.float32)[None] / np.float32(255.0)
            out.append(float(np.mean((model.predict(x) - x) ** 2, dtype=np.float64)))
    return out


def _inputs(name: str) -> list:
    if name != "autoencoder":
        return TEXTS
    raw = mnist_reconstruct().val.x.reshape(-1, 784)[:40]
    return [None] + [r.astype(np.float32) for r in raw]


def _same(a: list, b: list) -> None:
    assert [x is None for x in a] == [x is None for x in b]
    for x, y in zip(a, b):
        if isinstance(x, float):
            assert x == pytest.approx(y, rel=1e-5, abs=1e-7)
        else:
            assert x == y


@pytest.mark.parametrize("name,kind", [("autoencoder", scoring.RECONSTRUCT), ("textcnn", scoring.TEXT),
                                       ("rnn", scoring.LM)])
def test_each_net_scores_like_nets_in_process(text_models, name: str, kind: str) -> None:
    model = nets.load(text_models[name])
    assert scoring.model_kind(model) == kind
    values = _inputs(name)
    _same(scoring.score(model, kind, values), _expected(name, model, values))


@pytest.mark.parametrize("name", ["textcnn_v1", "textcnn_v2"])
def test_a_text_cnn_saved_by_an_earlier_text_pipeline_scores_as_it_did(name: str) -> None:
    here = Path(__file__).parents[1] / "nets" / "data"
    rec = json.loads((here / f"{name}.json").read_text())
    model = nets.load(here / f"{name}.npz")
    assert scoring.score(model, scoring.TEXT, rec["documents"]) == rec["classes"]


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.parametrize("name,sql_type", [("autoencoder", "DoubleType()"), ("textcnn", "StringType()"),
                                           ("rnn", "DoubleType()")])
def test_sql_udf_for_every_other_net(spark, text_models, name: str, sql_type: str) -> None:
    from pyspark.sql.types import ArrayType, FloatType, LongType, StringType, StructField, StructType
    values = _inputs(name)
    column = "pixels" if name == "autoencoder" else "text"
    ctype = ArrayType(FloatType()) if name == "autoencoder" else StringType()
    rows = [(i, None if v is None else (v.tolist() if name == "autoencoder" else v))
            for i, v in enumerate(values)]
    schema = StructType([StructField("id", LongType()), StructField(column, ctype)])
    spark.createDataFrame(rows, schema).repartition(2).createOrReplaceTempView(f"{name}_input")
    hpsearch.register_udf(spark, str(text_models[name]), name=f"{name}_score")
    frame = spark.sql(f"SELECT id, {name}_score({column}) AS result FROM {name}_input")
    assert str(frame.schema["result"].dataType) == sql_type
    got = frame.toPandas().sort_values("id")["result"].tolist()
    got = [None if g is None or (isinstance(g, float) and np.isnan(g)) else g for g in got]
    _same(got, _expected(name, nets.load(text_models[name]), values))


def test_a_source_that_is_nothing_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(hpsearch.HpsearchError, match="is not a study file, an MLflow run id or a model"):
        scoring.load_weights(str(tmp_path / "nothing"))
