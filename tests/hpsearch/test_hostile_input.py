"""Hostile input: every file or value a user hands over is refused with one ``Error:`` line naming it,
exit 2, bounded memory and nothing written (issue 15). Each case runs in a fresh subprocess whose
peak RSS is measured (``resource.getrusage`` in the child), so a reader that slurps or allocates what a
header claims shows up as a failure here, not as an out-of-memory kill in production."""
from __future__ import annotations

import gzip
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, STUDIES

MiB = 1 << 20

# Runs ARGV[1:] as a child and prints the child's peak RSS (KiB) as the last stderr line. The child is
# started from this small process, not from pytest: Linux keeps the peak RSS of the parent's memory
# image across fork+exec, so a child of a big pytest process would report pytest's size.
_MEASURE = r"""
import resource, subprocess, sys
rc = subprocess.call(sys.argv[1:])
sys.stderr.flush()
print("\n@@rss %d" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
sys.exit(rc)
"""


def measured(mode: str, what: str, *args: str, cwd: Path, env: dict | None = None) -> tuple[int, str, str, int]:
    """(exit code, stdout, stderr without the RSS line, peak RSS in MiB) of ``python MODE WHAT ARGS``
    run in a fresh process."""
    e = dict(os.environ if env is None else env)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), e.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, mode, what, *args], cwd=cwd,
                          env=e, capture_output=True, text=True, timeout=120)
    err, _, rss = proc.stderr.rpartition("\n@@rss ")
    return proc.returncode, proc.stdout, err.strip("\n"), int(rss) // 1024


