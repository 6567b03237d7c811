"""Compile time of nets' numba kernels, cold and warm (issue 8: LeNet <= 20 s, all four nets <= 60 s cold;
warm, a process trains its first batch within 2 s of start).

Each measurement is a fresh Python process with NUMBA_CACHE_DIR pointing at a new empty folder (cold) or
at the folder the cold run just filled (warm). The process builds the net, trains two batches and runs
one prediction (all the kernels a training run touches: forward, loss, backward, optimizer, evaluation)
and reports seconds since its own start.

    .venv/bin/python bench/compile_time.py            # lenet alone, then all four nets
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SNIPPET = r"""
import time, json, sys
t0 = time.perf_counter()
import numpy as np
from nets import models
from nets.losses import LOSSES
from nets.optim import make_optimizer
rng = np.random.default_rng(0)
out = {}
def run(name, model, x, y, loss, opt):
    for _ in range(2):
        l = loss.forward(model.forward(x), y)
        model.backward(loss.backward())
        opt.step(model.params, model.grads)
        out.setdefault(name + "_first_batch_s", time.perf_counter() - t0)
    model.predict(x, batch_size=len(x))
    out[name + "_done_s"] = time.perf_counter() - t0
for name in sys.argv[1].split(","):
    if name == "lenet":
        run(name, models.lenet5(), rng.random((12, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 12),
            LOSSES["nll"](), make_optimizer("sgd", 0.05))
    elif name == "autoencoder":
        x = rng.random((150, 784), dtype=np.float32)
        run(name, models.autoencoder(), x, x, LOSSES["mse"](), make_optimizer("adagrad", 0.01))
    elif name == "textcnn":
        x = rng.integers(1, 500, (4, 100)).astype(np.int32)
        run(name, models.text_cnn(500, 4, length=100, embed=20, filters=16, hidden=10), x,
            rng.integers(0, 4, 4), LOSSES["nll"](), make_optimizer("adagrad", 0.01))
    elif name == "rnn":
        x = rng.integers(1, 300, (6, 20)).astype(np.int32)
        x[:, 15:] = 0
        y = np.where(x != 0, rng.integers(1, 300, x.shape), 0)
        run(name, models.rnn_lm(300, hidden=16, length=20), x, y, LOSSES["seq_nll"](), make_optimizer("sgd", 0.1))
out["total_s"] = time.perf_counter() - t0
print(json.dumps(out))
"""


def measure(nets: str, cache: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", SNIPPET, nets], cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["process_wall_s"] = time.perf_counter() - t0
    return res


def main() -> int:
    for nets in ("lenet", "lenet,autoencoder,textcnn,rnn"):
        with tempfile.TemporaryDirectory() as cache:
            cold = measure(nets, cache)
            warm = measure(nets, cache)
        print(f"{nets}: cold {cold['total_s']:.1f} s (process {cold['process_wall_s']:.1f} s); "
              f"warm {warm['total_s']:.2f} s (process {warm['process_wall_s']:.2f} s)")
        first = [k for k in warm if k.endswith("_first_batch_s")][0]
        print(f"  warm: first batch {warm[first]:.2f} s after the process's start of Python code; "
              f"details cold {json.dumps({k: round(v, 2) for k, v in cold.items()})}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
