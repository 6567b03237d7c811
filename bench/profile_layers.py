"""Where a nets training step goes, per layer, one thread (the tables of bench/profile.md).

Each layer's forward and backward is called one by one exactly as `Model.forward` / `Model.backward` do,
each call timed with perf_counter; the figure is the median over the timed steps after warm-up.
`step` is a whole step timed as one (model forward, loss, backward, optimizer), so it includes the Python
between the calls that the per-layer rows leave out.

    .venv/bin/python bench/profile_layers.py                 # LeNet b12 and b128, SGD, random inputs
    .venv/bin/python bench/profile_layers.py --batch 12 --steps 400
    .venv/bin/python bench/profile_layers.py --net autoencoder --batch 150
    .venv/bin/python bench/profile_layers.py --net rnn --batch 12          # synthetic text, as nets_vs_torch
    .venv/bin/python bench/profile_layers.py --net textcnn --batch 128 --steps 3 --warm 1
The text nets use bench/nets_vs_torch.py's synthetic text (read by nets' own readers) and their recipe's
default loss and optimizer; each step takes the next real batch, as training does.
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


def setup(net: str, batch: int):
    """model, loss, optimizer and a list of (x, y) batches."""
    rng = np.random.default_rng(0)
    if net == "lenet":
        x = rng.random((batch, 28, 28, 1), dtype=np.float32)
        return lenet5(), NLLLoss(), make_optimizer("sgd", 0.01, momentum=0.9), [(x, rng.integers(0, 10, batch))]
    if net == "autoencoder":
        x = rng.random((batch, 784), dtype=np.float32)
        return autoencoder(), MSELoss(), make_optimizer("adagrad", 0.01), [(x, x)]
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import nets_vs_torch as nvt
    from nets.losses import LOSSES
    from nets.recipes import build_model, data_info, get_recipe, resolve_params

    recipe = get_recipe(net)
    p = resolve_params(recipe, {"batch_size": batch, **({"seq_len": 1000} if net == "textcnn" else {})})
    data = nvt.load_data(net)
    model = build_model(recipe, p, seed=0, info=data_info(data))
    order = np.random.default_rng(1).permutation(len(data.train))
    batches = [data.train.batch(order[i * batch:(i + 1) * batch]) for i in range(min(len(order) // batch, 200))]
    opt = make_optimizer(p["optimizer"], p["lr"], momentum=p.get("momentum", 0.0))
    return model, LOSSES[recipe.loss](), opt, batches


def profile(net: str, batch: int, steps: int, warm: int) -> None:
    model, loss, opt, batches = setup(net, batch)
    names = [f"{i}:{type(layer).__name__}" for i, layer in enumerate(model.layers)]
    t = {k: [] for k in [f"f{n}" for n in names] + ["loss"] + [f"b{n}" for n in reversed(names)] + ["opt", "step"]}
    for s in range(warm + steps):
        rec = s >= warm
        x, y = batches[s % len(batches)]
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
    ap.add_argument("--net", choices=["lenet", "autoencoder", "rnn", "textcnn"], default="lenet")
    ap.add_argument("--batch", type=int, action="append")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warm", type=int, default=50)
    a = ap.parse_args(argv)
    with threadpool_limits(1):
        default = {"lenet": [12, 128], "autoencoder": [150], "rnn": [12], "textcnn": [128]}[a.net]
        for b in a.batch or default:
            profile(a.net, b, a.steps, a.warm)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
