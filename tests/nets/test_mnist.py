"""Tests of nets.data.mnist: IDX round trips, the shipped sample, and every DataError."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from nets.data import SAMPLE_DIR, MnistData, load_idx, load_mnist
from nets.errors import DataError

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """Independent IDX encoder for the tests."""
    if magic is None:
        magic = 2051 if array.ndim == 3 else 2049
    header = np.array([magic, *array.shape], dtype=">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write(path: Path, payload: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def make_dir(root: Path, n_train: int = 6, n_test: int = 4, gz: bool = False,
             side: int = 28, seed: int = 0) -> tuple[Path, dict[str, np.ndarray]]:
    """A small MNIST directory with random contents; returns it and the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        NAMES[0]: rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
        NAMES[1]: rng.integers(0, 10, n_train, dtype=np.uint8),
        NAMES[2]: rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
        NAMES[3]: rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write(root / (name + (".gz" if gz else "")), idx_bytes(array), gz)
    return root, arrays


def raises_one_line(fn, *args, names: tuple[str, ...]) -> DataError:
    """Call fn, assert it raises a one-line DataError naming each of ``names``; return it."""
    with pytest.raises(DataError) as info:
        fn(*args)
    msg = str(info.value)
    assert "\n" not in msg, msg
    for name in names:
        assert name in msg, msg
    return info.value


# --------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    # gzip is detected by its magic bytes, so the name need not end in .gz
    img = write(tmp_path / "images.bin", idx_bytes(images), gz)
    lbl = write(tmp_path / "labels.bin", idx_bytes(labels), gz)
    got_images, got_labels = load_idx(img), load_idx(lbl)
    assert got_images.dtype == np.uint8 and got_labels.dtype == np.uint8
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    got_images[0, 0, 0] = 1  # writable


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_round_trip(tmp_path, gz):
    root, arrays = make_dir(tmp_path / "m", gz=gz)
    data = load_mnist(root)
    assert isinstance(data, MnistData)
    assert data.source == str(root)
    np.testing.assert_array_equal(data.train_images, arrays[NAMES[0]])
    np.testing.assert_array_equal(data.train_labels, arrays[NAMES[1]])
    np.testing.assert_array_equal(data.test_images, arrays[NAMES[2]])
    np.testing.assert_array_equal(data.test_labels, arrays[NAMES[3]])


def test_shipped_sample():
    data = load_mnist()
    assert data.source == str(SAMPLE_DIR)
    assert data.train_images.shape == (4000, 28, 28) and data.train_images.dtype == np.uint8
    assert data.test_images.shape == (1000, 28, 28) and data.test_images.dtype == np.uint8
    assert data.train_labels.shape == (4000,) and data.test_labels.shape == (1000,)
    assert set(np.unique(data.train_labels)) == set(range(10))
    assert set(np.unique(data.test_labels)) == set(range(10))
    assert data.train_images.max() > 200  # real pixels, not zeros


def test_given_path_wins_over_sample(tmp_path):
    root, _ = make_dir(tmp_path / "m", n_train=3, n_test=2)
    data = load_mnist(root)
    assert data.train_images.shape == (3, 28, 28) and data.test_images.shape == (2, 28, 28)
    assert data.source == str(root)


# --------------------------------------------------------------------------- errors

def test_truncated_header(tmp_path):
    path = write(tmp_path / "short-header", idx_bytes(np.zeros((2, 3, 3), np.uint8))[:10])
    err = raises_one_line(load_idx, path, names=("short-header", "header"))
    assert err.offset == 10


def test_truncated_magic(tmp_path):
    path = write(tmp_path / "tiny", b"\x00\x00")
    err = raises_one_line(load_idx, path, names=("tiny", "header"))
    assert err.offset == 2


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_data(tmp_path, gz):
    full = idx_bytes(np.ones((2, 3, 3), np.uint8))  # 16 header + 18 data = 34 bytes
    path = write(tmp_path / "short-data", full[:30], gz)
    err = raises_one_line(load_idx, path, names=("short-data", "byte offset 30", "34"))
    assert err.offset == 30
    assert ("decompressed" in str(err)) == gz


def test_trailing_bytes(tmp_path):
    path = write(tmp_path / "long", idx_bytes(np.ones(3, np.uint8)) + b"xx")
    err = raises_one_line(load_idx, path, names=("long",))
    assert err.offset == 11


def test_wrong_magic(tmp_path):
    path = write(tmp_path / "bad-magic", idx_bytes(np.ones(3, np.uint8), magic=2050))
    raises_one_line(load_idx, path, names=("bad-magic", "2050", "2051", "2049"))


def test_missing_file(tmp_path):
    raises_one_line(load_idx, tmp_path / "nope", names=("nope",))


def test_corrupt_gzip(tmp_path):
    good = gzip.compress(idx_bytes(np.ones((2, 3, 3), np.uint8)))
    corrupt = write(tmp_path / "corrupt.gz", good[:12] + bytes(b ^ 0xFF for b in good[12:]))
    raises_one_line(load_idx, corrupt, names=("corrupt.gz", "gzip"))
    cut = write(tmp_path / "cut.gz", good[: len(good) // 2])
    raises_one_line(load_idx, cut, names=("cut.gz", "gzip"))


def test_mismatched_counts(tmp_path):
    root, _ = make_dir(tmp_path / "m")
    write(root / NAMES[1], idx_bytes(np.zeros(5, np.uint8)))  # 6 images, 5 labels
    raises_one_line(load_mnist, root, names=(NAMES[0], NAMES[1], "6 images", "5 labels"))


def test_directory_missing_a_file(tmp_path):
    root, _ = make_dir(tmp_path / "m", gz=True)
    (root / (NAMES[3] + ".gz")).unlink()
    err = raises_one_line(load_mnist, root, names=(str(root), *NAMES))
    assert f"missing {NAMES[3]}" in str(err)


def test_nonexistent_directory(tmp_path):
    raises_one_line(load_mnist, tmp_path / "no-such-dir", names=("no-such-dir", *NAMES))


def test_rows_cols_differ_between_train_and_test(tmp_path):
    root, _ = make_dir(tmp_path / "m")
    write(root / NAMES[2], idx_bytes(np.zeros((4, 27, 28), np.uint8)))
    raises_one_line(load_mnist, root, names=(NAMES[0], NAMES[2], "27x28", "28x28"))


def test_swapped_images_and_labels(tmp_path):
    root, _ = make_dir(tmp_path / "m")
    write(root / NAMES[0], idx_bytes(np.zeros(6, np.uint8)))
    raises_one_line(load_mnist, root, names=(NAMES[0], "2051"))


def test_label_out_of_range(tmp_path):
    root, _ = make_dir(tmp_path / "m")
    write(root / NAMES[3], idx_bytes(np.array([1, 2, 12, 3], np.uint8)))
    err = raises_one_line(load_mnist, root, names=(NAMES[3], "12"))
    assert err.offset == 10
