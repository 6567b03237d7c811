"""Peak memory of training LeNet on 60,000 images (issue 8: below 400 MB resident).

    .venv/bin/python bench/memory.py [--images 60000] [--epochs 1]

Writes a 60,000-image MNIST-format IDX set of random pixels to a temporary directory, then runs
`python -m nets train lenet --data DIR` under `/usr/bin/time -v` and prints its maximum resident set.
"""
from __future__ import annotations

import argparse
import re
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    with open(path, "wb") as fh:
        fh.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape))
        fh.write(array.tobytes())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=60000)
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="hpsearch-mem-") as tmp:
        d = Path(tmp)
        for name, n in (("train", args.images), ("t10k", 10000)):
            write_idx(d / f"{name}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), np.uint8), 2051)
            write_idx(d / f"{name}-labels-idx1-ubyte", rng.integers(0, 10, n, np.uint8), 2049)
        cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "nets", "train", "lenet", "--data", str(d),
               "--epochs", str(args.epochs)]
        out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(out.stderr[-2000:])
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1))
    print(out.stdout.strip())
    print(f"LeNet on {args.images:,} images, {args.epochs} epoch(s): peak RSS {rss_kb / 1024:.0f} MB "
          f"(limit 400 MB: {'ok' if rss_kb < 400 * 1024 else 'OVER'})")


if __name__ == "__main__":
    main()
