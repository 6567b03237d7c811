"""Orchestration overhead on one warm local[2] Spark session: hpsearch against the anchors.

    .venv/bin/python bench/fanout.py            # everything (~5 minutes on 2 cores)
    .venv/bin/python bench/fanout.py --quick    # 10 trials per case, smoke test
    .venv/bin/python bench/fanout.py --json
    .venv/bin/python bench/fanout.py --connect  # the same on a local Spark Connect server (sc://)

(a) 40 trivial trials (one LeNet batch; for the anchors a function returning x^2) at parallelism 2,
    for hpsearch (with its MLflow runs; slot mode, and ``hpsearch_jobs``: one Spark job per trial,
    as where executors cannot reach the driver), hyperopt's SparkTrials, MLflow's MlflowSparkStudy
    and plain Optuna threads (n_jobs=2, no Spark);
(b) 40 one-second trials (sleep 1 s; ideal: 20 s at parallelism 2), same four;
(c) real LeNet trials on the bundled sample at parallelism 1 and 2: trials per hour and the ratio.
All on one SparkSession, warmed by a first job; medians where repeated. With --connect the session is
a Spark Connect one (a local[2] server on loopback started here, as tests/hpsearch/connect_server.py
does): hpsearch and MlflowSparkStudy run unchanged on it; hyperopt's SparkTrials needs sparkContext
and is reported as the error it raises. Each number is a wall time of
the whole sweep as its user sees it, from the call to its return.
"""
from __future__ import annotations

import argparse
import json
import os
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


# --------------------------------------------------------------------------- hpsearch

