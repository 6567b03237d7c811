"""Where a nets training step goes, per layer, one thread (the tables of bench/profile.md).

Each layer's forward and backward is called one by one exactly as `Model.forward` / `Model.backward` do,
each call timed with perf_counter; the figure is the median over the timed steps after warm-up.
`step` is a whole step timed as one (model forward, loss, backward, optimizer), so it includes the Python
between the calls that the per-layer rows leave out.

    .venv/bin/python bench/profile_layers.py                 # LeNet b12 and b128, SGD, random inputs
    .venv/bin/python bench/profile_layers.py --batch 12 --steps 400
    .venv/bin/python bench/profile_layers.py --net autoencoder --batch 150
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nets.losses import MSELoss, NLLLoss  # noqa: E402
from nets.models import autoencoder, lenet5  # noqa: E402
from nets.optim import make_optimizer  # noqa: E402


def profile(net: str, batch: int, steps: int, warm: int) -> None:
    rng = np.random.default_rng(0)
    if net == "lenet":
        model = lenet5()
        x = rng.random((batch, 28, 28, 1), dtype=np.float32)
        y = rng.integers(0, 10, batch)
        loss = NLLLoss()
    else:
        model = autoencoder()
        x = rng.random((batch, 784), dtype=np.float32)
        y = x
        loss = MSELoss()
    opt = make_optimizer("sgd", 0.01, momentum=0.9)
    names = [f"{i}:{type(layer).__name__}" for i, layer in enumerate(model.layers)]
    t = {k: [] for k in [f"f{n}" for n in names] + ["loss"] + [f"b{n}" for n in reversed(names)] + ["opt", "step"]}
    for s in range(warm + steps):
        rec = s >= warm
        h = x
        for n, layer in zip(names, model.layers):
            t0 = time.perf_counter()
            h = layer.forward(h)
            if rec:
                t[f"f{n}"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        loss.forward(h, y)
        d = loss.backward()
        if rec:
            t["loss"].append(time.perf_counter() - t0)
        for n, layer in reversed(list(zip(names, model.layers))):
            t0 = time.perf_counter()
            d = layer.backward(d)
            if rec:
                t[f"b{n}"].append(time.perf_counter() - t0)
            if d is None:
                break
        t0 = time.perf_counter()
        opt.step(model.params, model.grads)
        if rec:
            t["opt"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        loss.forward(model.forward(x), y)
        model.backward(loss.backward())
        opt.step(model.params, model.grads)
        if rec:
            t["step"].append(time.perf_counter() - t0)
    print(f"\n{net} batch {batch}: median ms per call over {steps} steps")
    for k, v in t.items():
        if v:
            print(f"  {k:<24} {1e3 * statistics.median(v):8.3f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", choices=["lenet", "autoencoder"], default="lenet")
    ap.add_argument("--batch", type=int, action="append")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warm", type=int, default=50)
    a = ap.parse_args(argv)
    with threadpool_limits(1):
        for b in a.batch or ([12, 128] if a.net == "lenet" else [150]):
            profile(a.net, b, a.steps, a.warm)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
