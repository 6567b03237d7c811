"""How many slots one driver keeps busy: hpsearch on local[P] sessions, against the anchors.

    .venv/bin/python bench/scale.py                 # P = 16 and 64, 2,000 trivial trials (~6 min)
    .venv/bin/python bench/scale.py --slots 16 --trivial 500 --no-anchors   # quicker
    .venv/bin/python bench/scale.py --json

(a) Slot efficiency: a local[P] session, every slot's Python worker started first (a warm-up sweep),
    then 20 x P one-second trials at parallelism P (ideal: 20 s). Each trial is a 784-4-10 MLP on 12
    images that also sleeps one second (bench/_fanout_recipes.py ``napper``), so P slots need far
    fewer than P cores: what is measured is the driver, not this machine's 2 cores. Prints the slot
    efficiency (ideal / wall), trials/s, and the driver's CPU per trial (this Python process, every
    thread: Optuna, MLflow, the channel, Spark's client; the JVM is not counted).
    The anchors run the same one-second trials (a function that sleeps) on the same session:
    hyperopt's SparkTrials (parallelism P) and MLflow's MlflowSparkStudy (n_jobs P), with 5 x P
    trials each (they are slower; "reasonable time").
(b) Throughput: ``--trivial`` trials (default 2,000) of the same MLP without the sleep, parallelism 2
    on local[2]: trials/s over the whole sweep and over its second half (sustained), driver CPU/trial.
(c) Ask time at 100, 1,000 and 5,000 trials: bench/ask_scale.py, when present (``--ask``).
hpsearch runs with its defaults (TPE sampler, SQLite store, MLflow in SQLite) unless --sampler/--storage say
otherwise. Every number is a wall time of the whole sweep, from the call to its return.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def make_spec(work: Path, net: str, trials: int, parallelism: int, name: str, args):
    import hpsearch

    return hpsearch.spec_from_dict({
        "name": name, "net": f"_fanout_recipes:{net}", "fixed": {"epochs": 1},
        "search_space": {"lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
                         "momentum": {"type": "float", "low": 0.0, "high": 0.9},
                         "batch_size": {"choices": [4, 6, 12]},
                         "hidden": {"type": "int", "low": 2, "high": 8}},
        "objective": {"metric": "val_loss"}, "sampler": {"name": args.sampler}, "pruner": {"name": "none"},
        "budget": {"trials": trials},
        "execution": {"backend": "spark", "parallelism": parallelism, "dispatch": args.dispatch},
        "storage": args.storage.format(dir=work, name=name) if args.storage else None,
        "tracking": {"uri": f"sqlite:///{work / 'mlflow.db'}", "plots": False},
    }, name=name, base_dir=work)


def sweep(spark, work: Path, net: str, trials: int, parallelism: int, name: str, args,
          extend: int | None = None) -> dict:
    """Run the study (``extend``: that many trials more on an existing one); its rates."""
    import hpsearch

    spec = make_spec(work, net, trials, parallelism, name, args)
    c0, t0 = cpu(), time.perf_counter()
    summary = hpsearch.run_study(spec, spark=spark, extend=extend)
    wall, used = time.perf_counter() - t0, cpu() - c0
    n = extend or trials
    assert summary.counts.get("complete", 0) == n, summary.counts
    return {"wall_s": round(wall, 2), "trials_per_s": round(n / wall, 1),
            "driver_cpu_ms_per_trial": round(used / n * 1e3, 1)}


def _sleep_square(params):
    time.sleep(1.0)
    return params["x"] ** 2


def hyperopt_sweep(spark, trials: int, parallelism: int) -> float:
    from hyperopt import SparkTrials, fmin, hp, tpe

    t0 = time.perf_counter()
    fmin(_sleep_square, {"x": hp.uniform("x", -1, 1)}, algo=tpe.suggest, max_evals=trials,
         trials=SparkTrials(parallelism=parallelism, spark_session=spark), show_progressbar=False,
         rstate=__import__("numpy").random.default_rng(0))
    return time.perf_counter() - t0


def mlflow_spark_sweep(spark, work: Path, trials: int, parallelism: int, name: str) -> float:
    import mlflow
    from mlflow.optuna.storage import MlflowStorage
    from mlflow.pyspark.optuna.study import MlflowSparkStudy

    def objective(trial):
        x = trial.suggest_float("x", -1, 1)
        time.sleep(1.0)
        return x * x

    uri = f"sqlite:///{work / 'mlflow_anchor.db'}"
    mlflow.set_tracking_uri(uri)
    exp = mlflow.set_experiment(name)
    study = MlflowSparkStudy(name, MlflowStorage(experiment_id=exp.experiment_id), mlflow_tracking_uri=uri)
    t0 = time.perf_counter()
    study.optimize(objective, n_trials=trials, n_jobs=parallelism)
    return time.perf_counter() - t0


def anchor(out: dict, key: str, fn, ideal: float) -> None:
    log(f"{key} ...")
    try:
        wall = fn()
        out[key] = {"wall_s": round(wall, 2), "efficiency": round(ideal / wall, 3)}
    except Exception as exc:  # noqa: BLE001 - an anchor that breaks is reported, not fatal
        out[key] = f"error: {type(exc).__name__}: {exc}"[:300]
    log(f"  {out[key]}")


def slots_case(out: dict, p: int, work: Path, args) -> None:
    from hpsearch.backends.spark import spark_session
    spark = spark_session(f"local[{p}]", app_name=f"hpsearch-scale-{p}")
    log(f"local[{p}]: warming {p} Python workers ...")
    sweep(spark, work, "tiny", 2 * p, p, f"warm-{p}", args)
    n = args.rounds * p
    log(f"local[{p}]: {n} one-second trials ...")
    r = sweep(spark, work, "napper", n, p, f"slots-{p}", args)
    r["efficiency"] = round(args.rounds / r["wall_s"], 3)
    out[f"slots{p}/hpsearch"] = r
    log(f"  {r}")
    if args.anchors:
        m = 5 * p
        anchor(out, f"slots{p}/hyperopt_sparktrials", lambda: hyperopt_sweep(spark, m, p), 5.0)
        anchor(out, f"slots{p}/mlflow_spark_study",
               lambda: mlflow_spark_sweep(spark, work, m, p, f"ms-{p}"), 5.0)
    spark.stop()


def trivial_case(out: dict, work: Path, args) -> None:
    from hpsearch.backends.spark import spark_session
    spark = spark_session("local[2]", app_name="hpsearch-scale-trivial")
    sweep(spark, work, "tiny", 4, 2, "warm-trivial", args)
    n = args.trivial
    log(f"{n} trivial trials at parallelism 2 ...")
    half = sweep(spark, work, "tiny", n // 2, 2, "trivial", args)
    # the same study extended by its second half: the rate once it already holds n/2 trials
    out["trivial/first_half"] = half
    second = sweep(spark, work, "tiny", n // 2, 2, "trivial", args, extend=n - n // 2)
    out["trivial/second_half"] = second
    total = half["wall_s"] + second["wall_s"]
    out["trivial/hpsearch"] = {"trials": n, "wall_s": round(total, 2), "trials_per_s": round(n / total, 1),
                               "sustained_trials_per_s": second["trials_per_s"],
                               "driver_cpu_ms_per_trial": second["driver_cpu_ms_per_trial"]}
    log(f"  {out['trivial/hpsearch']}")
    spark.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slots", default="16,64", help="comma-separated P of local[P] (empty: none)")
    ap.add_argument("--rounds", type=int, default=20, help="one-second trials per slot")
    ap.add_argument("--trivial", type=int, default=2000, help="trivial trials at parallelism 2 (0: none)")
    ap.add_argument("--no-anchors", dest="anchors", action="store_false")
    ap.add_argument("--ask", action="store_true", help="also run bench/ask_scale.py")
    ap.add_argument("--sampler", default="tpe")
    ap.add_argument("--dispatch", default="auto", choices=("auto", "jobs"))
    ap.add_argument("--storage", help="Optuna storage URL; {dir} and {name} are filled in "
                                      "(default: hpsearch's default store)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hpsearch-scale-"))
    out: dict = {"sampler": args.sampler, "dispatch": args.dispatch, "storage": args.storage or "default"}
    for p in [int(x) for x in args.slots.split(",") if x]:
        slots_case(out, p, work, args)
    if args.trivial:
        trivial_case(out, work, args)
    if args.ask and (HERE / "ask_scale.py").exists():
        out["ask"] = subprocess.run([sys.executable, str(HERE / "ask_scale.py")], check=False,
                                    capture_output=True, text=True).stdout
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"hpsearch sampler {out['sampler']}, dispatch {out['dispatch']}, storage {out['storage']}")
    for key, value in out.items():
        if "/" in key:
            print(f"  {key:32s} {value}")
    if "ask" in out:
        print(out["ask"])


if __name__ == "__main__":
    main()