def hpsearch_sweep(spark, workdir: Path, net: str, trials: int, parallelism: int, name: str,
                   fixed: dict | None = None, limit: int | None = None, dispatch: str = "auto") -> float:
    import hpsearch

    spec = hpsearch.spec_from_dict({
        "name": name, "net": net, "data": {"limit": limit} if limit else {},
        "fixed": fixed or {"epochs": 1},
        "search_space": {"lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True}},
        "objective": {"metric": "val_loss"}, "sampler": {"name": "tpe"}, "pruner": {"name": "none"},
        "budget": {"trials": trials},
        "execution": {"backend": "spark", "parallelism": parallelism, "dispatch": dispatch},
        # the default study store: a journal file in workdir (SQLite until the journal became the default)
        # the anchors draw no plots; hpsearch's end-of-sweep plots (~3 s, once per sweep) are off here
        "tracking": {"uri": f"sqlite:///{workdir / 'mlflow.db'}", "plots": False},
    }, name=name, base_dir=workdir)
    t0 = time.perf_counter()
    summary = hpsearch.run_study(spec, spark=spark)
    secs = time.perf_counter() - t0
    assert summary.counts.get("complete", 0) == trials, summary.counts
    return secs


# --------------------------------------------------------------------------- anchors

def _square(params):
    return params["x"] ** 2


def _sleep_square(params):
    time.sleep(1.0)
    return params["x"] ** 2


def hyperopt_sweep(spark, trials: int, sleep: bool) -> float:
    from hyperopt import SparkTrials, fmin, hp, tpe

    t0 = time.perf_counter()
    fmin(_sleep_square if sleep else _square, {"x": hp.uniform("x", -1, 1)}, algo=tpe.suggest,
         max_evals=trials, trials=SparkTrials(parallelism=2, spark_session=spark),
         show_progressbar=False, rstate=__import__("numpy").random.default_rng(0))
    return time.perf_counter() - t0


def _optuna_objective(sleep: bool):
    def objective(trial):
        x = trial.suggest_float("x", -1, 1)
        if sleep:
            time.sleep(1.0)
        return x * x
    return objective


def mlflow_spark_sweep(spark, workdir: Path, trials: int, sleep: bool, name: str) -> float:
    import mlflow
    from mlflow.optuna.storage import MlflowStorage
    from mlflow.pyspark.optuna.study import MlflowSparkStudy

    uri = f"sqlite:///{workdir / 'mlflow_anchor.db'}"
    mlflow.set_tracking_uri(uri)
    exp = mlflow.set_experiment(name)
    study = MlflowSparkStudy(name, MlflowStorage(experiment_id=exp.experiment_id),
                             mlflow_tracking_uri=uri)
    t0 = time.perf_counter()
    study.optimize(_optuna_objective(sleep), n_trials=trials, n_jobs=2)
    return time.perf_counter() - t0


def optuna_threads(trials: int, sleep: bool) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    t0 = time.perf_counter()
    study.optimize(_optuna_objective(sleep), n_trials=trials, n_jobs=2)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- main

def run(args) -> dict:
    from hpsearch.backends.spark import spark_session

    n = 10 if args.quick else 40
    real = 4 if args.quick else args.real_trials
    out: dict = {"trials": n, "lenet/epochs": args.real_epochs}
    work = Path(tempfile.mkdtemp(prefix="hpsearch-fanout-"))
    t0 = time.perf_counter()
    server = None
    if args.connect:
        sys.path.insert(0, str(HERE.parent / "tests" / "hpsearch"))
        from connect_server import ConnectServer
        server = ConnectServer(cores=2, pythonpath=[str(HERE)]).start()
        spark = spark_session(server.url)
    else:
        spark = spark_session("local[2]", app_name="hpsearch-fanout")
    out["session"] = "connect" if args.connect else "classic"
    out["session_start_s"] = time.perf_counter() - t0
    spark.range(2, numPartitions=2).count()    # warm the session
    hpsearch_sweep(spark, work, "_fanout_recipes:trivial", 2, 2, "warmup")   # warm numba + workers

    def case(label, fn):
        if args.only and not any(o in label for o in args.only.split(",")):
            return
        log(f"{label} ...")
        try:
            out[label] = round(fn(), 2)
        except Exception as exc:  # noqa: BLE001 - an anchor that breaks is reported, not fatal
            out[label] = f"error: {type(exc).__name__}: {exc}"[:300]
        log(f"  {out[label]}")

    for sleep, tag in ((False, "trivial"), (True, "1s")):
        net = "_fanout_recipes:sleepy" if sleep else "_fanout_recipes:trivial"
        case(f"{tag}/hpsearch", lambda: hpsearch_sweep(spark, work, net, n, 2, f"hp-{tag}"))
        case(f"{tag}/hpsearch_jobs",     # one Spark job per trial (where executors cannot reach us)
             lambda: hpsearch_sweep(spark, work, net, n, 2, f"hpj-{tag}", dispatch="jobs"))
        case(f"{tag}/hyperopt_sparktrials", lambda: hyperopt_sweep(spark, n, sleep))
        case(f"{tag}/mlflow_spark_study", lambda: mlflow_spark_sweep(spark, work, n, sleep, f"ms-{tag}"))
        case(f"{tag}/optuna_threads", lambda: optuna_threads(n, sleep))
    fixed = {"epochs": args.real_epochs, "batch_size": 12}   # LeNet's settings, the 4,000-image sample
    for par in (1, 2):
        case(f"lenet/parallelism{par}",
             lambda: hpsearch_sweep(spark, work, "lenet", real, par, f"lenet-p{par}", fixed))
    for par in (1, 2):
        secs = out.get(f"lenet/parallelism{par}")
        if isinstance(secs, float):
            out[f"lenet/trials_per_hour_p{par}"] = round(real * 3600 / secs)
    if all(isinstance(out.get(f"lenet/trials_per_hour_p{p}"), int) for p in (1, 2)):
        out["lenet/speedup_p2_over_p1"] = round(out["lenet/trials_per_hour_p2"] /
                                                out["lenet/trials_per_hour_p1"], 2)
    spark.stop()
    if server is not None:
        server.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10 trials per case, 4 LeNet trials")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only", help="comma-separated substrings of the cases to run")
    ap.add_argument("--real-trials", type=int, default=8, help="LeNet trials per parallelism")
    ap.add_argument("--real-epochs", type=int, default=12, help="epochs of each LeNet trial")
    ap.add_argument("--connect", action="store_true", help="a Spark Connect session (local server)")
    args = ap.parse_args()
    out = run(args)
    if args.json:
        print(json.dumps(out, indent=1))
        return
    n = out["trials"]
    print(f"orchestration on one warm local[2] {out['session']} session, parallelism 2, {n} trials per case")
    print(f"(session start {out['session_start_s']:.1f} s, not counted)")
    for tag, ideal in (("trivial", 0.0), ("1s", n / 2)):
        print(f"\n{tag} trials" + (f" (ideal {ideal:.0f} s)" if ideal else ""))
        for k in ("hpsearch", "hpsearch_jobs", "hyperopt_sparktrials", "mlflow_spark_study",
                  "optuna_threads"):
            v = out.get(f"{tag}/{k}")
            if v is None:
                continue
            ratio = ""
            h = out.get(f"{tag}/hpsearch")
            if isinstance(v, float) and isinstance(h, float) and k != "hpsearch":
                ratio = f"   {v / h:5.1f}x hpsearch's time"
            print(f"  {k:22s} {v if isinstance(v, str) else f'{v:7.2f} s'}{ratio}")
    print(f"\nreal LeNet trials ({out['lenet/epochs']} epochs, 4,000 images, batch 12)")
    for p in (1, 2):
        print(f"  parallelism {p}: {out.get(f'lenet/parallelism{p}')} s, "
              f"{out.get(f'lenet/trials_per_hour_p{p}')} trials/hour")
    print(f"  speedup p2/p1: {out.get('lenet/speedup_p2_over_p1')}")


if __name__ == "__main__":
    main()
