"""Property-based fuzz (issue 15, acceptance 5): the CLI with random commands, flags and values, and
the study loader with random bytes and random settings, never end in a traceback.

The CLI runs in-process through click's CliRunner. Every study file the CLI fuzz hands over points its
data at an MNIST directory whose images header claims 2^31 images, and ``--set`` never touches
``data``: a combination of flags that is valid therefore stops at reading the data (one ``Error:``
line, exit 2) before a trial, Spark or MLflow starts, and the fuzz stays fast. ``schedule`` always gets
``--once`` (else a valid cron would wait for its tick).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import STUDIES
from hpsearch.cli import cli
from hpsearch.errors import HpsearchError
from hpsearch.spec import load_spec

LENET = yaml.safe_load((STUDIES / "lenet.yaml").read_text())
FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Path:
    """A directory with a hostile MNIST directory, a study pointing at it, and some other files."""
    root = tmp_path_factory.mktemp("fuzz")
    mnist = root / "mnist"
    mnist.mkdir()
    header = np.array([2051, 2**31, 28, 28], ">u4").tobytes()
    (mnist / "train-images-idx3-ubyte").write_bytes(header)
    for name in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (mnist / name).write_bytes(np.array([2049, 0], ">u4").tobytes())
    study = dict(LENET, data={"path": str(mnist), "limit": 50})
    study["execution"] = {"backend": "local", "parallelism": 1}
    (root / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    (root / "binary.yaml").write_bytes(bytes(range(256)))
    (root / "empty.yaml").write_bytes(b"")
    (root / "dir.yaml").mkdir()
    (root / "input.parquet").write_bytes(b"PAR1 not really")
    return root


# --------------------------------------------------------------------------- value strategies

TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=24)
NUMBERS = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True))
ODD = st.sampled_from(["", " ", "-1", "0", "1", "nan", "inf", "1e309", "null", "~", "[]", "{}", "[1, [2]]",
                       "{a: 1}", "!!python/object/apply:os.getcwd []", "&a [*a]", "'", '"', "\t", "\n",
                       "sqlite:///", "sqlite:////nonexistent/dir/x.db", "postgresql://u:pw@127.0.0.1:9/db",
                       "mysql://u:pw@127.0.0.1:9/db", "file:///nonexistent", "local[0]", "local[2]",
                       "spark://127.0.0.1:9", "0 2 * * *", "* * *", "99 99 99 99 99", "1h30m", "-5m",
                       "{\"lr\": 0.1}", "{\"lr\": \"x\"}", "[1]", "study.yaml", "binary.yaml", "mnist",
                       "input.parquet", "out.parquet", "/dev/null", "\x00", "a" * 2000])
VALUE = st.one_of(ODD, TEXT, NUMBERS.map(str))

SET_KEYS = ["name", "net", "fixed.epochs", "fixed.lr", "fixed.optimizer", "fixed.nope", "search_space",
            "search_space.lr", "search_space.lr.low", "search_space.lr.type", "search_space.batch_size.choices",
            "objective.metric", "objective.direction", "sampler", "sampler.name", "sampler.seed",
            "pruner.name", "pruner.min_resource", "budget.trials", "budget.timeout", "execution",
            "execution.backend", "execution.parallelism", "execution.master", "execution.data_parallel",
            "execution.data_parallel.workers", "storage", "tracking", "tracking.uri", "tracking.plots",
            "seed", "schedule", "schedule.cron", "schedule.max_runs", "nope", "fixed", "a.b.c",
            "execution.spark_conf", "execution.spark_conf.spark.authenticate.secret", "execution.spark_conf.x"]
SET_ITEM = st.one_of(
    st.tuples(st.sampled_from(SET_KEYS), VALUE).map(lambda kv: f"{kv[0]}={kv[1]}"),
    TEXT.filter(lambda t: not t.lstrip().startswith("data")))

COMMANDS = sorted(cli.commands)
OPTIONS = {name: [(o.opts[-1], o.is_flag) for o in cmd.params if o.opts[0].startswith("-")]
           for name, cmd in cli.commands.items()}
SPECS = st.sampled_from(["study.yaml"] * 6 + ["binary.yaml", "empty.yaml", "dir.yaml", "missing.yaml", "",
                                               "-"])


@st.composite
def command_lines(draw) -> list[str]:
    """A command line of one of the CLI's commands: its own options with random values mostly, and
    now and then an unknown option, a stray value or no command at all."""
    command = draw(st.sampled_from(COMMANDS + [""])) if draw(st.integers(0, 20)) == 0 else \
        draw(st.sampled_from(COMMANDS))
    args = [command] if command else []
    args.append(draw(SPECS))
    options = OPTIONS.get(command, [])
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.integers(0, 12))
        if kind == 0:
            args.append(draw(st.one_of(VALUE, st.sampled_from(["--nope", "-h", "--version", "-x"]))))
        elif kind <= 4 and ("--set", False) in options:
            args += ["--set", draw(SET_ITEM)]
        elif options:
            flag, is_flag = draw(st.sampled_from(options))
            if flag == "--set":
                continue
            args.append(flag)
            if not is_flag:
                args.append(draw(VALUE))
    if command == "schedule":
        args.append("--once")
    if command == "predict" and draw(st.booleans()):
        args += ["--input", "input.parquet", "--output", "out.parquet"]
    return args


def _check_result(args: list[str], result) -> None:
    out = result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args, repr(result.exception), out)
    assert "Traceback" not in out, (args, out)
    assert result.exit_code in (0, 1, 2), (args, result.exit_code, out)
    if result.exit_code == 2:
        errors = [line for line in out.splitlines() if line.startswith("Error: ")]
        assert errors, (args, out)
        event("usage error" if "Usage:" in out else "hpsearch error " + " ".join(errors[0].split()[1:4])[:40])
    else:
        event(f"exit {result.exit_code}")


@FUZZ
@given(args=command_lines())
def test_cli_fuzz_never_a_traceback(place: Path, args: list[str]) -> None:
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{place / 'mlflow.db'}", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
           "MLFLOW_HTTP_REQUEST_TIMEOUT": "2", "COLUMNS": "120"}
    cwd = os.getcwd()
    os.chdir(place)
    try:
        result = CliRunner().invoke(cli, args, env=env, catch_exceptions=True)
    finally:
        os.chdir(cwd)
    _check_result(args, result)


def test_the_fuzz_reaches_the_data_check(place: Path) -> None:
    """The fuzz's guard works: a valid command line stops at the hostile data, exit 2, one line."""
    cwd = os.getcwd()
    os.chdir(place)
    try:
        result = CliRunner().invoke(cli, ["run", "study.yaml", "--trials", "1"],
                                    env={"MLFLOW_TRACKING_URI": f"sqlite:///{place / 'mlflow.db'}"})
    finally:
        os.chdir(cwd)
    assert result.exit_code == 2 and "data.path" in result.output and "header claims" in result.output


