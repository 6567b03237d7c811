"""The Optuna side of the driver's cost per trial, and TPE's ask time as a study grows (issue 14).

Two tables, in CPU milliseconds of this process (``time.thread_time``: the driver's own work,
steadier than wall time on a shared machine):

The clock is ``time.thread_time`` (the calling thread's CPU: library thread pools do not count).

1. ask time of one trial in a study that already holds N finished trials (N = 100, 1,000, 5,000;
   built with ``study.add_trials``, random params and values), median of a few asks, for hpsearch's
   ``tpe`` (Optuna's TPE with a 1,000-trial window), Optuna's plain ``TPESampler`` and ``random``,
   in memory and on hpsearch's default store (a journal file). Acceptance: ``tpe`` at 5,000 at
   most 3x its time at 100.
2. the driver's Optuna work per trial as hpsearch does it (ask with 4 fixed distributions, 4 user
   attributes, tell) over 200 trials, on each store: in memory, hpsearch's journal file, Optuna's
   own JournalFileBackend, and SQLite as hpsearch opens it (WAL, synchronous=NORMAL).

    flock /tmp/hpsearch-bench.lock .venv/bin/python bench/ask_scale.py [--quick] [--json]

``bench/scale.py`` imports :func:`ask_ms` and :func:`driver_ms`.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ATTRS = ("mlflow_run_id", "epochs", "seconds", "worker")
STORES = ("memory", "journal", "optuna-journal", "sqlite")
SAMPLERS = ("tpe", "optuna-tpe", "random")


def distributions() -> dict[str, Any]:
    from optuna.distributions import FloatDistribution, IntDistribution
    return {"lr": FloatDistribution(1e-4, 1e-1, log=True), "momentum": FloatDistribution(0.5, 0.99),
            "batch_size": IntDistribution(8, 128, log=True), "dropout": FloatDistribution(0.0, 0.5)}


def make_storage(kind: str, folder: Path) -> Any:
    """A fresh store of ``kind`` (see STORES) in ``folder``."""
    import optuna

    from hpsearch.storage import open_storage
    name = f"{kind}-{time.time_ns()}"
    if kind == "memory":
        return optuna.storages.InMemoryStorage()
    if kind == "journal":
        return open_storage(f"journal:///{folder / name}.journal", create=True)
    if kind == "optuna-journal":
        from optuna.storages.journal import JournalFileBackend
        return optuna.storages.JournalStorage(JournalFileBackend(str(folder / f"{name}.journal")))
    if kind == "sqlite":
        return open_storage(f"sqlite:///{folder / name}.db", create=True)
    raise ValueError(kind)


def make_sampler(kind: str, seed: int = 0) -> Any:
    import optuna

    from hpsearch import samplers
    if kind == "optuna-tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return samplers.make_sampler(kind, {}, seed)


def _history(n: int, rng: random.Random) -> list[Any]:
    from optuna.trial import create_trial
    dists, out = distributions(), []
    for _ in range(n):
        p = {"lr": 10 ** rng.uniform(-4, -1), "momentum": rng.uniform(0.5, 0.99),
             "batch_size": int(round(2 ** rng.uniform(3, 7))), "dropout": rng.uniform(0.0, 0.5)}
        out.append(create_trial(params=p, distributions=dists,
                                value=(p["lr"] - 0.01) ** 2 + 0.1 * p["dropout"] + rng.gauss(0, 0.01)))
    return out


def ask_ms(store: str, sampler: str, n: int, asks: int = 7, folder: Path | None = None) -> float:
    """Median CPU ms of one ask (4 fixed distributions) in a study of ``n`` finished trials."""
    import optuna
    with tempfile.TemporaryDirectory() as tmp:
        study = optuna.create_study(storage=make_storage(store, folder or Path(tmp)),
                                    sampler=make_sampler(sampler))
        rng = random.Random(n)
        study.add_trials(_history(n, rng))
        dists, times = distributions(), []
        for _ in range(asks):
            t = time.thread_time()
            trial = study.ask(fixed_distributions=dists)
            times.append(time.thread_time() - t)
            study.tell(trial, rng.random())
        return 1e3 * statistics.median(times)


def driver_ms(store: str, sampler: str, trials: int = 200) -> tuple[float, float]:
    """CPU ms per trial of the driver's Optuna work: (ask, user attributes + tell)."""
    import optuna
    with tempfile.TemporaryDirectory() as tmp:
        study = optuna.create_study(storage=make_storage(store, Path(tmp)), sampler=make_sampler(sampler))
        dists, ask, tell = distributions(), 0.0, 0.0
        for i in range(trials):
            t0 = time.thread_time()
            trial = study.ask(fixed_distributions=dists)
            t1 = time.thread_time()
            for key in ATTRS:
                trial.set_user_attr(key, i)
            study.tell(trial, float(trial.params["lr"]))
            t2 = time.thread_time()
            ask, tell = ask + t1 - t0, tell + t2 - t1
        return 1e3 * ask / trials, 1e3 * tell / trials


def main() -> None:
    import optuna
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="sizes 100 and 1,000; 50 trials per store")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sizes = (100, 1000) if args.quick else (100, 1000, 5000)
    ask_ms("memory", "tpe", 100, asks=2)       # warm up: imports and first calls off the clock
    out: dict[str, Any] = {"ask_ms": {}, "driver_ms": {}}
    for store in ("memory", "journal"):
        for sampler in SAMPLERS:
            row = {n: ask_ms(store, sampler, n) for n in sizes}
            out["ask_ms"][f"{store}/{sampler}"] = row
            if not args.json:
                times = "  ".join(f"{n:>5d}: {ms:6.2f} ms" for n, ms in row.items())
                print(f"ask  {store:8s} {sampler:10s} {times}   x{row[sizes[-1]] / row[sizes[0]]:.1f}",
                      flush=True)
    for store in STORES:
        for sampler in ("random", "tpe"):
            ask, tell = driver_ms(store, sampler, 50 if args.quick else 200)
            out["driver_ms"][f"{store}/{sampler}"] = {"ask": ask, "tell": tell}
            if not args.json:
                print(f"trial {store:14s} {sampler:6s} ask {ask:6.2f} + attrs/tell {tell:6.2f} "
                      f"= {ask + tell:6.2f} ms", flush=True)
    if args.json:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
