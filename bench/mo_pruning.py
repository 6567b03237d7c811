"""MO-ASHA against no pruning, same sampler and trial budget, on the bundled MNIST sample (issue 18).

    .venv/bin/python bench/mo_pruning.py             # 32 trials x 5 seeds x 2 arms (a few minutes)
    .venv/bin/python bench/mo_pruning.py --quick     # 6 trials x 1 seed, smoke test
    .venv/bin/python bench/mo_pruning.py --json

Both arms run studies/lenet-mo.yaml's space (conv1, conv2, hidden, lr, batch_size; objectives
val_top1 maximized and infer_ms minimized) through hpsearch on the local backend, with the same TPE
sampler and seed and the same budget of trials:

* unpruned: every trial trains all its epochs;
* mo_asha: MO-ASHA with one rung, at epoch 1 of 6 (min_resource 1, reduction_factor 3,
  max_resource 2: the top third of the trials at epoch 1, ranked by non-dominated sorting and
  crowding distance, train on to epoch 6).

Measured (December 2026, the 2-core development machine, 32 trials, 5 seeds; reference point
val_top1 0 %, infer_ms 82.9): median hypervolume 7101 pruned against 7397 unpruned; the pruned share
per seed 96.0, 101.1, 96.8, 92.7, 88.0 % (median 96.0 %) with 47.9 % of the epochs (median; 92 of 192).
Two rungs prune too hard for this budget: the shipped study's rungs (epochs 1 and 3, reduction_factor
3; 16 trials) completed 1-3 trials of 16: 29 % of the epochs, 82 % of the hypervolume; one rung with
reduction_factor 6 (32 trials): 24 % of the epochs, 70 % of the hypervolume (`--reduction-factor`,
`--max-resource`, `--trials` rerun those).

The figure per arm and seed is the hypervolume of the front of its completed trials, against one
reference point for every run: val_top1 = 0 % and infer_ms = 1.1 x the largest infer_ms any completed
trial of any run measured (printed). And the epochs the arm trained (all trials). Reported as is:
per seed, the medians, and the pruned arm's share of the unpruned arm's hypervolume and epochs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])

import yaml  # noqa: E402

TRIALS, SEEDS, EPOCHS = 32, 5, 6
SETTINGS = {"data": {"path": None, "limit": 600},
            "execution": {"backend": "local", "parallelism": 2},
            "sampler": {"name": "tpe", "n_startup_trials": 5, "multivariate": True},
            "tracking": {"log_weights": False, "plots": False}}
PRUNERS = {"unpruned": "none", "mo_asha": {"name": "mo_asha", "min_resource": 1, "reduction_factor": 3,
                                          "max_resource": 2}}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def study_dict(arm: str, seed: int, trials: int) -> dict:
    data = yaml.safe_load((ROOT / "studies" / "lenet-mo.yaml").read_text())
    data.update(SETTINGS, seed=seed, budget={"trials": trials}, pruner=PRUNERS[arm])
    data["fixed"] = {**data["fixed"], "epochs": EPOCHS}
    return data


def run_arm(arm: str, seed: int, trials: int, workdir: Path) -> dict:
    import optuna

    import hpsearch
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
    spec = hpsearch.spec_from_dict(study_dict(arm, seed, trials), name=f"{arm}-{seed}", base_dir=workdir)
    t0 = time.perf_counter()
    summary = hpsearch.run_study(spec)
    study = optuna.load_study(study_name=spec.name, storage=spec.storage)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    return {"arm": arm, "seed": seed, "counts": summary.counts,
            "epochs": sum(int(t.user_attrs.get("epochs", 0)) for t in study.trials),
            "points": [list(t.values) for t in done], "seconds": time.perf_counter() - t0}


def hypervolume(points: list[list[float]], directions: list[str], reference: list[float]) -> float:
    """Optuna's hypervolume of ``points`` against ``reference``, in the objectives' own directions
    (a point not better than the reference in every objective adds nothing)."""
    import numpy as np
    from optuna._hypervolume import compute_hypervolume

    from hpsearch.pareto import costs
    ref = np.array(costs([reference], directions)[0])
    cs = np.array(costs(points, directions)).reshape(-1, len(ref))
    cs = cs[(cs < ref).all(axis=1)]
    return float(compute_hypervolume(cs, ref)) if len(cs) else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="6 trials, one seed")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--seeds", type=int, default=SEEDS, help=f"seeds 0..N-1 (default {SEEDS})")
    ap.add_argument("--trials", type=int, default=TRIALS, help=f"trials per study (default {TRIALS})")
    ap.add_argument("--reduction-factor", type=int, default=PRUNERS["mo_asha"]["reduction_factor"])
    ap.add_argument("--max-resource", type=int, default=PRUNERS["mo_asha"]["max_resource"],
                    help="no rung at or past this epoch (the trials still train all 6)")
    args = ap.parse_args(argv)
    PRUNERS["mo_asha"].update(reduction_factor=args.reduction_factor, max_resource=args.max_resource)
    trials, seeds = (6, 1) if args.quick else (args.trials, args.seeds)
    runs = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hpsearch-mo-") as tmp:
        for seed in range(seeds):
            for arm in PRUNERS:
                runs.append(run_arm(arm, seed, trials, Path(tmp)))
                r = runs[-1]
                log(f"seed {seed} {arm:<8} {r['epochs']} epochs, {r['counts']}, {r['seconds']:.0f} s")
    directions = ["maximize", "minimize"]
    ref = [0.0, 1.1 * max(p[1] for r in runs for p in r["points"])]
    for r in runs:
        r["hypervolume"] = hypervolume(r["points"], directions, ref)
    by = {arm: [r for r in runs if r["arm"] == arm] for arm in PRUNERS}
    hv = {a: [r["hypervolume"] for r in v] for a, v in by.items()}
    ep = {a: [r["epochs"] for r in v] for a, v in by.items()}
    share_hv = [p / u for p, u in zip(hv["mo_asha"], hv["unpruned"])]
    share_ep = [p / u for p, u in zip(ep["mo_asha"], ep["unpruned"])]
    out = {"trials": trials, "seeds": seeds, "epochs_per_trial": EPOCHS, "settings": SETTINGS,
           "pruner": PRUNERS["mo_asha"],
           "reference": {"val_top1": ref[0], "infer_ms": ref[1]},
           "median_hypervolume": {a: statistics.median(v) for a, v in hv.items()},
           "median_epochs": {a: statistics.median(v) for a, v in ep.items()},
           "median_hv_share": statistics.median(share_hv), "median_epoch_share": statistics.median(share_ep),
           "runs": runs, "seconds": time.perf_counter() - t0}
    if args.json:
        print(json.dumps(out, indent=1, default=str))
        return 0
    print(f"{trials} TPE trials x {EPOCHS} epochs, seeds 0..{seeds - 1}; hypervolume reference point "
          f"val_top1 = {ref[0]:.0f} %, infer_ms = {ref[1]:.2f}")
    for a in PRUNERS:
        print(f"  {a:<9} hypervolume {'  '.join(f'{x:7.1f}' for x in hv[a])}   median "
              f"{out['median_hypervolume'][a]:.1f};  epochs {' '.join(map(str, ep[a]))}   median "
              f"{out['median_epochs'][a]:.0f}")
    print(f"mo_asha / unpruned: hypervolume {' '.join(f'{x:.1%}' for x in share_hv)} (median "
          f"{out['median_hv_share']:.1%}); epochs {' '.join(f'{x:.1%}' for x in share_ep)} (median "
          f"{out['median_epoch_share']:.1%}); {out['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
