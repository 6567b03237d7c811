"""The LeNet sweep of studies/lenet.yaml written by hand: Optuna + PyTorch + MLflow (bench/e2e.py runs it).

What a user writes without hpsearch: two worker processes (``multiprocessing``, spawn) share one Optuna
study in a SQLite file and each runs ``study.optimize`` on half the trials; a trial trains the PyTorch
LeNet of bench/_torch_models.py on one thread (``torch.set_num_threads(1)``), reports ``val_loss``
after every epoch (``trial.report`` + ``should_prune``) and logs an MLflow child run (params, per-epoch
metrics; KILLED when pruned) under the sweep's parent run. The study's settings (search space, epochs,
TPE's startup trials, Hyperband's resources, seed, data limit) are read from the YAML file, so both sides
run the same sweep; the data is the MNIST sample bundled with nets, read with numpy (gzip IDX files) and
normalised as nets' LeNet recipe does (train: the first ``limit`` images; validation: the first
``max(100, limit // 4)`` test images). SGD uses nets' (BigDL's) dampening, equal to the momentum.

Run:  python bench/_e2e_torch.py STUDY.yaml --storage sqlite:///o.db --tracking-uri sqlite:///m.db
Prints one JSON line: the trial counts and the first trial's start (wall clock, seconds since epoch).
"""
from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing as mp
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "nets" / "data" / "mnist_sample"
MNIST_MEAN, MNIST_STD = 0.13066047740239506, 0.3081078   # nets.models' normalisation


# ------------------------------------------------------------------------------------------ data

def idx(path: Path) -> np.ndarray:
    """One MNIST IDX file (gzip): images (n, 28, 28) or labels (n,), uint8."""
    raw = gzip.decompress(path.read_bytes())
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(limit: int):
    """(x_train, y_train, x_val, y_val) as float32 NCHW tensors and int64 labels."""
    import torch

    def images(name: str, n: int) -> torch.Tensor:
        x = idx(SAMPLE / name)[:n].astype(np.float32) / 255.0
        return torch.from_numpy((x - MNIST_MEAN) / MNIST_STD).unsqueeze(1)

    def labels(name: str, n: int) -> torch.Tensor:
        return torch.from_numpy(idx(SAMPLE / name)[:n].astype(np.int64))

    nv = max(100, limit // 4)
    return (images("train-images-idx3-ubyte.gz", limit), labels("train-labels-idx1-ubyte.gz", limit),
            images("t10k-images-idx3-ubyte.gz", nv), labels("t10k-labels-idx1-ubyte.gz", nv))


# ------------------------------------------------------------------------------------------ study

def suggest(trial, space: dict) -> dict:
    """The study file's search space, by hand."""
    params = {}
    for name, p in space.items():
        if "choices" in p:
            params[name] = trial.suggest_categorical(name, p["choices"])
        elif p["type"] == "int":
            params[name] = trial.suggest_int(name, p["low"], p["high"], log=p.get("log", False))
        else:
            params[name] = trial.suggest_float(name, p["low"], p["high"], log=p.get("log", False))
    return params


def make_study(cfg: dict, storage: str, seed: int, load_only: bool = False):
    import optuna
    sampler = optuna.samplers.TPESampler(n_startup_trials=cfg["sampler"]["n_startup_trials"], seed=seed)
    pr = cfg["pruner"]
    pruner = optuna.pruners.HyperbandPruner(min_resource=pr["min_resource"],
                                            max_resource=cfg["fixed"]["epochs"],
                                            reduction_factor=pr["reduction_factor"])
    if load_only:
        return optuna.load_study(study_name="lenet", storage=storage, sampler=sampler, pruner=pruner)
    return optuna.create_study(study_name="lenet", storage=storage, sampler=sampler, pruner=pruner,
                               direction="minimize")


# ------------------------------------------------------------------------------------------ worker

def objective(trial, cfg: dict, data, parent: str) -> float:
    import mlflow
    import optuna
    import torch

    sys.path.insert(0, str(ROOT / "bench"))
    from _torch_models import LeNet5

    x, y, xv, yv = data
    p = suggest(trial, cfg["search_space"])
    seed = cfg["seed"] + trial.number
    torch.manual_seed(seed)
    model = LeNet5(p["hidden"])
    crit = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=p["lr"], momentum=p["momentum"], dampening=p["momentum"])
    rng = np.random.default_rng(seed)
    n, bs = len(x), p["batch_size"]
    with mlflow.start_run(run_name=f"trial {trial.number}", parent_run_id=parent, nested=True):
        mlflow.log_params({**p, "number": trial.number, **cfg["fixed"]})
        for epoch in range(1, cfg["fixed"]["epochs"] + 1):
            model.train()
            total = 0.0
            order = rng.permutation(n)
            for b in range((n + bs - 1) // bs):
                i = torch.from_numpy(order[b * bs:(b + 1) * bs])
                opt.zero_grad(set_to_none=True)
                loss = crit(model(x[i]), y[i])
                loss.backward()
                opt.step()
                total += loss.item() * len(i)
            model.eval()
            with torch.inference_mode():
                out = model(xv)
                val_loss = float(crit(out, yv))
                top1 = 100.0 * float((out.argmax(1) == yv).double().mean())
            mlflow.log_metrics({"loss": total / n, "val_loss": val_loss, "val_top1": top1}, step=epoch)
            trial.report(val_loss, epoch)
            if trial.should_prune():
                mlflow.end_run(status="KILLED")
                raise optuna.TrialPruned()
    return val_loss


def worker(cfg: dict, storage: str, uri: str, parent: str, trials: int, seed: int) -> None:
    import mlflow
    import optuna
    import torch
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("lenet")
    data = load(cfg["data"]["limit"])
    study = make_study(cfg, storage, seed, load_only=True)
    study.optimize(lambda t: objective(t, cfg, data, parent), n_trials=trials)


# ------------------------------------------------------------------------------------------ main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study")
    ap.add_argument("--storage", required=True)
    ap.add_argument("--tracking-uri", required=True)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    import mlflow
    import optuna
    import yaml
    cfg = yaml.safe_load(Path(args.study).read_text())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = make_study(cfg, args.storage, cfg["seed"])
    mlflow.set_tracking_uri(args.tracking_uri)
    mlflow.set_experiment("lenet")
    with mlflow.start_run(run_name="sweep") as parent:
        mlflow.log_params({"sampler": "tpe", "pruner": "hyperband", "trials": args.trials})
        per = [args.trials // args.workers + (i < args.trials % args.workers) for i in range(args.workers)]
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=worker, args=(cfg, args.storage, args.tracking_uri,
                                                  parent.info.run_id, n, cfg["seed"] + i))
                 for i, n in enumerate(per)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        best = study.best_trial
        mlflow.log_metric("best_val_loss", best.value)
        mlflow.log_params({f"best_{k}": v for k, v in best.params.items()})
    trials = study.get_trials(deepcopy=False)
    states = [t.state.name for t in trials]
    first = min(t.datetime_start.timestamp() for t in trials if t.datetime_start)
    print(json.dumps({"trials": len(trials), "complete": states.count("COMPLETE"),
                      "pruned": states.count("PRUNED"), "failed": states.count("FAIL"),
                      "first_trial_start": first, "exitcodes": [p.exitcode for p in procs]}))
    return 0 if all(p.exitcode == 0 for p in procs) else 1


if __name__ == "__main__":
    sys.exit(main())
