"""A conditional search space against the same space flattened, on the bundled MNIST sample (issue 19).

    .venv/bin/python bench/conditional_space.py            # 30 trials x 5 seeds x 2 spaces (a few minutes)
    .venv/bin/python bench/conditional_space.py --quick    # 6 trials x 1 seed, smoke test
    .venv/bin/python bench/conditional_space.py --json
    .venv/bin/python bench/conditional_space.py --seeds 10   # more seeds (about 20 s per seed and arm)

Both arms run studies/mlp.yaml's space (depth 1-4 with units per layer; sgd / adam / adagrad with
momentum under sgd and lr_decay under adagrad) through hpsearch on the local backend, one trial at a
time, with the same TPE settings (multivariate, group, n_startup_trials 6) and the same seed:

* conditional: the study file's space, as hpsearch draws it: a trial holds its active params only;
* flattened: every parameter drawn in every trial (units_1 ... units_4, momentum, lr_decay), and the
  net handed only the active ones (the first `layers` widths; momentum under sgd; lr_decay under
  adagrad), so both arms train exactly the same nets for the same values; only what TPE sees differs.

Short trials (1,000 training images, 250 validation, 2 epochs), so the whole run takes minutes. The
figure per arm and seed is the best validation top-1 (%) of its 30 trials; reported as is, per seed and
as a mean, whichever arm wins.
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
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])

import yaml  # noqa: E402

TRIALS, SEEDS = 30, 5
SETTINGS = {"data": {"path": None, "limit": 1000}, "fixed": {"epochs": 2}, "pruner": "none",
            "execution": {"backend": "local", "parallelism": 1},
            "sampler": {"name": "tpe", "n_startup_trials": 6, "multivariate": True, "group": True},
            "tracking": {"log_weights": False, "plots": False}}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def study_dict(seed: int, trials: int) -> dict:
    data = yaml.safe_load((ROOT / "studies" / "mlp.yaml").read_text())
    data.update(SETTINGS, seed=seed, budget={"trials": trials})
    return data


def flattened(spec: Any):
    """A define-by-run space drawing every parameter of ``spec`` every time (per-layer ones up to the
    deepest depth), which hands the net the active ones only."""
    from hpsearch.space import active_names, layer_names, layout, net_params
    highs = {p.name: int(p.high) for p in spec.space if p.kind == "int"}

    def space(trial) -> dict:
        values = {}
        for p in spec.space:
            names = layer_names(p.name, highs[p.per_layer]) if p.per_layer else [p.name]
            for name in names:
                values[name] = draw(trial, name, p)
        active = {k: v for k, v in values.items() if k in active_names(spec.space, values)}
        return net_params(active, layout(spec.space))
    return space


def draw(trial, name: str, p: Any) -> Any:
    """One value of parameter ``p`` under ``name``, as hpsearch's conditional space draws it."""
    if p.kind == "categorical":
        return trial.suggest_categorical(name, list(p.choices))
    if p.kind == "int":
        return trial.suggest_int(name, int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
    return trial.suggest_float(name, float(p.low), float(p.high), log=p.log, step=p.step)


def run_arm(arm: str, seed: int, trials: int, workdir: Path) -> dict:
    import hpsearch
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
    spec = hpsearch.spec_from_dict(study_dict(seed, trials), name=f"{arm}-{seed}", base_dir=workdir)
    t0 = time.perf_counter()
    summary = hpsearch.run_study(spec, space=flattened(spec) if arm == "flattened" else None)
    best = summary.best
    return {"arm": arm, "seed": seed, "best_val_top1": best.value if best else None,
            "best_params": best.params if best else None, "counts": summary.counts,
            "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="6 trials, one seed")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--seeds", type=int, default=SEEDS, help=f"seeds 0..N-1 (default {SEEDS})")
    args = ap.parse_args(argv)
    trials, seeds = (6, 1) if args.quick else (TRIALS, args.seeds)
    runs = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hpsearch-cond-") as tmp:
        for seed in range(seeds):
            for arm in ("conditional", "flattened"):
                runs.append(run_arm(arm, seed, trials, Path(tmp)))
                r = runs[-1]
                log(f"seed {seed} {arm:<11} best val_top1 {r['best_val_top1']:.1f}  "
                    f"({r['seconds']:.0f} s, {r['counts']})")
    by = {arm: [r["best_val_top1"] for r in runs if r["arm"] == arm] for arm in ("conditional", "flattened")}
    out = {"trials": trials, "seeds": seeds, "settings": SETTINGS, "runs": runs,
           "mean": {a: statistics.mean(v) for a, v in by.items()},
           "wins": {a: sum(x > y for x, y in zip(by[a], by[b]))
                    for a, b in (("conditional", "flattened"), ("flattened", "conditional"))},
           "seconds": time.perf_counter() - t0}
    if args.json:
        print(json.dumps(out, indent=1, default=str))
        return 0
    print(f"best validation top-1 (%) of {trials} TPE trials, per seed 0..{seeds - 1}:")
    for a, v in by.items():
        print(f"  {a:<12} {'  '.join(f'{x:5.1f}' for x in v)}   mean {out['mean'][a]:.2f}")
    print(f"seeds won: conditional {out['wins']['conditional']}, flattened {out['wins']['flattened']} "
          f"(ties: {seeds - sum(out['wins'].values())}); {out['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
