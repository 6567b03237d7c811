"""The driver's MLflow cost per trial (issue 14): 40 trivial trials on the local backend
(parallelism 2), the sweep's main thread under cProfile.

    .venv/bin/python bench/tracking_cost.py [--trials 40]

Prints, per trial: the main thread's time in the record step (``_Trials._record``) less Optuna's
tell and the progress output, i.e. what MLflow costs the driver's loop; and the driver process's
CPU (every thread) per trial. Run it under ``flock /tmp/hpsearch-bench.lock``.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])


def _cum(stats: pstats.Stats, name: str) -> float:
    return sum(v[3] for k, v in stats.stats.items() if k[2] == name and "hpsearch" in k[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=40)
    args = ap.parse_args()
    import hpsearch
    work = Path(tempfile.mkdtemp(prefix="hpsearch-trkcost-"))
    spec = hpsearch.spec_from_dict({
        "name": "cost", "net": "_fanout_recipes:trivial", "fixed": {"epochs": 3},
        "search_space": {"lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True}},
        "objective": {"metric": "val_loss"}, "sampler": {"name": "tpe"}, "pruner": {"name": "none"},
        "budget": {"trials": args.trials}, "execution": {"backend": "local", "parallelism": 2},
        "storage": f"sqlite:///{work / 'cost.optuna.db'}",
        "tracking": {"uri": f"sqlite:///{work / 'mlflow.db'}", "plots": False},
    }, name="cost", base_dir=work)
    prof = cProfile.Profile()
    cpu, wall = time.process_time(), time.perf_counter()
    prof.enable()
    summary = hpsearch.run_study(spec)
    prof.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    n = summary.counts["complete"] + summary.counts["pruned"] + summary.counts["failed"]
    st = pstats.Stats(prof)
    record, tell, shown = (_cum(st, f) for f in ("_record", "_tell", "finished"))
    print(f"{n} trials in {wall:.1f} s; main thread per trial: record step {1000 * record / n:.1f} ms, "
          f"of which Optuna tell {1000 * tell / n:.1f} ms, MLflow {1000 * (record - tell - shown) / n:.1f} ms; "
          f"driver process CPU {1000 * cpu / n:.1f} ms/trial (all threads, whole sweep)")


if __name__ == "__main__":
    main()
