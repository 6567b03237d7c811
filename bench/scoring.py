"""Scoring a Spark DataFrame with a trained LeNet (issue 17): `hpsearch.register_udf` against
`mlflow.pyfunc.spark_udf` over the same weights logged as an MLflow Model (hpsearch.mlflow_model).

A 10,000-row DataFrame of raw MNIST pixels (the sample's 1,000 validation images, repeated), 4
partitions, local Spark; each UDF scores it once to warm up (Python workers, numba, model loads),
then REPEATS timed times (`write.format("noop")`: every row scored, nothing written); the best time
is reported as samples/s. Three ways:

- hpsearch: `register_udf`, weights broadcast (classic Spark);
- hpsearch (inline): `register_udf` on a session without `sparkContext`, as on Spark Connect: the
  weights travel inside the UDF;
- mlflow spark_udf: `mlflow.pyfunc.spark_udf(spark, "runs:/ID/model", env_manager="local")`.

    .venv/bin/python bench/scoring.py                # local[2]
    .venv/bin/python bench/scoring.py --master local[4] --rows 50000
    .venv/bin/python bench/scoring.py --connect      # a local[2] Spark Connect server (started here)

On Connect there is no `sparkContext`: `register_udf` ships the weights inside the UDF (its inline
way), beside `mlflow.pyfunc.spark_udf` on the same session.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class NoContext:
    """A SparkSession seen as Spark Connect sees it: no ``sparkContext``."""

    def __init__(self, spark: Any) -> None:
        self._spark = spark

    def __getattr__(self, name: str) -> Any:
        if name == "sparkContext":
            raise AttributeError("sparkContext is not supported in Spark Connect")
        return getattr(self._spark, name)


def _timed(frame: Any, repeats: int) -> float:
    frame.write.format("noop").mode("overwrite").save()          # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        frame.write.format("noop").mode("overwrite").save()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--connect", action="store_true", help="score on a local Spark Connect server")
    args = ap.parse_args()

    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient
    from pyspark.sql.functions import col, struct

    import hpsearch
    import nets
    from hpsearch import mlflow_model
    from hpsearch.backends.spark import spark_session
    from hpsearch.tracking import quiet_mlflow
    from nets.recipes import mnist_classify

    quiet_mlflow()
    tmp = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    model = nets.train("lenet", {"epochs": 1, "hidden": 64}, data=None).model
    npz = nets.save(model, tmp / "lenet.npz")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    exp = client.create_experiment("bench", artifact_location=(tmp / "mlruns").as_uri())
    run = client.create_run(exp).info.run_id
    t = time.perf_counter()
    mlflow_model.log(client, exp, run, "model", npz.read_bytes())
    log_s = time.perf_counter() - t

    raw = mnist_classify().val.x.reshape(-1, 784).astype(np.float64)
    reps = -(-args.rows // len(raw))
    pdf = pd.DataFrame({"id": np.arange(args.rows), "pixels": list(np.tile(raw, (reps, 1))[:args.rows])})
    server = None
    if args.connect:
        sys.path.insert(0, str(ROOT / "tests" / "hpsearch"))
        from connect_server import ConnectServer
        server = ConnectServer(cores=2).start()
        args.master = server.url
    spark = spark_session(args.master, app_name="bench scoring")
    df = spark.createDataFrame(pdf).repartition(4).cache()
    df.count()

    udfs = {"hpsearch": hpsearch.register_udf(spark, str(npz), name="hp_predict")}
    if not args.connect:
        udfs["hpsearch (inline)"] = hpsearch.register_udf(NoContext(spark), str(npz), name="hp_inline")
    udfs["mlflow spark_udf"] = mlflow.pyfunc.spark_udf(spark, f"runs:/{run}/model", env_manager="local")
    expected = model.predict(mnist_classify().val.inputs()).argmax(axis=1)
    out: dict[str, Any] = {"rows": args.rows, "master": args.master, "first_model_log_s": round(log_s, 3)}
    for name, udf in udfs.items():
        arg = struct("pixels") if name.startswith("mlflow") else col("pixels")
        frame = df.select("id", udf(arg).alias("digit"))
        got = frame.where(col("id") < len(raw)).toPandas().sort_values("id")["digit"].to_numpy()
        assert np.array_equal(got, expected), name                # all three score the same
        seconds = _timed(frame, args.repeats)
        out[name] = {"seconds": round(seconds, 3), "samples_per_s": round(args.rows / seconds)}
        print(f"{name:20s} {seconds:7.3f} s  {args.rows / seconds:10.0f} samples/s", flush=True)
    spark.stop()
    if server is not None:
        server.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
