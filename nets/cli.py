"""Command line: train one configuration, print a line per epoch (or one JSON object with --json).

    python -m nets train lenet --epochs 2
    python -m nets train autoencoder --data ~/mnist --hidden 64 --json
"""
from __future__ import annotations

import argparse
import json
import sys
import time

T_START = time.perf_counter()


def limit_blas_threads(n: int = 1) -> None:
    """One BLAS thread: the nets are small and a trial owns one core."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return
    threadpool_limits(n)


def build_parser() -> argparse.ArgumentParser:
    from nets.recipes import RECIPES

    ap = argparse.ArgumentParser(prog="python -m nets", description="Train one nets model.")
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one configuration",
                       description="Train one configuration. Without --data, the MNIST sample shipped "
                                   "with nets is used. Example: python -m nets train lenet --epochs 2")
    t.add_argument("net", choices=sorted(RECIPES))
    t.add_argument("--data", help="data path (MNIST: a directory with the four IDX files)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--optimizer", choices=["sgd", "adagrad", "adam"])
    t.add_argument("--momentum", type=float)
    t.add_argument("--weight-decay", type=float)
    t.add_argument("--lr-decay", type=float)
    t.add_argument("--hidden", type=int)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--save", help="write the trained model (.npz) here")
    t.add_argument("--json", action="store_true", help="print one JSON object at the end")
    return ap


def _params(args) -> dict:
    keys = ("epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "lr_decay", "hidden")
    return {k: getattr(args, k) for k in keys if getattr(args, k) is not None}


class Progress:
    """A progress bar inside the epoch, on a terminal only."""

    def __init__(self, enabled: bool):
        self.enabled, self.last = enabled, 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if not self.enabled or (now - self.last < 0.1 and done < total):
            return
        self.last = now
        width = 30
        fill = int(width * done / total)
        sys.stderr.write(f"\r  [{'#' * fill}{'.' * (width - fill)}] {done}/{total}")
        if done == total:
            sys.stderr.write("\r" + " " * (width + 30) + "\r")
        sys.stderr.flush()


def format_epoch(m: dict) -> str:
    parts = [f"epoch {m['epoch']}", f"loss {m['loss']:.4f}"]
    parts += [f"{k} {m[k]:.4f}" for k in ("val_loss",) if k in m]
    parts += [f"{k} {m[k]:.2f}%" for k in ("val_top1", "val_top5") if k in m]
    parts.append(f"{m['samples_per_s']:.0f} samples/s")
    return "  ".join(parts)


def cmd_train(args) -> int:
    import nets

    limit_blas_threads(1)
    recipe = nets.get_recipe(args.net)
    data = recipe.load_data(args.data)

    def on_epoch_end(epoch, metrics):
        if not args.json:
            print(format_epoch(metrics), flush=True)
        return False

    res = nets.train(recipe, _params(args), data, seed=args.seed, on_epoch_end=on_epoch_end,
                     on_batch=Progress(sys.stderr.isatty() and not args.json))
    if args.save:
        nets.save(res.model, args.save)
    if args.json:
        total = time.perf_counter() - T_START
        print(json.dumps({
            "net": recipe.name, "params": nets.recipes.resolve_params(recipe, _params(args)),
            "seed": args.seed, "data": data.source, "epochs": res.history,
            "samples_per_s": [e["samples_per_s"] for e in res.history],
            "first_batch_s": first_batch_since_start(res), "train_seconds": res.seconds, "total_seconds": total,
        }))
    return 0


def first_batch_since_start(res) -> float:
    """Seconds from process start (as near as Python sees it) to the end of the first batch."""
    return (time.perf_counter() - T_START) - (res.seconds - res.first_batch_s)


def main(argv=None) -> int:
    from nets.errors import NetsError

    args = build_parser().parse_args(argv)
    try:
        return cmd_train(args)
    except NetsError as e:
        print(f"Error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
