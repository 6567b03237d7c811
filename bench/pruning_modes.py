"""Pruning through the channel against pruning between jobs (rung by rung), on the shipped Hyperband study.

    .venv/bin/python bench/pruning_modes.py               # classic local[2] (~4 minutes on 2 cores)
    .venv/bin/python bench/pruning_modes.py --connect     # a local Spark Connect server (sc://)
    .venv/bin/python bench/pruning_modes.py --trials 16 --json

Runs studies/lenet.yaml (LeNet on the bundled sample, Hyperband, 6 epochs, seed 0) twice on one warm
session at parallelism 2: once with the executors reporting through the driver's channel, once with the
channel advertised at 127.0.0.3, where nothing listens (as a client behind NAT), so that the driver
prunes between jobs, one job per Hyperband rung (epochs 1, 2-3, 4-6). For each: trials, the fraction
pruned, the epochs trained against the epochs of the same trials unpruned, and the sweep's wall time
(which, rung by rung, includes the channel probe: up to 10 s). Then the cost of rung jobs: one 6-epoch
trial in one job against the same trial as 6 rung jobs and as 3. Hyperband's decisions depend
on the order in which parallel trials report, so the two runs need not prune the same trials.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
STUDY = HERE.parent / "studies" / "lenet.yaml"
FAR = {"report_host": "127.0.0.3", "report_bind": "127.0.0.1"}


def sweep(spark, work: Path, name: str, trials: int, far: bool) -> dict:
    """One sweep of the study named ``name`` (Hyperband brackets hash it) in a folder of its own."""
    import optuna

    import hpsearch
    data = yaml.safe_load(STUDY.read_text())
    data["name"] = name
    work = work / ("rungs" if far else "channel")
    work.mkdir(exist_ok=True)
    data["budget"] = {"trials": trials}
    data["execution"] = {"backend": "spark", "parallelism": 2, **(FAR if far else {})}
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / (name + '-mlflow.db')}"
    t0 = time.perf_counter()
    summary = hpsearch.run_study(hpsearch.load_spec(str(path)), spark=spark)
    wall = time.perf_counter() - t0
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{work / (name + '.optuna.db')}")
    done = [t for t in study.trials if t.state.is_finished()]
    epochs = sum(len(t.intermediate_values) for t in done)
    return {"mode": "rungs" if far else "channel", "trials": len(done),
            "pruned": summary.counts["pruned"], "pruned_frac": summary.counts["pruned"] / len(done),
            "epochs": epochs, "epochs_frac": epochs / (6 * len(done)), "wall_s": wall,
            "note": next((n for n in summary.notes if "pruning between" in n), "")}


def per_job_cost(spark, repeats: int = 3) -> dict:
    """One LeNet trial (6 epochs, the study's data) in one job, as 6 rung jobs (a pruner that may decide
    after any epoch) and as 3 (Hyperband's rungs: epochs 1, 2-3, 4-6): median walls."""
    import statistics

    from hpsearch.backends.spark import SparkBackend
    from hpsearch.recipes import load_data, resolve_recipe
    from hpsearch.records import TrialTask
    from hpsearch.samplers import next_decision
    data = load_data(resolve_recipe("lenet"), None, 2000)
    task = TrialTask(trial_id=0, number=0, net="lenet", params={"lr": 0.05, "batch_size": 32},
                     fixed={"epochs": 6}, metric="val_loss", direction="minimize", seed=0, data_limit=2000)
    schedules = {"one job": None, "6 jobs": lambda e: e + 1,
                 "3 jobs": next_decision("hyperband", {"min_resource": 1, "reduction_factor": 3})}
    walls: dict[str, list[float]] = {k: [] for k in schedules}
    for _ in range(repeats):
        for label, schedule in schedules.items():
            with SparkBackend(parallelism=1, data=data, spark=spark, study_name="cost") as b:
                if schedule is not None:
                    b.use_pruner(lambda *a, **k: False, "rungs", schedule)
                list(b.run([task]))                  # warm: workers, data, numba
                t0 = time.perf_counter()
                (result,) = b.run([task])
                walls[label].append(time.perf_counter() - t0)
                assert result.state == "complete" and result.epochs == 6
    med = {k: statistics.median(v) for k, v in walls.items()}
    return {"one_job_s": med["one job"], "six_jobs_s": med["6 jobs"], "three_jobs_s": med["3 jobs"],
            "per_extra_job_s": (med["6 jobs"] - med["one job"]) / 5}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--connect", action="store_true", help="a Spark Connect session (local server)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from hpsearch.backends.spark import spark_session

    work = Path(tempfile.mkdtemp(prefix="hpsearch-pruning-modes-"))
    server = None
    if args.connect:
        sys.path.insert(0, str(HERE.parent / "tests" / "hpsearch"))
        from connect_server import ConnectServer
        server = ConnectServer(cores=2, pythonpath=[str(HERE)]).start()
        spark = spark_session(server.url)
    else:
        spark = spark_session("local[2]", app_name="hpsearch-pruning-modes")
    try:
        sweep(spark, work, "warmup", 2, far=False)     # Python workers started, numba code loaded
        cost = per_job_cost(spark)
        rows = [sweep(spark, work, "lenet", args.trials, far=mode == "rungs") for mode in ("channel", "rungs")]
    finally:
        if server is not None:
            server.stop()
    if args.json:
        print(json.dumps({"sweeps": rows, "cost": cost}, indent=2))
        return
    print(f"{'connect' if args.connect else 'classic'} Spark, studies/lenet.yaml, parallelism 2")
    for r in rows:
        print(f"{r['mode']:8s} {r['trials']:3d} trials  pruned {r['pruned']:3d} ({r['pruned_frac']:.0%})  "
              f"epochs {r['epochs']:3d} of {6 * r['trials']} ({r['epochs_frac']:.0%})  {r['wall_s']:.1f} s")
    print(f"one 6-epoch LeNet trial: {cost['one_job_s']:.2f} s in one job, {cost['six_jobs_s']:.2f} s as 6 rung "
          f"jobs, {cost['three_jobs_s']:.2f} s as 3 (Hyperband's rungs): {cost['per_extra_job_s']:.3f} s per "
          "extra job (medians of 3)")


if __name__ == "__main__":
    main()
