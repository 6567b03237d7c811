"""End to end: ``hpsearch run studies/lenet.yaml`` against the same sweep written by hand with Optuna +
PyTorch + MLflow, each timed from process start to exit (issue 14).

What it runs
------------
* hpsearch: ``python -m hpsearch.cli run studies/lenet.yaml --trials 12 --parallelism 2 --verbose`` (the
  shipped LeNet study on the bundled MNIST sample, Spark ``local[2]``, Hyperband, MLflow), with a fresh
  Optuna store and MLflow store (SQLite) in a temporary folder each run. Its time to first trial start
  is the ``--verbose`` phase "first trial started (on its worker)" (seconds since the process started).
  The first hpsearch run is cold: numba's on-disk cache (``NUMBA_CACHE_DIR``) is a new, empty folder; the
  later runs find it warm.
* by hand: bench/_e2e_torch.py, the same study (search space, epochs, TPE startup trials and seed,
  Hyperband resources, data) with the PyTorch LeNet of bench/_torch_models.py on one thread per trial,
  two processes sharing a SQLite Optuna store, MLflow child runs under a parent run; also fresh stores.
  Its time to first trial start is the first trial's ``datetime_start`` in its Optuna store.

* ``--local``: also ``hpsearch run`` with ``--backend local`` (the same sweep in two worker processes of
  this machine: no JVM, no Spark job), after each Spark run; its time, ratio and first trial start.

hpsearch creates each fresh MLflow store as a copy of its cached empty store
(``~/.cache/hpsearch/mlflow-<version>-store.db``, built by the first run that needs it), as a user's
second sweep would; the hand-written side's MLflow runs its schema migrations on each fresh store.
Likewise hpsearch's driver JVM maps Spark's classes from its cached class-data archive
(``~/.cache/hpsearch/spark-jvm-*.jsa``, written after the first sweep on a machine), the cold run too:
"cold" is numba's cache alone.

Each side's best validation accuracy is read from its MLflow store afterwards (not timed): the final
``val_top1`` of the completed trial with the lowest ``val_loss`` (the study's objective), and the highest
final ``val_top1`` of any completed trial. Runs alternate (hand-written, then hpsearch) so machine noise
hits both; times are medians. Run it alone: ``flock /tmp/hpsearch-bench.lock python bench/e2e.py``.

Run:  .venv/bin/python bench/e2e.py [--runs N] [--trials N] [--json]
PyTorch is a benchmark-only dependency (``pip install torch``).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "lenet.yaml"
PARALLELISM = 2
FIRST_TRIAL = re.compile(r"phase\s+([\d.]+) s\s+first trial started")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str, str]:
    """Run ``cmd``; (seconds from start to exit, wall clock at start, stdout, stderr). Fails loudly."""
    started = time.time()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} exited with {proc.returncode}:\n{proc.stderr[-3000:]}")
    return seconds, started, proc.stdout, proc.stderr


def environment(numba_cache: str) -> dict[str, str]:
    env = dict(os.environ, NUMBA_CACHE_DIR=numba_cache, PYTHONPATH=str(ROOT))
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def run_hpsearch(tmp: Path, trials: int, numba_cache: str, backend: str = "spark") -> dict:
    study = tmp / "lenet.yaml"
    shutil.copy(STUDY, study)
    cmd = [sys.executable, "-m", "hpsearch.cli", "run", str(study), "--trials", str(trials),
           "--parallelism", str(PARALLELISM), "--verbose", "--storage", f"sqlite:///{tmp}/optuna.db",
           "--tracking-uri", f"sqlite:///{tmp}/mlflow.db", "--backend", backend]
    seconds, _, out, err = timed(cmd, environment(numba_cache), ROOT)
    m = FIRST_TRIAL.search(err)
    phases = [line[len("phase "):] for line in err.splitlines() if line.startswith("phase ")]
    return {"seconds": seconds, "first_trial_s": float(m.group(1)) if m else None, "phases": phases,
            **best_accuracy(f"sqlite:///{tmp}/mlflow.db")}


def run_by_hand(tmp: Path, trials: int, numba_cache: str) -> dict:
    cmd = [sys.executable, str(ROOT / "bench" / "_e2e_torch.py"), str(STUDY), "--trials", str(trials),
           "--workers", str(PARALLELISM), "--storage", f"sqlite:///{tmp}/optuna.db",
           "--tracking-uri", f"sqlite:///{tmp}/mlflow.db"]
    seconds, started, out, _ = timed(cmd, environment(numba_cache), tmp)
    report = json.loads(out.strip().splitlines()[-1])
    return {"seconds": seconds, "first_trial_s": report["first_trial_start"] - started,
            "counts": {k: report[k] for k in ("complete", "pruned", "failed")},
            **best_accuracy(f"sqlite:///{tmp}/mlflow.db")}


def best_accuracy(uri: str) -> dict:
    """From a sweep's MLflow store: the best trial's (lowest final val_loss among the FINISHED child
    runs) final val_top1, and the highest final val_top1 of those runs."""
    from mlflow.tracking import MlflowClient
    client = MlflowClient(uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])
            if r.data.tags.get("mlflow.parentRunId") and r.info.status == "FINISHED"
            and "val_top1" in r.data.metrics]
    if not runs:
        return {"best_val_top1": None, "max_val_top1": None, "finished_runs": 0}
    best = min(runs, key=lambda r: r.data.metrics["val_loss"])
    return {"best_val_top1": best.data.metrics["val_top1"], "best_val_loss": best.data.metrics["val_loss"],
            "max_val_top1": max(r.data.metrics["val_top1"] for r in runs), "finished_runs": len(runs)}


def median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2, help="warm hpsearch runs and hand-written runs (default 2)")
    ap.add_argument("--trials", type=int, default=12, help="trials per sweep (default 12)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--local", action="store_true", help="also run hpsearch with --backend local")
    args = ap.parse_args(argv)

    cache = tempfile.mkdtemp(prefix="e2e-numba-")
    out: dict = {"trials": args.trials, "parallelism": PARALLELISM, "hpsearch": [], "by_hand": [], "local": []}
    try:
        with tempfile.TemporaryDirectory(prefix="e2e-") as tmp:
            log("hpsearch, cold numba cache ...")
            out["hpsearch_cold"] = run_hpsearch(Path(tempfile.mkdtemp(dir=tmp)), args.trials, cache)
            for i in range(args.runs):
                log(f"run {i + 1}/{args.runs}: by hand (Optuna + PyTorch + MLflow) ...")
                out["by_hand"].append(run_by_hand(Path(tempfile.mkdtemp(dir=tmp)), args.trials, cache))
                log(f"run {i + 1}/{args.runs}: hpsearch, warm numba cache ...")
                out["hpsearch"].append(run_hpsearch(Path(tempfile.mkdtemp(dir=tmp)), args.trials, cache))
                if args.local:
                    log(f"run {i + 1}/{args.runs}: hpsearch --backend local ...")
                    out["local"].append(run_hpsearch(Path(tempfile.mkdtemp(dir=tmp)), args.trials, cache,
                                                     "local"))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    hp, hand = median(out["hpsearch"], "seconds"), median(out["by_hand"], "seconds")
    out["summary"] = {"hpsearch_s": hp, "by_hand_s": hand, "speedup": hand / hp,
                      "hpsearch_best_val_top1": median(out["hpsearch"], "best_val_top1"),
                      "by_hand_best_val_top1": median(out["by_hand"], "best_val_top1"),
                      "hpsearch_max_val_top1": median(out["hpsearch"], "max_val_top1"),
                      "by_hand_max_val_top1": median(out["by_hand"], "max_val_top1"),
                      "first_trial_cold_s": out["hpsearch_cold"]["first_trial_s"],
                      "first_trial_warm_s": median(out["hpsearch"], "first_trial_s"),
                      "by_hand_first_trial_s": median(out["by_hand"], "first_trial_s")}
    if out["local"]:
        local = median(out["local"], "seconds")
        out["summary"].update(local_s=local, local_speedup=hand / local,
                              local_best_val_top1=median(out["local"], "best_val_top1"),
                              local_first_trial_s=median(out["local"], "first_trial_s"))
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print_report(out)
    return 0


def print_report(out: dict) -> None:
    s = out["summary"]

    def acc(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f} %"

    print(f"LeNet sweep, {out['trials']} trials, parallelism {out['parallelism']}, start to exit "
          f"(medians of {len(out['hpsearch'])} run(s); cold hpsearch run not in the median)")
    print(f"  by hand (Optuna + PyTorch + MLflow): {s['by_hand_s']:6.1f} s  runs "
          + ", ".join(f"{r['seconds']:.1f}" for r in out["by_hand"]))
    print(f"  hpsearch run (warm numba cache):     {s['hpsearch_s']:6.1f} s  runs "
          + ", ".join(f"{r['seconds']:.1f}" for r in out["hpsearch"])
          + f"; cold {out['hpsearch_cold']['seconds']:.1f}")
    print(f"  speed-up: {s['speedup']:.2f}x")
    print(f"  best trial's val_top1: hpsearch {acc(s['hpsearch_best_val_top1'])}, "
          f"by hand {acc(s['by_hand_best_val_top1'])}")
    print(f"  highest val_top1:      hpsearch {acc(s['hpsearch_max_val_top1'])}, "
          f"by hand {acc(s['by_hand_max_val_top1'])}")
    print(f"  time to first trial start: hpsearch cold {s['first_trial_cold_s']:.2f} s, warm "
          f"{s['first_trial_warm_s']:.2f} s; by hand {s['by_hand_first_trial_s']:.2f} s")
    if out["local"]:
        print(f"  hpsearch run --backend local:        {s['local_s']:6.1f} s  runs "
              + ", ".join(f"{r['seconds']:.1f}" for r in out["local"])
              + f"; {s['local_speedup']:.2f}x, best trial's val_top1 {acc(s['local_best_val_top1'])}, "
              f"first trial started {s['local_first_trial_s']:.2f} s")
    print("  hpsearch --verbose phases (last warm run):")
    for line in out["hpsearch"][-1]["phases"]:
        print("    " + line)


if __name__ == "__main__":
    sys.exit(main())
