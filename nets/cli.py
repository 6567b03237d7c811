"""Command line: train one configuration, print a line per epoch (or one JSON object with --json).

    python -m nets train lenet --epochs 2
    python -m nets train autoencoder --data ~/mnist --hidden 64 --json
    python -m nets train textcnn --data ~/20news-19997 --glove glove.6B.100d.txt --classes 8 --seq-len 500
    python -m nets train rnn --data input.txt --vocab 4000 --save lm.npz
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

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
    t.add_argument("--data", help="data path (MNIST: a directory with the four IDX files; textcnn, "
                                  "required: one folder per class, one file per document; rnn, required: "
                                  "a plain-text corpus file)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--optimizer", choices=["sgd", "adagrad", "adam"])
    t.add_argument("--momentum", type=float)
    t.add_argument("--weight-decay", type=float)
    t.add_argument("--lr-decay", type=float)
    t.add_argument("--hidden", type=_widths, metavar="H[,H...]",
                   help="hidden width, or a comma list of widths for lenet, mlp, autoencoder (256,64,32)")
    text = t.add_argument_group("text nets (textcnn, rnn)")
    text.add_argument("--glove", metavar="FILE", help="textcnn: GloVe text vectors (fixed features)")
    text.add_argument("--fine-tune", action="store_const", const=True, dest="fine_tune",
                      help="textcnn: train the GloVe vectors too")
    text.add_argument("--seq-len", type=int, metavar="L", help="textcnn: tokens per document (1000)")
    text.add_argument("--classes", metavar="K",
                      help="textcnn: the first K classes, or a comma list of class folder names (all)")
    text.add_argument("--drop-headers", action="store_const", const=True, dest="drop_headers",
                      help="textcnn: drop mail/news headers")
    text.add_argument("--vocab", type=int, metavar="V",
                      help="vocabulary size (textcnn 20000 + unknown; rnn 4000 + unknown)")
    text.add_argument("--skip-top", type=int, metavar="N",
                      help="textcnn: leave the N most frequent words out (0; BigDL's seed: 10)")
    text.add_argument("--pipeline", type=int, choices=[1, 2, 3],
                      help="textcnn: text pipeline (2; 1: BigDL's, letters a-z only, unknown words dropped; "
                           "3: words of any length)")
    text.add_argument("--max-len", type=int, metavar="T", help="rnn: steps per sequence (50)")
    text.add_argument("--embed", type=int, help="textcnn: embedding width without GloVe (100)")
    text.add_argument("--filters", type=int, help="textcnn: filters per convolution (128)")
    text.add_argument("--val-fraction", type=float, help="text nets: validation fraction (0.2)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--save", help="write the trained model (.npz) here")
    t.add_argument("--json", action="store_true", help="print one JSON object at the end")
    return ap


def _widths(text: str) -> int | list[int]:
    """``64`` -> 64; ``256,64,32`` -> [256, 64, 32] (one hidden layer per width)."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a width or a comma list of widths: {text!r}") from None
    return sizes[0] if len(sizes) == 1 else sizes


def _params(args) -> dict:
    keys = ("epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "lr_decay", "hidden",
            "glove", "fine_tune", "seq_len", "classes", "drop_headers", "vocab", "max_len", "embed",
            "filters", "val_fraction", "skip_top", "pipeline")
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
    parts += [f"val_ppl {m['val_ppl']:.1f}" for _ in [0] if "val_ppl" in m]
    parts.append(f"{m['samples_per_s']:.0f} samples/s")
    return "  ".join(parts)


def cmd_train(args) -> int:
    import nets

    limit_blas_threads(1)
    run = nets.prepare(args.net, _params(args), args.data, seed=args.seed)
    summary = data_summary(run.data)
    if summary and not args.json:
        print("data: " + ", ".join(f"{k} {v}" for k, v in summary.items()), flush=True)

    def on_epoch_end(epoch, metrics):
        if not args.json:
            print(format_epoch(metrics), flush=True)
        return False

    hist = run.fit(on_epoch_end, on_batch=Progress(sys.stderr.isatty() and not args.json))
    if args.save:
        path = nets.save(run.model, args.save)
        if getattr(run.model, "vocab", None):            # the dictionary, beside the model, for people
            Path(path).with_name(Path(path).stem + ".vocab.txt").write_text("\n".join(run.model.vocab) + "\n")
    if args.json:
        total = time.perf_counter() - T_START
        print(json.dumps({
            "net": run.recipe.name, "params": run.params,
            "seed": args.seed, "data": run.data.source, **({"data_summary": summary} if summary else {}),
            "epochs": hist.epochs,
            "samples_per_s": [e["samples_per_s"] for e in hist.epochs],
            "first_batch_s": first_batch_since_start(hist), "train_seconds": hist.seconds, "total_seconds": total,
        }))
    return 0


def data_summary(data) -> dict:
    """Sizes of a text data set (vocabulary, classes, splits, GloVe coverage); {} for other data."""
    info = data.info or {}
    out = {}
    if "classes" in info:
        out["classes"] = len(info["classes"])
    if "documents" in info:
        out["train_documents"], out["val_documents"] = info["documents"]
    if "sentences" in info:
        out["train_sequences"], out["val_sequences"] = len(data.train), len(data.val)
        out["train_words"], out["val_words"] = info["words"]
    if "vocab" in info:
        out["vocabulary"] = len(info["vocab"])
    if "glove" in info:
        g = info["glove"]
        out["glove_coverage"] = f"{g['found']}/{g['words']} ({100 * g['coverage']:.1f}%)"
    return out


def first_batch_since_start(hist) -> float:
    """Seconds from process start (as near as Python sees it) to the end of the first batch."""
    return (time.perf_counter() - T_START) - (hist.seconds - hist.first_batch_s)


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