def assert_one_error(rc: int, out: str, err: str, *names: str) -> None:
    assert "Traceback" not in err and "Traceback" not in out, err
    assert rc == 2, (rc, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    for name in names:
        assert name in lines[0], (name, lines[0])


# --------------------------------------------------------------------------- study files

def _bomb(levels: int = 9) -> str:
    text = 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        text += f"a{i}: &a{i} [{refs}]\n"
    return text


LENET = (STUDIES / "lenet.yaml").read_text()

STUDY_FILES = {
    # case: (bytes of the file, words the one line must hold)
    "nul-byte": (LENET.encode() + b"\nname: x\x00y\n", ("NUL byte", "byte offset", "binary")),
    "invalid-utf8": (b"name: caf\xe9\n" + LENET.encode(), ("not UTF-8", "byte offset 9")),
    "random-binary": (bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
                      ("not UTF-8", "byte offset")),
    "control-char": (b"name: a\x07b\n", ("U+0007", "byte offset 7")),
    "yaml-bomb": (_bomb().encode(), ("aliases", "YAML bomb")),
    "recursive-anchor": (b"name: x\nfixed: &a {b: *a}\n", ("recursive",)),
    "python-tag": (b"name: !!python/object/apply:os.system ['echo pwned']\n",
                   ("!!python/object/apply:os.system", "not allowed")),
    "python-name-tag": (b"net: !!python/name:os.system\n", ("!!python/name:os.system", "not allowed")),
}


@pytest.mark.parametrize("case", sorted(STUDY_FILES))
def test_hostile_study_file_is_one_line_exit_2_nothing_written(tmp_path: Path, case: str) -> None:
    content, words = STUDY_FILES[case]
    study = tmp_path / f"{case}.yaml"
    study.write_bytes(content)
    before = sorted(tmp_path.iterdir())
    rc, out, err, rss = measured("-m", "hpsearch.cli", "run", study.name, "--backend", "local",
                                 cwd=tmp_path)
    assert_one_error(rc, out, err, study.name, *words)
    assert "echo pwned" not in out and "pwned" not in err.replace("echo pwned", "")
    assert sorted(tmp_path.iterdir()) == before          # no Optuna store, no mlruns
    assert rss < 80, f"{case}: peak RSS {rss} MiB"


def test_a_100_mb_study_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    study = tmp_path / "huge.yaml"
    with study.open("wb") as f:
        f.write(LENET.encode() + b"\n# ")
        for _ in range(100):
            f.write(b"x" * MiB)
    rc, out, err, rss = measured("-m", "hpsearch.cli", "validate", study.name, cwd=tmp_path)
    assert_one_error(rc, out, err, "huge.yaml", "at most 1,048,576 bytes")
    assert rss < 60, f"peak RSS {rss} MiB: the file was read"


def test_a_special_file_without_a_size_is_read_only_up_to_the_cap(tmp_path: Path) -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    rc, out, err, rss = measured("-m", "hpsearch.cli", "validate", "/dev/zero", cwd=tmp_path)
    assert_one_error(rc, out, err, "/dev/zero", "at most")
    assert rss < 60


@pytest.mark.parametrize("value, words", [
    ("fixed.x={" + _bomb().replace("\n", ", ").rstrip(", ") + "}", ("fixed.x", "YAML bomb")),
    ("name=a\x01b", ("name", "U+0001")),
    ("fixed.epochs=!!python/object/apply:os.system ['echo pwned']", ("fixed.epochs",)),
    ("noequals", ("not KEY=VALUE",)),
    ("=3", ("not KEY=VALUE",)),
    ("a..b=1", ("not KEY=VALUE",)),
])
def test_hostile_set_values(tmp_path: Path, value: str, words: tuple[str, ...]) -> None:
    study = tmp_path / "lenet.yaml"
    study.write_text(LENET)
    rc, out, err, rss = measured("-m", "hpsearch.cli", "validate", study.name, "--set", value,
                                 cwd=tmp_path)
    assert_one_error(rc, out, err, "lenet.yaml", *words)
    assert rss < 150                                     # a value checked against its net imports nets


# --------------------------------------------------------------------------- MNIST IDX files

LOAD_IDX = "import sys; from nets.data import load_idx; from nets.errors import DataError\n" \
           "try:\n    load_idx(sys.argv[1])\nexcept DataError as e:\n" \
           "    print('Error:', e, file=sys.stderr); sys.exit(2)\n"


def _gz_members(path: Path, *payloads: bytes, zeros_after: int = 0) -> Path:
    """A gzip file of one member per payload, the last followed (inside it) by ``zeros_after`` zero
    bytes, compressed in 1 MiB chunks so that writing a bomb takes no memory here either."""
    with path.open("wb") as f:
        for i, payload in enumerate(payloads):
            last = i == len(payloads) - 1
            if not (last and zeros_after):
                f.write(gzip.compress(payload))
                continue
            c = zlib.compressobj(1, zlib.DEFLATED, 31)
            f.write(c.compress(payload))
            chunk = bytes(MiB)
            for _ in range(zeros_after // MiB):
                f.write(c.compress(chunk))
            f.write(c.flush())
    return path


def _header(magic: int, *dims: int) -> bytes:
    return np.array([magic, *dims], dtype=">u4").tobytes()


IDX_CASES = {
    # A 16-byte header claiming 2^31 images of 28x28: refused before reading (or allocating) anything.
    "raw-2^31-images": (lambda p: p.write_bytes(_header(2051, 2**31, 28, 28)), ("1,683,627,180,032 bytes",)),
    # 2^31 - 1 labels (under the 2 GiB cap): the file's 8 bytes are checked against the claim first.
    "raw-2^31-labels": (lambda p: p.write_bytes(_header(2049, 2**31 - 1)), ("truncated data", "2147483655")),
    "raw-huge-dims": (lambda p: p.write_bytes(_header(2051, 1, 2**32 - 1, 2**32 - 1) + b"\0" * 64),
                      ("more than the 2,147,483,648 bytes",)),
    "gz-2^31-images": (lambda p: _gz_members(p, _header(2051, 2**31, 28, 28)), ("header claims",)),
    "gz-claims-60000": (lambda p: _gz_members(p, _header(2051, 60000, 28, 28) + bytes(100)),
                        ("truncated data", "decompressed stream")),
    # gzip bombs: 300 MiB of zeros behind a header declaring 10 labels, in one member or a second one
    "gz-bomb": (lambda p: _gz_members(p, _header(2049, 10) + bytes(10), zeros_after=300 * MiB),
                ("goes on past byte 18", "inflates")),
    "gz-bomb-2nd-member": (lambda p: _gz_members(p, _header(2049, 10) + bytes(10), b"", zeros_after=300 * MiB),
                           ("goes on past byte 18",)),
    "gz-not-gzip-after-magic": (lambda p: p.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 4), ("gzip",)),
}


@pytest.mark.parametrize("case", sorted(IDX_CASES))
def test_hostile_idx_file_bounded_memory(tmp_path: Path, case: str) -> None:
    make, words = IDX_CASES[case]
    path = tmp_path / f"{case}.idx"
    make(path)
    rc, out, err, rss = measured("-c", LOAD_IDX, str(path), cwd=tmp_path)
    assert_one_error(rc, out, err, path.name, *words)
    assert rss < 200, f"{case}: peak RSS {rss} MiB"       # numpy + numba alone take about 100


def test_hostile_mnist_directory_through_hpsearch_run(tmp_path: Path) -> None:
    """Through the sweep: the data error is the study's data.path error, before any trial."""
    root = tmp_path / "mnist"
    root.mkdir()
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")
    (root / names[0]).write_bytes(_header(2051, 2**31, 28, 28))
    for name in names[1:]:
        (root / name).write_bytes(_header(2049, 0))
    study = tmp_path / "lenet.yaml"
    study.write_text(LENET)
    rc, out, err, rss = measured("-m", "hpsearch.cli", "run", study.name, "--backend", "local",
                                 "--trials", "1", "--set", f"data.path={root}", cwd=tmp_path,
                                 env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"})
    assert_one_error(rc, out, err, "data.path", names[0], "header claims")
    assert rss < 400


# --------------------------------------------------------------------------- GloVe

def test_a_glove_file_that_is_one_giant_line(tmp_path: Path) -> None:
    path = tmp_path / "glove.txt"
    with path.open("w") as f:
        f.write("the " + "0.1 " * (40 * MiB // 4))     # 40 MiB, no newline
    snippet = ("import sys; from nets.data.text import read_glove; from nets.errors import DataError\n"
               "try:\n    read_glove(sys.argv[1], ['<pad>', 'the'])\nexcept DataError as e:\n"
               "    print('Error:', e, file=sys.stderr); sys.exit(2)\n")
    rc, out, err, rss = measured("-c", snippet, str(path), cwd=tmp_path)
    assert_one_error(rc, out, err, "glove.txt", "at line 1", "longer than 1,048,576 characters")
    assert rss < 140, f"peak RSS {rss} MiB: the line was read whole"


def test_glove_lines_under_the_cap_still_read(tmp_path: Path) -> None:
    from nets.data.text import read_glove
    path = tmp_path / "glove.txt"
    path.write_text("the " + " ".join(["0.5"] * 3000) + "\nof " + " ".join(["1"] * 3000) + "\n")
    table, found = read_glove(path, ["<pad>", "the", "of"])
    assert found == 2 and table.shape == (3, 3000) and table[1, 0] == 0.5 and table[2, -1] == 1


# --------------------------------------------------------------------------- Parquet for `predict`

def _parquet(path: Path, table) -> Path:
    import pyarrow.parquet as pq
    pq.write_table(table, path)
    return path


def _predict_inputs(tmp_path: Path) -> dict:
    import pyarrow as pa
    good = [[float(v) for v in range(784)], None]
    return {
        "wrong-type": (pa.table({"pixels": ["a", "b"]}), "pixels", ("is string", "array of numbers")),
        "ragged": (pa.table({"pixels": [list(range(784)), list(range(3))]}), "pixels",
                   ("row 1 holds 3 values, not 784",)),
        "wrong-length": (pa.table({"pixels": [list(range(100))]}), "pixels", ("row 0 holds 100 values",)),
        "nan": (pa.table({"pixels": good + [[float("nan")] * 784]}), "pixels", ("row 2 holds NaN",)),
        "inf": (pa.table({"pixels": [[float("inf")] + [0.0] * 783]}), "pixels",
                ("row 0 holds NaN or an infinity",)),
        "null-pixel": (pa.table({"pixels": [[None] + [0] * 783]}), "pixels", ("row 0 holds a null pixel",)),
        "empty": (pa.table({"pixels": pa.array([], pa.list_(pa.float64()))}), "pixels", ("has no rows",)),
        "missing-column": (pa.table({"image": [list(range(784))]}), "pixels",
                           ("has no column 'pixels' (it has: image)",)),
        "text-empty": (pa.table({"text": pa.array([], pa.string())}), "text", ("has no rows",)),
        "text-wrong-type": (pa.table({"text": [1, 2]}), "text", ("is int64", "text (string)")),
    }


def test_hostile_parquet_inputs_to_predict(tmp_path: Path) -> None:
    from hpsearch.errors import HpsearchError
    from hpsearch.scoring import IMAGE, LM, _check_input
    for case, (table, column, words) in _predict_inputs(tmp_path).items():
        path = _parquet(tmp_path / f"{case}.parquet", table)
        kind = LM if column == "text" else IMAGE
        with pytest.raises(HpsearchError) as info:
            _check_input(str(path), column, kind, "lenet" if kind == IMAGE else "rnn", 784)
        line = info.value.line()
        assert "\n" not in line and path.name in line, (case, line)
        for word in words:
            assert word in line, (case, line)
    for case, content in {"zero-bytes": b"", "not-parquet": b"PAR1 hello"}.items():
        path = tmp_path / f"{case}.parquet"
        path.write_bytes(content)
        with pytest.raises(HpsearchError, match="cannot read it as Parquet"):
            _check_input(str(path), "pixels", IMAGE, "lenet", 784)


def test_good_parquet_inputs_pass_the_check(tmp_path: Path) -> None:
    import pyarrow as pa
    from hpsearch.scoring import IMAGE, _check_input
    rows = [list(range(784)), None, [0.5] * 784]
    for name, arr in {"list": pa.array(rows[:1] + rows[2:]), "with-null": pa.array([rows[0], None]),
                      "fixed": pa.array([[1.0] * 784], pa.list_(pa.float32(), 784))}.items():
        path = _parquet(tmp_path / f"{name}.parquet", pa.table({"pixels": arr}))
        _check_input(str(path), "pixels", IMAGE, "lenet", 784)


# --------------------------------------------------------------------------- text corpora, special files

def _sparse(path: Path, size: int) -> Path:
    with path.open("wb") as f:                         # holes: no disk, and the size says it all
        f.truncate(size)
    return path


def test_an_rnn_corpus_over_the_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    from nets.data.text import MAX_CORPUS_BYTES
    corpus = _sparse(tmp_path / "corpus.txt", MAX_CORPUS_BYTES + 1)
    study = tmp_path / "rnn.yaml"
    study.write_text((STUDIES / "rnn.yaml").read_text())
    rc, out, err, rss = measured("-m", "hpsearch.cli", "run", study.name, "--backend", "local",
                                 "--trials", "1", "--set", f"data.path={corpus}", cwd=tmp_path,
                                 env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"})
    assert_one_error(rc, out, err, "data.path", "corpus.txt", f"at most {MAX_CORPUS_BYTES:,} bytes")
    assert rss < 400
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "rnn.yaml"]


def test_a_newsgroups_document_over_the_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    from nets.data.text import MAX_DOCUMENT_BYTES
    for name in ("alt.a", "sci.b"):
        (tmp_path / "news" / name).mkdir(parents=True)
        (tmp_path / "news" / name / "1").write_text("Subject: hi\n\nsome words here\n")
    _sparse(tmp_path / "news" / "sci.b" / "2", MAX_DOCUMENT_BYTES + 1)
    snippet = ("import sys; from nets.data.text import load_newsgroups; from nets.errors import DataError\n"
               "try:\n    load_newsgroups(sys.argv[1], seq_len=10)\nexcept DataError as e:\n"
               "    print('Error:', e, file=sys.stderr); sys.exit(2)\n")
    rc, out, err, rss = measured("-c", snippet, str(tmp_path / "news"), cwd=tmp_path)
    assert_one_error(rc, out, err, "sci.b/2", f"at most {MAX_DOCUMENT_BYTES:,} bytes")
    assert rss < 140


def test_a_fifo_as_the_study_file_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "study.yaml"
    os.mkfifo(fifo)                                    # no writer: opening it would block forever
    for command in ("validate", "run", "show"):
        rc, out, err, _ = measured("-m", "hpsearch.cli", command, fifo.name, cwd=tmp_path)
        assert_one_error(rc, out, err, "study.yaml", "not a regular file (a FIFO)")
    from nets.data.text import read_text
    from nets.errors import DataError
    with pytest.raises(DataError, match="not a regular file"):
        read_text(fifo)
