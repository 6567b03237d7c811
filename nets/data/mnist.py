"""MNIST-format data: IDX file reader and the four-file MNIST / Fashion-MNIST layout.

An IDX file is a 4-byte big-endian magic number, one big-endian uint32 per dimension,
then the data. Only the two magics MNIST uses are accepted: 2051 (uint8 images,
dims count x rows x cols) and 2049 (uint8 labels, dim count). Files may be raw or
gzipped; gzip is detected by its magic bytes (1f 8b), not by the file name.

Every problem with a file or directory raises :class:`nets.errors.DataError`, whose
message is one line naming the file and the problem.
"""
from __future__ import annotations

import gzip
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nets.errors import DataError

SAMPLE_DIR: Path = Path(__file__).resolve().parent / "mnist_sample"
"""The shipped 5,000-image MNIST sample (about 4,000 train / 1,000 test), gzipped IDX."""

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
_NDIM = {IMAGES_MAGIC: 3, LABELS_MAGIC: 1}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20

MAX_IDX_BYTES = 1 << 31
"""An IDX file whose header claims more data bytes than this (2 GiB) is refused before reading."""

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
FILE_NAMES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
_EXPECTED = ", ".join(FILE_NAMES) + ", each raw or with .gz"

NUM_CLASSES = 10


@dataclass(frozen=True, eq=False)
class MnistData:
    """The four MNIST arrays and the directory they came from.

    Images are (N, rows, cols) uint8 (rows = cols = 28 for MNIST), labels are (N,) uint8
    in 0..9. The arrays are writable copies, independent of the files.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str

    def __repr__(self) -> str:
        return (f"MnistData(train={self.train_images.shape}, test={self.test_images.shape}, "
                f"source={self.source!r})")


# --------------------------------------------------------------------------- IDX files

def _check_file(path: Path) -> None:
    """Raise DataError if ``path`` is missing or a directory."""
    if not path.exists():
        raise DataError(path, "file not found", hint="check the path")
    if path.is_dir():
        raise DataError(path, "is a directory, expected an IDX file")


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == _GZIP_MAGIC


def _read_upto(stream, n: int) -> bytearray:
    """Up to ``n`` bytes of ``stream``, read in chunks: memory grows only with what is really there."""
    out = bytearray()
    while len(out) < n:
        chunk = stream.read(min(_CHUNK, n - len(out)))
        if not chunk:
            break
        out += chunk
    return out


def _parse_header(path: Path, data: bytes, where: str) -> tuple[int, tuple[int, ...]]:
    """Magic number and dims from the IDX header; checks the header is complete and valid."""
    if len(data) < 4:
        raise DataError(path, f"truncated header: {where} has {len(data)} bytes, "
                              "the magic number alone needs 4", offset=len(data),
                        hint="re-download the file")
    magic = int.from_bytes(data[:4], "big")
    if magic not in _NDIM:
        raise DataError(path, f"magic number {magic} (0x{magic:08x}) is not MNIST IDX; expected "
                              f"{IMAGES_MAGIC} (images) or {LABELS_MAGIC} (labels)", offset=0,
                        hint="is this an MNIST-format file?")
    ndim = _NDIM[magic]
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(path, f"truncated header: {where} has {len(data)} bytes, "
                              f"the header needs {header_len}", offset=len(data),
                        hint="re-download the file")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    if magic == IMAGES_MAGIC and (dims[1] == 0 or dims[2] == 0):
        raise DataError(path, f"image dims {dims[1]}x{dims[2]} must be at least 1x1", offset=8)
    return magic, dims


def _check_claim(path: Path, dims: tuple[int, ...]) -> int:
    """The data bytes the header claims; refuse a claim above MAX_IDX_BYTES before reading it."""
    need = math.prod(dims)
    if need > MAX_IDX_BYTES:
        shape = "x".join(str(d) for d in dims)
        raise DataError(path, f"header claims dims {shape}, {need:,} bytes of data; more than the "
                              f"{MAX_IDX_BYTES:,} bytes nets reads from one IDX file", offset=4,
                        hint="is the header corrupt?")
    return need


def _truncated(path: Path, end: int, dims: tuple[int, ...], expected_end: int, where: str) -> DataError:
    shape = "x".join(str(d) for d in dims)
    return DataError(path, f"truncated data: {where} ends at byte {end} but dims {shape} need it to "
                           f"end at byte {expected_end}", offset=end, hint="re-download the file")


def _read_idx(path: Path, stream, size: int | None) -> np.ndarray:
    """Header, then exactly the data it claims; ``size``: the raw file's size (None when gzipped)."""
    where = "the file" if size is not None else "the decompressed stream"
    head = _read_upto(stream, 16)
    _, dims = _parse_header(path, bytes(head), where)
    header_len = 4 + 4 * len(dims)
    need = _check_claim(path, dims)
    expected_end = header_len + need
    shape = "x".join(str(d) for d in dims)
    if size is not None and size < expected_end:
        raise _truncated(path, size, dims, expected_end, where)
    if size is not None and size > expected_end:
        raise DataError(path, f"{size - expected_end} unexpected bytes after the data: {where} is "
                              f"{size} bytes but dims {shape} need {expected_end}",
                        offset=expected_end, hint="is the header's count wrong?")
    data = head[header_len:expected_end]
    data += _read_upto(stream, need - len(data))
    if len(data) < need:
        raise _truncated(path, header_len + len(data), dims, expected_end, where)
    if len(head) > expected_end or stream.read(1):
        raise DataError(path, f"{where} goes on past byte {expected_end}, where dims {shape} end "
                              "(it inflates to more than its header declares)", offset=expected_end,
                        hint="is the header's count wrong?")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def load_idx(path: str | Path) -> np.ndarray:
    """Read an MNIST IDX file (raw or gzipped) into a writable uint8 array.

    Images (magic 2051) come back as (count, rows, cols), labels (magic 2049) as (count,).
    Raises DataError if the file is missing, not gzip-decodable, or its header or length
    is wrong; offsets in messages refer to the decompressed stream for gzipped files.
    Memory stays bounded whatever the file holds: a header claiming more than MAX_IDX_BYTES
    is refused before any data is read, a raw file's size is checked against its header
    first, and a gzip stream is inflated in chunks and never past what its header declares.
    """
    path = Path(path)
    _check_file(path)
    try:
        gz = _is_gzip(path)
        if not gz:
            with path.open("rb") as f:
                return _read_idx(path, f, os.fstat(f.fileno()).st_size)
    except OSError as exc:
        raise DataError(path, f"cannot read file: {exc.strerror or exc}") from exc
    try:
        with gzip.open(path, "rb") as f:
            return _read_idx(path, f, None)
    except (OSError, EOFError, zlib.error) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(path, f"corrupt gzip stream ({detail})",
                        hint="re-download the file or replace it with the raw IDX file") from exc