# --------------------------------------------------------------------------- the study loader

MUTATION = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT, ODD,
                     st.lists(st.one_of(NUMBERS, TEXT), max_size=3),
                     st.dictionaries(TEXT, st.one_of(NUMBERS, TEXT, st.none()), max_size=3))


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))


LENET_PATHS = [p for p in _paths(LENET) if p]


def _load(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fuzzed.yaml"
    path.write_bytes(content)
    try:
        load_spec(path)
    except HpsearchError as exc:
        line = exc.line()
        assert "\n" not in line and line, repr(line)
        assert "fuzzed.yaml" in line, line


@FUZZ
@given(content=st.one_of(st.binary(max_size=400),
                         st.binary(max_size=40).map(lambda b: (STUDIES / "lenet.yaml").read_bytes()[:300] + b)))
def test_study_loader_raw_bytes(tmp_path: Path, content: bytes) -> None:
    _load(tmp_path, content)


@FUZZ
@given(data=st.data())
def test_study_loader_mutated_settings(tmp_path: Path, data) -> None:
    study = yaml.safe_load(yaml.safe_dump(LENET))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(LENET_PATHS))
        node = study
        for key in path[:-1]:
            if not isinstance(node, dict):
                break
            node = node.setdefault(key, {}) if isinstance(node.get(key), dict) else node
        if isinstance(node, dict):
            node[path[-1]] = data.draw(MUTATION)
    text = yaml.safe_dump(study, sort_keys=False, allow_unicode=True)
    if data.draw(st.booleans()):                     # and a byte-level edit of the text
        raw = bytearray(text.encode())
        at = data.draw(st.integers(0, len(raw)))
        raw[at:at + data.draw(st.integers(0, 3))] = data.draw(st.binary(max_size=4))
        _load(tmp_path, bytes(raw))
    else:
        _load(tmp_path, text.encode())