# --------------------------------------------------------------------------- MNIST directory

def _find_files(directory: Path) -> dict[str, Path]:
    """Map each standard name to its file in ``directory`` (raw preferred over .gz)."""
    if not directory.exists():
        raise DataError(directory, "MNIST directory not found", hint=f"expected {_EXPECTED}")
    if not directory.is_dir():
        raise DataError(directory, "is not a directory", hint=f"expected a directory of {_EXPECTED}")
    found: dict[str, Path] = {}
    for name in FILE_NAMES:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
    missing = [name for name in FILE_NAMES if name not in found]
    if missing:
        raise DataError(directory, f"missing {', '.join(missing)}", hint=f"expected {_EXPECTED}")
    return found


def _load_kind(path: Path, ndim: int) -> np.ndarray:
    """load_idx, also checking the file is images (ndim 3) or labels (ndim 1) as its name says."""
    array = load_idx(path)
    if array.ndim != ndim:
        want, got = ("images", "labels") if ndim == 3 else ("labels", "images")
        raise DataError(path, f"holds {got} (magic {_magic_for(array.ndim)}), expected {want} "
                              f"(magic {_magic_for(ndim)})", offset=0, hint="are the files swapped?")
    return array


def _magic_for(ndim: int) -> int:
    return IMAGES_MAGIC if ndim == 3 else LABELS_MAGIC


def _load_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one split, checking the counts agree and labels are 0..9."""
    images = _load_kind(images_path, 3)
    labels = _load_kind(labels_path, 1)
    if len(images) != len(labels):
        raise DataError(images_path, f"{len(images)} images but {labels_path.name} has "
                                     f"{len(labels)} labels", hint="both must come from the same release")
    if labels.size and labels.max() >= NUM_CLASSES:
        bad = int(np.argmax(labels >= NUM_CLASSES))
        raise DataError(labels_path, f"label {int(labels[bad])} at index {bad} is outside "
                                     f"0..{NUM_CLASSES - 1}", offset=8 + bad)
    return images, labels


def load_mnist(path: str | Path | None = None) -> MnistData:
    """Load MNIST (or Fashion-MNIST) from a directory holding the four standard files.

    ``path=None`` loads the shipped sample in SAMPLE_DIR; a given path always wins.
    Raises DataError for a missing directory or file, a malformed file, image/label counts
    that differ, or train and test images of different sizes.
    """
    directory = SAMPLE_DIR if path is None else Path(path)
    files = _find_files(directory)
    train_images, train_labels = _load_split(files[TRAIN_IMAGES], files[TRAIN_LABELS])
    test_images, test_labels = _load_split(files[TEST_IMAGES], files[TEST_LABELS])
    if train_images.shape[1:] != test_images.shape[1:]:
        tr, te = train_images.shape[1:], test_images.shape[1:]
        raise DataError(files[TEST_IMAGES], f"images are {te[0]}x{te[1]} but "
                                            f"{files[TRAIN_IMAGES].name} has {tr[0]}x{tr[1]}",
                        offset=8, hint="train and test must come from the same dataset")
    return MnistData(train_images, train_labels, test_images, test_labels, source=str(directory))
