"""Study files: YAML text -> a validated, frozen :class:`StudySpec`.

All validation of user input happens here, once, before anything is created. Every problem
raises :class:`~hpsearch.errors.SpecError` naming the file, the line when known, the key path
and what to do, e.g.::

    studies/lenet.yaml:9: search_space.lr.low: must be > 0 when log: true; got 0.0; ...

A study file (see ``studies/lenet.yaml``)::

    net: lenet                      # a nets recipe, or package.module:attr
    data: {path: null, limit: 2000} # null: the MNIST sample shipped with nets
    fixed: {epochs: 4}              # hyperparameters that are not searched
    search_space:
      lr: {type: float, low: 0.001, high: 0.3, log: true}
      batch_size: {choices: [8, 16, 32]}
    objective: {metric: val_loss}   # direction defaults to the net's
    sampler: {name: tpe}
    pruner: {name: hyperband}
    budget: {trials: 12, timeout: 30m}
    execution: {backend: local, parallelism: 2}

Relative data paths in the file are relative to the file; given with ``--set`` they are
relative to the working directory.
"""
from __future__ import annotations

import difflib
import math
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

import yaml

from hpsearch.errors import SpecError, redact
from hpsearch.samplers import PRUNERS, SAMPLERS, grid_values
from hpsearch.space import ParamSpec

BUILTIN_NETS = ("lenet", "autoencoder", "mlp", "textcnn", "rnn")
NEEDS_DATA_PATH = frozenset({"textcnn", "rnn"})
BACKENDS = ("local", "spark")
PRUNING_MODES = ("auto", "channel", "rungs")   # how Spark tasks get the pruner's answers (README, Spark)
DIRECTIONS = ("minimize", "maximize")

TOP_KEYS = ("name", "description", "net", "data", "fixed", "search_space", "objective", "sampler",
            "pruner", "budget", "execution", "storage", "tracking", "seed", "schedule")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_NET_REF_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)")
_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_NON_PRINTABLE = yaml.reader.Reader.NON_PRINTABLE

MAX_STUDY_BYTES = 1 << 20
"""A study file larger than this (1 MiB) is refused before it is read."""
MAX_YAML_NODES = 100_000
"""A study file (or ``--set`` value) whose values, aliases expanded, number more is refused."""


# --------------------------------------------------------------------------- the frozen spec

@dataclass(frozen=True)
class DataSpec:
    """Where the training data comes from. ``path=None``: the net's bundled sample."""

    path: str | None = None
    limit: int | None = None


@dataclass(frozen=True)
class ObjectiveSpec:
    """The objective: ``metric``/``direction`` (the first objective of a multi-objective study);
    ``metrics``/``directions`` hold every objective when there are several (empty otherwise)."""

    metric: str
    direction: str
    metrics: tuple[str, ...] = ()
    directions: tuple[str, ...] = ()

    @property
    def multi(self) -> bool:
        return len(self.metrics) > 1

    @property
    def all_metrics(self) -> tuple[str, ...]:
        return self.metrics or (self.metric,)

    @property
    def all_directions(self) -> tuple[str, ...]:
        return self.directions or (self.direction,)


@dataclass(frozen=True)
class SamplerSpec:
    name: str = "tpe"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PrunerSpec:
    name: str = "none"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BudgetSpec:
    """Trials that reach a verdict (complete, pruned or failed), and/or wall seconds."""

    trials: int | None = None
    timeout_s: float | None = None


@dataclass(frozen=True)
class DataParallelSpec:
    """One trial trained across ``workers`` Spark barrier tasks, averaging every ``sync_every``
    steps (1: gradients every step, synchronous SGD); see hpsearch/backends/spark_barrier.py."""

    workers: int = 2
    sync_every: int = 1


@dataclass(frozen=True)
class ExecutionSpec:
    backend: str = "spark"
    parallelism: int | None = None      # None: every Spark task slot (local: every core)
    master: str | None = None
    data_parallel: DataParallelSpec | None = None   # None: one task (one core) per trial
    report_host: str | None = None      # the address tasks dial for the pruning channel (None: auto)
    report_bind: str | None = None      # the address the channel listens on (None: report_host)
    spark_conf: dict[str, str] = field(default_factory=dict)   # Spark settings; values never shown
    dispatch: str = "auto"    # spark: "auto" (slot mode when executors reach the driver) or "jobs"
    pruning_mode: str = "auto"          # channel | rungs | auto: rungs when executors cannot reach it


@dataclass(frozen=True)
class TrackingSpec:
    """MLflow settings; ``uri=None`` uses ``MLFLOW_TRACKING_URI`` or MLflow's default."""

    uri: str | None = None
    experiment: str | None = None
    log_weights: bool = True
    plots: bool = True                  # PNG plots of the study on each sweep's parent run
    register: str | None = None         # registered model: each sweep's new best a version
    end_wait: float = 60.0              # s a sweep's end waits for a tracking server that is down


@dataclass(frozen=True)
class ScheduleSpec:
    """``schedule:``: extend the study by ``trials_per_run`` trials at each tick of ``cron``.

    ``trials_per_run=None``: the budget's trials (or, with a timeout-only budget, a sweep until the
    timeout). ``max_runs=None``: forever. ``tick`` is set by the scheduler on the spec of each sweep
    it starts (the ISO time of the tick), never in a study file.
    """

    cron: str | None = None
    trials_per_run: int | None = None
    max_runs: int | None = None
    tick: str | None = None


@dataclass(frozen=True)
class Pending:
    """Something a study needs before it can run, though the file itself is valid."""

    key: str
    problem: str
    hint: str


@dataclass(frozen=True)
class StudySpec:
    """A validated study. Build it with :func:`load_spec` or :func:`spec_from_dict`."""

    file: str
    name: str
    net: str
    data: DataSpec
    fixed: dict[str, Any]
    space: tuple[ParamSpec, ...]
    objective: ObjectiveSpec
    sampler: SamplerSpec
    pruner: PrunerSpec
    budget: BudgetSpec
    execution: ExecutionSpec
    storage: str
    tracking: TrackingSpec
    seed: int
    epochs: int | None
    text: str = ""
    pending: tuple[Pending, ...] = ()
    overrides: tuple[str, ...] = ()
    schedule: ScheduleSpec | None = None

    def check_runnable(self) -> None:
        """Raise the first :class:`Pending` need as a SpecError (validate reports, run refuses)."""
        for p in self.pending:
            raise SpecError(self.file, p.key, p.problem, p.hint)

    def summary(self) -> dict[str, Any]:
        """A JSON-able description (for ``show --json`` and the MLflow parent run)."""
        return {
            "name": self.name, "net": self.net, "data_path": self.data.path,
            "data_limit": self.data.limit, "fixed": dict(self.fixed),
            "space": {p.name: p.describe() for p in self.space},
            "metric": self.objective.metric, "direction": self.objective.direction,
            "sampler": self.sampler.name, "sampler_options": dict(self.sampler.options),
            "pruner": self.pruner.name, "pruner_options": dict(self.pruner.options),
            "trials": self.budget.trials, "timeout_s": self.budget.timeout_s,
            "backend": self.execution.backend, "parallelism": self.execution.parallelism,
            "storage": redact(self.storage), "seed": self.seed, "epochs": self.epochs,
        }


# --------------------------------------------------------------------------- entry points

Override = tuple[str, Any, str]
"""(dotted key, value, label shown in errors such as ``--set fixed.epochs=1``)."""


def parse_overrides(items: Iterable[str], file: str) -> list[Override]:
    """``KEY=VALUE`` strings (``--set``) -> overrides; values are parsed as YAML scalars."""
    out: list[Override] = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise SpecError(file, "", f"--set {item!r} is not KEY=VALUE",
                            "write e.g. --set fixed.epochs=2 or --set budget.trials=20")
        secret = key == "execution.spark_conf" or key.startswith("execution.spark_conf.")
        label = f"--set {key}=***" if secret else f"--set {item}"   # Spark settings may be secrets
        out.append((key, _override_value(raw, file, key), label))
    return out


def _override_value(raw: str, file: str, key: str) -> Any:
    """A ``--set`` value read as YAML (a scalar, list or mapping); text that is not YAML stays text."""
    if not raw.strip():
        return None
    if len(raw) > MAX_STUDY_BYTES:
        raise SpecError(file, key, f"the --set value is {len(raw):,} characters; at most "
                        f"{MAX_STUDY_BYTES:,} are allowed", "put long settings in the study file")
    _check_printable(raw, file, key)
    loader = None
    try:
        loader, node = _compose(raw, file, key)
        return loader.construct_document(node) if node is not None else None
    except (yaml.YAMLError, RecursionError):
        return raw
    finally:
        if loader is not None:
            loader.dispose()


def load_spec(path: str | Path, overrides: Sequence[Override] | Mapping[str, Any] = (), *,
              define_by_run: bool = False) -> StudySpec:
    """Read, validate and freeze a study file.

    Args:
        path: the YAML file.
        overrides: ``(dotted.key, value, label)`` triples (see :func:`parse_overrides`) or a
            ``{"dotted.key": value}`` mapping, applied before validation.
        define_by_run: the study will run with a define-by-run space (``run_study(spec, space=f)``),
            so ``search_space`` may be left out of the file (when present it is still validated).

    Raises:
        SpecError: the file or an override is invalid; nothing has been created.
    """
    file = str(path)
    text = _read_text(Path(path), file)
    data, lines = _parse_yaml(text, file)
    return _build(data, file, Path(path).resolve().parent, lines, _as_overrides(overrides), text,
                  define_by_run)


def spec_from_dict(data: Mapping[str, Any], *, name: str = "study", base_dir: str | Path = ".",
                   overrides: Sequence[Override] | Mapping[str, Any] = (),
                   define_by_run: bool = False) -> StudySpec:
    """Validate a study given as a Python mapping (same keys as the YAML file; ``define_by_run``
    as in :func:`load_spec`)."""
    raw = dict(data)
    raw.setdefault("name", name)
    text = yaml.safe_dump(_plain(raw), sort_keys=False)
    return _build(raw, "<dict>", Path(base_dir).resolve(), {}, _as_overrides(overrides), text, define_by_run)


def parse_duration(value: Any, allow_zero: bool = False) -> float:
    """Seconds from ``90``, ``"90s"``, ``"30m"``, ``"2h"``, ``"1h30m"``, ``"1d"`` (and ``0``,
    ``"0s"`` when ``allow_zero``); ValueError else."""
    if isinstance(value, bool):
        raise ValueError("not a duration")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        elif text and _DURATION_RE.sub("", text) == "" and text == "".join(
                m.group(0) for m in _DURATION_RE.finditer(text)):
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_RE.findall(text))
        else:
            raise ValueError("not a duration")
    else:
        raise ValueError("not a duration")
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError("must be >= 0" if allow_zero else "must be > 0")
    return seconds


# --------------------------------------------------------------------------- YAML reading

class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.2), not as a string."""


_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def _read_text(path: Path, file: str) -> str:
    """The file's text: at most MAX_STUDY_BYTES of UTF-8 YAML, no NUL or control characters."""
    if not path.exists():
        raise SpecError(file, "", "file not found", "check the path of the study file")
    if path.is_dir():
        raise SpecError(file, "", "is a directory, expected a study YAML file")
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):            # a FIFO would block, /dev/zero never end
            raise SpecError(file, "", f"is not a regular file ({_file_kind(st.st_mode)}); a study file "
                            f"is a YAML file of at most {MAX_STUDY_BYTES:,} bytes")
        if st.st_size > MAX_STUDY_BYTES:
            _too_big(file, st.st_size)
        with path.open("rb") as f:
            raw = f.read(MAX_STUDY_BYTES + 1)       # the file may have grown since
    except OSError as exc:
        raise SpecError(file, "", f"cannot read the file: {exc.strerror or exc}") from None
    if len(raw) > MAX_STUDY_BYTES:
        _too_big(file, None)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(file, "", f"is not UTF-8 text (byte offset {exc.start})",
                        "a study file is YAML text; save it as UTF-8") from None
    _check_printable(text, file, "")
    return text


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a plain file")


def _too_big(file: str, size: int | None) -> NoReturn:
    what = f"is {size:,} bytes" if size is not None else "is longer"
    raise SpecError(file, "", f"{what}; a study file may hold at most {MAX_STUDY_BYTES:,} bytes",
                    "a study is a short YAML document: is this the right file?")


def _check_printable(text: str, file: str, key: str) -> None:
    """Refuse a NUL byte or a control character YAML does not allow, naming its byte offset."""
    bad = _NON_PRINTABLE.search(text)
    if bad is None:
        return
    char = bad.group()
    offset = len(text[:bad.start()].encode("utf-8"))
    line = text.count("\n", 0, bad.start()) + 1
    what = "a NUL byte" if char == "\0" else f"the control character U+{ord(char):04X}"
    hint = "is this a binary file? a study file is YAML text" if char == "\0" else \
        "remove it; a study file is plain YAML text"
    raise SpecError(file, key, f"holds {what} at byte offset {offset} (line {line})", hint)


def _compose(text: str, file: str, key: str = "") -> Any:
    """The YAML node graph of ``text``, refusing alias bombs and recursive anchors."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _count_nodes(node, {}, file, key)
        return loader, node
    except BaseException:
        loader.dispose()
        raise


def _count_nodes(node: Any, sizes: dict[int, int], file: str, key: str) -> int:
    """Nodes in the document with every alias expanded (memoised: linear in the file's size)."""
    known = sizes.get(id(node))
    if known is not None:
        if known < 0:
            raise SpecError(file, key, "an alias refers to the anchor it is inside (a recursive "
                            "structure)", "a study file holds plain data: remove that alias",
                            line=None if key else node.start_mark.line + 1)
        return known
    sizes[id(node)] = -1
    total = 1
    if isinstance(node, yaml.MappingNode):
        total += sum(_count_nodes(k, sizes, file, key) + _count_nodes(v, sizes, file, key)
                     for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        total += sum(_count_nodes(v, sizes, file, key) for v in node.value)
    if total > MAX_YAML_NODES:
        raise SpecError(file, key, f"expands to more than {MAX_YAML_NODES:,} values once its "
                        "aliases (*name) are resolved (a YAML bomb?)",
                        "a study file is small: write the values out or use fewer aliases")
    sizes[id(node)] = total
    return total


def _parse_yaml(text: str, file: str) -> tuple[Any, dict[tuple, int]]:
    """The document and a map key-path -> line; broken YAML raises SpecError with its line."""
    loader = None
    try:
        loader, node = _compose(text, file)
        lines = _key_lines(node, (), {}, file)
        data = loader.construct_document(node) if node is not None else None
    except yaml.constructor.ConstructorError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        tag = re.search(r"tag '([^']*)'", str(exc.problem))
        what = f"the tag {_short_tag(tag.group(1))}" if tag else "a tag"
        raise SpecError(file, f"line {line}" if line else "", f"{what} is not allowed",
                        "a study file holds plain YAML data (no Python objects or custom tags): "
                        "remove the tag") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise SpecError(file, f"line {line}" if line else "", f"broken YAML: {what}",
                        "check indentation, colons and quotes on that line") from None
    except yaml.YAMLError as exc:
        raise SpecError(file, "", f"broken YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise SpecError(file, "", "broken YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, lines


def _short_tag(tag: str) -> str:
    """``tag:yaml.org,2002:python/object`` -> ``!!python/object`` (as the user wrote it)."""
    prefix = "tag:yaml.org,2002:"
    return "!!" + tag[len(prefix):] if tag.startswith(prefix) else tag


def _key_lines(node: Any, path: tuple, lines: dict[tuple, int], file: str) -> dict[tuple, int]:
    """Record the line of every key; a key given twice in one mapping is an error."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key, line = key_node.value, key_node.start_mark.line + 1
            if key in seen:
                raise SpecError(file, _dotted(path + (key,)),
                                f"given twice (lines {seen[key]} and {line})",
                                "remove one of them", line=line)
            seen[key] = line
            lines[path + (key,)] = line
            _key_lines(value_node, path + (key,), lines, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _key_lines(item, path + (i,), lines, file)
    return lines


def _key_text(key: Any) -> str:
    """A key as it can stand in a one-line message: odd keys (newlines, tabs) are quoted."""
    text = str(key)
    return text if text.isprintable() and text.strip() == text and text else repr(text)


def _dotted(path: Sequence[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{_key_text(part)}" if out else _key_text(part))
    return out


def _plain(value: Any) -> Any:
    """Tuples and other sequences -> lists, so a Python-built spec dumps as YAML."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if value is None or isinstance(value, (bool, int, float, str)) else repr(value)


# --------------------------------------------------------------------------- overrides

def _as_overrides(overrides: Sequence[Override] | Mapping[str, Any]) -> list[Override]:
    if isinstance(overrides, Mapping):
        return [(k, v, f"{k}={v!r}") for k, v in overrides.items()]
    return list(overrides)


def _apply_overrides(data: Any, overrides: list[Override], ck: _Checker) -> Any:
    if not overrides:
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return data  # the root check reports it
    for key, value, label in overrides:
        parts = key.split(".")
        if parts[:2] == ["execution", "spark_conf"] and len(parts) > 2:   # spark.x.y is one key
            parts = parts[:2] + [".".join(parts[2:])]
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                ck.fail(parts[: i + 1], f"is not a mapping, so {label} cannot set {key}",
                        "set the whole value instead, e.g. --set sampler=random")
            node = child
        node[parts[-1]] = value
        ck.overridden[tuple(parts)] = label
    return data


# --------------------------------------------------------------------------- checks

def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a mapping", type(None): "null"}
    return names.get(type(value), f"a {type(value).__name__}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Checker:
    """Typed accessors that raise SpecError with the file, line and key path."""

    def __init__(self, file: str, lines: dict[tuple, int]) -> None:
        self.file = file
        self.lines = lines
        self.overridden: dict[tuple, str] = {}

    def fail(self, path: Sequence[Any], problem: str, hint: str | None = None) -> NoReturn:
        path = tuple(path)
        for n in range(len(path), 0, -1):
            if path[:n] in self.overridden:
                problem += f" (from {self.overridden[path[:n]]})"
                raise SpecError(self.file, _dotted(path), problem, hint)
        line = next((self.lines[path[:n]] for n in range(len(path), 0, -1) if path[:n] in self.lines),
                    None)
        raise SpecError(self.file, _dotted(path) or "(top level)", problem, hint, line=line)

    def mapping(self, value: Any, path: Sequence[Any], allowed: Iterable[str],
                required: Iterable[str] = (), example: str = "") -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping; got {_kind(value)} {_show(value)}",
                      example or "see studies/lenet.yaml for the layout")
        allowed = list(allowed)
        for key in value:
            if not isinstance(key, str):
                self.fail(path, f"keys must be strings; got {_kind(key)} {_show(key)}",
                          "quote the key")
            if key not in allowed:
                self.unknown(path, key, allowed)
        for key in required:
            if key not in value:
                self.fail(tuple(path) + (key,), "is required but missing",
                          example or f"add {key}: to {_dotted(path) or 'the file'}")
        return value

    def unknown(self, path: Sequence[Any], key: str, allowed: Sequence[str], what: str = "key") -> NoReturn:
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else ""
        listing = ", ".join(allowed) if len(allowed) <= 14 else ", ".join(allowed[:14]) + ", ..."
        hint = f"{hint} Valid {what}s: {listing}" if allowed else (hint or None)
        shown = f"'{key}'" if _key_text(key) == str(key) else _key_text(key)
        self.fail(tuple(path) + (key,), f"unknown {what} {shown}", hint.strip() if hint else None)

    def integer(self, value: Any, path: Sequence[Any], minimum: int | None = None) -> int:
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"must be an integer; got {_kind(value)} {_show(value)}")
        if minimum is not None and value < minimum:
            self.fail(path, f"must be >= {minimum}; got {value}")
        return value

    def number(self, value: Any, path: Sequence[Any]) -> float | int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(path, f"must be a number; got {_kind(value)} {_show(value)}",
                      "write numbers without quotes, e.g. 0.001 or 1e-3")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(path, f"must be finite; got {value}")
        return value

    def boolean(self, value: Any, path: Sequence[Any]) -> bool:
        if not isinstance(value, bool):
            self.fail(path, f"must be true or false; got {_kind(value)} {_show(value)}")
        return value

    def string(self, value: Any, path: Sequence[Any], optional: bool = False) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(path, f"must be a non-empty string; got {_kind(value)} {_show(value)}")
        return value.strip()

    def choice(self, value: Any, path: Sequence[Any], options: Sequence[str], what: str) -> str:
        if not isinstance(value, str):
            self.fail(path, f"must be a {what} name; got {_kind(value)} {_show(value)}",
                      "valid: " + ", ".join(options))
        if value not in options:
            close = difflib.get_close_matches(value, options, n=1, cutoff=0.6)
            hint = (f"did you mean '{close[0]}'? " if close else "") + "Valid: " + ", ".join(options)
            self.fail(path, f"unknown {what} '{value}'", hint)
        return value


# --------------------------------------------------------------------------- sections

@dataclass(frozen=True)
class _Net:
    name: str
    recipe: Any  # a nets.Recipe, or None when a built-in recipe is not available yet
    pending: tuple[Pending, ...] = ()


def _build(data: Any, file: str, base_dir: Path, lines: dict[tuple, int],
           overrides: list[Override], text: str, define_by_run: bool = False) -> StudySpec:
    ck = _Checker(file, lines)
    data = _apply_overrides(data, overrides, ck)
    if data is None:
        ck.fail((), "the study file is empty", "start from studies/lenet.yaml")
    required = ("net", "objective", "budget") if define_by_run else ("net", "search_space", "objective", "budget")
    root = ck.mapping(data, (), TOP_KEYS, required=required)
    net = _net(ck, root["net"])
    fixed = _fixed(ck, root.get("fixed"), net.recipe, base_dir)
    if define_by_run and root.get("search_space") is None:
        space: tuple[ParamSpec, ...] = ()
        if isinstance(root.get("sampler"), dict) and root["sampler"].get("name") == "grid":
            ck.fail(("sampler", "name"), "grid needs the file's search_space",
                    "add search_space, or use another sampler with a define-by-run space")
    else:
        space = _space(ck, root["search_space"], net.recipe, fixed)
    epochs = _epochs(net.recipe, fixed, space)
    seed = ck.integer(root.get("seed", 0), ("seed",), minimum=0)
    objective = _objective(ck, root["objective"], net.recipe)
    return StudySpec(
        file=file, name=_name(ck, root.get("name"), file), net=net.name,
        data=_data(ck, root.get("data"), net, base_dir),
        fixed=fixed, space=space, objective=objective,
        sampler=_sampler(ck, root.get("sampler"), space, objective.multi),
        pruner=_pruner(ck, root.get("pruner"), epochs, objective.multi),
        budget=_budget(ck, root["budget"]), execution=_execution(ck, root.get("execution")),
        storage=_storage(ck, root.get("storage"), file, base_dir, root.get("name")),
        tracking=_tracking(ck, root.get("tracking")), seed=seed, epochs=epochs, text=text,
        pending=net.pending + _data_pending(ck, root.get("data"), net),
        overrides=tuple(label for _, _, label in overrides),
        schedule=_schedule(ck, root.get("schedule")),
    )


def _name(ck: _Checker, value: Any, file: str) -> str:
    if value is None:
        value = Path(file).stem if file != "<dict>" else "study"
        if value.endswith(".optuna"):
            value = value[: -len(".optuna")]
    name = ck.string(value, ("name",))
    if not _NAME_RE.match(name):
        ck.fail(("name",), f"must be letters, digits, '_', '.' or '-'; got {_show(name)}",
                "the name names the Optuna study and the MLflow experiment")
    return name


def _net(ck: _Checker, value: Any) -> _Net:
    from hpsearch.recipes import available_recipes, resolve_recipe
    name = ck.string(value, ("net",))
    if ":" in name:
        if not _NET_REF_RE.match(name):
            ck.fail(("net",), f"{_show(name)} is not package.module:attr",
                    "name a nets.Recipe (or a zero-argument function returning one)")
        try:
            return _Net(name, resolve_recipe(name))
        except Exception as exc:  # noqa: BLE001 - a user's module may raise anything
            ck.fail(("net",), f"cannot load {name}: {' '.join(str(exc).split()) or type(exc).__name__}",
                    "check that the module is importable (PYTHONPATH) and the attribute is a nets.Recipe")
    if name not in BUILTIN_NETS:
        close = difflib.get_close_matches(name, BUILTIN_NETS, n=1, cutoff=0.5)
        ck.fail(("net",), f"unknown net '{name}'",
                (f"did you mean '{close[0]}'? " if close else "") + "Valid: " + ", ".join(BUILTIN_NETS)
                + ", or package.module:attr for your own nets.Recipe")
    recipes = available_recipes()
    if name in recipes:
        return _Net(name, recipes[name])
    pending = Pending("net", f"'{name}' is not available yet in the installed nets library",
                      "update nets; its parameter names and metric were not checked")
    return _Net(name, None, (pending,))


def _data(ck: _Checker, value: Any, net: _Net, base_dir: Path) -> DataSpec:
    if value is None:
        return DataSpec()
    d = ck.mapping(value, ("data",), ("path", "limit"), example="write data: {path: DIR, limit: 2000}")
    limit = None if d.get("limit") is None else ck.integer(d["limit"], ("data", "limit"), minimum=1)
    path = ck.string(d.get("path"), ("data", "path"), optional=True)
    if path is None:
        return DataSpec(None, limit)
    expanded = Path(path).expanduser()
    from_cli = ("data", "path") in ck.overridden or ("data",) in ck.overridden
    full = expanded if expanded.is_absolute() else (Path.cwd() if from_cli else base_dir) / expanded
    if not full.exists():
        ck.fail(("data", "path"), f"{full} does not exist",
                "fix the path (relative paths are relative to the study file), or null for the "
                "bundled sample")
    return DataSpec(str(full), limit)


def _data_pending(ck: _Checker, value: Any, net: _Net) -> tuple[Pending, ...]:
    path = value.get("path") if isinstance(value, dict) else None
    if net.name in NEEDS_DATA_PATH and path is None:
        return (Pending("data.path", f"{net.name} needs a data path; none is set",
                        "set data.path in the file or pass --set data.path=DIR"),)
    return ()


def _default_type(recipe: Any, key: str) -> type | None:
    default = recipe.defaults.get(key) if recipe is not None else None
    return type(default) if isinstance(default, (bool, int, float, str)) else None


def _check_param_key(ck: _Checker, path: tuple, key: str, recipe: Any) -> None:
    if recipe is not None and key not in recipe.defaults:
        ck.unknown(path, key, sorted(recipe.defaults), what=f"{recipe.name} hyperparameter")


def _value_fits(value: Any, kind: type | None) -> bool:
    if kind is None:
        return True
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


# fixed values that name files (the text CNN's GloVe vectors): ~ expanded, relative paths taken from the
# study file's folder (from the working directory when given with --set), and the file must exist
PATH_PARAMS = ("glove",)


def _resolve_file(ck: _Checker, path: tuple, value: str, base_dir: Path, hint: str) -> str:
    expanded = Path(value).expanduser()
    from_cli = path in ck.overridden or path[:1] in ck.overridden
    full = expanded if expanded.is_absolute() else (Path.cwd() if from_cli else base_dir) / expanded
    if not full.exists():
        ck.fail(path, f"{full} does not exist", hint)
    return str(full)


def _fixed(ck: _Checker, value: Any, recipe: Any, base_dir: Path) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        ck.mapping(value, ("fixed",), ())
    out: dict[str, Any] = {}
    for key, v in value.items():
        if not isinstance(key, str):
            ck.fail(("fixed",), f"keys must be strings; got {_show(key)}")
        _check_param_key(ck, ("fixed",), key, recipe)
        kind = _default_type(recipe, key)
        if isinstance(v, list) and key in (getattr(recipe, "list_keys", ()) or ()):
            out[key] = _fixed_list(ck, ("fixed", key), v)
            continue
        if v is not None and not isinstance(v, (bool, int, float, str)):
            ck.fail(("fixed", key), f"must be a single value; got {_kind(v)} {_show(v)}",
                    "to search over values, move it to search_space")
        if isinstance(v, float) and not math.isfinite(v):
            ck.fail(("fixed", key), f"must be finite; got {v}")
        if not _value_fits(v, kind):
            ck.fail(("fixed", key), f"must be {_kind(kind())} like the default "
                    f"{recipe.defaults[key]!r}; got {_kind(v)} {_show(v)}")
        if key in ("epochs", "batch_size") and isinstance(v, int) and v < 1:
            ck.fail(("fixed", key), f"must be >= 1; got {v}")
        if key in PATH_PARAMS and isinstance(v, str):
            v = _resolve_file(ck, ("fixed", key), v, base_dir,
                              "fix the path (relative paths are relative to the study file)")
        out[key] = v
    return out


def _fixed_list(ck: _Checker, path: tuple, value: list) -> list[int]:
    """A fixed per-layer list, e.g. ``hidden: [256, 64]``: 1..MAX_LAYERS sizes >= 1."""
    from hpsearch.space import MAX_LAYERS
    if not 1 <= len(value) <= MAX_LAYERS:
        ck.fail(path, f"must list 1 to {MAX_LAYERS} layer sizes; got {len(value)}")
    return [ck.integer(v, path + (i,), minimum=1) for i, v in enumerate(value)]


_STRUCTURE_KEYS = ("when", "per_layer", "as")
_PARAM_KEYS = {"float": ("type", "low", "high", "log", "step") + _STRUCTURE_KEYS,
               "int": ("type", "low", "high", "log", "step") + _STRUCTURE_KEYS,
               "categorical": ("type", "choices") + _STRUCTURE_KEYS}


def _space(ck: _Checker, value: Any, recipe: Any, fixed: dict[str, Any]) -> tuple[ParamSpec, ...]:
    if not isinstance(value, dict):
        ck.mapping(value, ("search_space",), ())
    if not value:
        ck.fail(("search_space",), "is empty", "add at least one parameter, e.g. "
                "lr: {type: float, low: 0.001, high: 0.3, log: true}")
    depths = [v.get("per_layer") for v in value.values() if isinstance(v, dict)]
    depths = {d for d in depths if isinstance(d, str)}
    params = []
    for key, v in value.items():
        if not isinstance(key, str):
            ck.fail(("search_space",), f"keys must be strings; got {_show(key)}")
        target = _target(ck, ("search_space", key), key, v)
        if key in depths:
            _check_depth_key(ck, ("search_space", key), key, recipe)
        elif target == key:
            _check_param_key(ck, ("search_space",), key, recipe)
        elif recipe is not None and target not in recipe.defaults:
            close = difflib.get_close_matches(target, sorted(recipe.defaults), n=1, cutoff=0.6)
            ck.fail(("search_space", key, "as"), f"'{target}' is not a {recipe.name} hyperparameter",
                    f"did you mean '{close[0]}'?" if close else "name the net parameter the list sets")
        for name in {key, target}:
            if name in fixed:
                ck.fail(("search_space", key), f"sets '{name}', which is also set in fixed",
                        "search it or fix it, not both")
        kind = None if key in depths else _default_type(recipe, target)
        params.append(_param(ck, ("search_space", key), key, v, kind))
    space = tuple(params)
    _check_structure(ck, space, recipe)
    return space


def _target(ck: _Checker, path: tuple, key: str, value: Any) -> str:
    """The net parameter a search_space entry sets: its ``as:`` (per-layer lists) or its own name."""
    if not isinstance(value, dict) or "as" not in value:
        return key
    if value.get("per_layer") is None:
        ck.fail(path + ("as",), "applies only with per_layer", "write e.g. {type: int, low: 16, "
                "high: 512, per_layer: layers, as: hidden}, or drop as")
    return ck.string(value["as"], path + ("as",))


def _check_depth_key(ck: _Checker, path: tuple, key: str, recipe: Any) -> None:
    if recipe is not None and key in recipe.defaults:
        ck.fail(path, f"is a {recipe.name} hyperparameter, but per_layer uses it as a depth, which only "
                "sizes the lists and is not handed to the net", "name the depth e.g. layers")


def _param(ck: _Checker, path: tuple, name: str, value: Any, kind: type | None) -> ParamSpec:
    if isinstance(value, list):
        value = {"type": "categorical", "choices": value}
    d = ck.mapping(value, path, ("type", "low", "high", "log", "step", "choices") + _STRUCTURE_KEYS,
                   example="write e.g. {type: float, low: 0.001, high: 0.3, log: true} "
                           "or {choices: [8, 16, 32]}")
    ptype = d.get("type", "categorical" if "choices" in d else None)
    if ptype is None:
        ck.fail(path + ("type",), "is required but missing", "use type: float, int or categorical")
    ptype = ck.choice(ptype, path + ("type",), tuple(_PARAM_KEYS), "parameter type")
    for key in d:
        if key not in _PARAM_KEYS[ptype]:
            ck.fail(path + (key,), f"does not apply to type {ptype}",
                    "valid keys: " + ", ".join(_PARAM_KEYS[ptype]))
    if ptype == "categorical":
        spec = _categorical(ck, path, name, d, kind)
    else:
        spec = _numeric(ck, path, name, ptype, d, kind)
    per_layer = ck.string(d.get("per_layer"), path + ("per_layer",), optional=True)
    target = d.get("as") if per_layer else None
    return replace(spec, when=_when(ck, path + ("when",), d.get("when")), per_layer=per_layer,
                   target=None if target == name else target)


def _when(ck: _Checker, path: tuple, value: Any) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """``when: {optimizer: sgd}`` or ``{optimizer: [sgd, adagrad]}`` -> ((name, values), ...)."""
    if value is None:
        return ()
    d = ck.mapping(value, path, value.keys() if isinstance(value, dict) else (),
                   example="write e.g. when: {optimizer: sgd} or when: {optimizer: [sgd, adagrad]}")
    if not d:
        ck.fail(path, "is empty", "write e.g. when: {optimizer: sgd}, or drop when")
    out = []
    for key, v in d.items():
        values = v if isinstance(v, list) else [v]
        if not values:
            ck.fail(path + (key,), "is an empty list", "list the values under which it is drawn")
        for i, x in enumerate(values):
            if x is not None and not isinstance(x, (bool, int, float, str)):
                ck.fail(path + (key,) + ((i,) if isinstance(v, list) else ()),
                        f"must be a value of '{key}'; got {_kind(x)} {_show(x)}")
        out.append((key, tuple(values)))
    return tuple(out)


def _check_structure(ck: _Checker, space: tuple[ParamSpec, ...], recipe: Any) -> None:
    """Conditions name searched categorical parameters and values they take, without cycles;
    per-layer lists have an int depth of 1..MAX_LAYERS and go to a net parameter that takes a list."""
    by_name = {p.name: p for p in space}
    for p in space:
        path = ("search_space", p.name)
        for key, values in p.when:
            _check_condition(ck, path + ("when", key), key, values, by_name)
        if p.per_layer:
            _check_per_layer(ck, path, p, by_name, recipe)
    _check_names(ck, space)
    _check_cycles(ck, space)


def _check_condition(ck: _Checker, path: tuple, key: str, values: tuple, by_name: dict) -> None:
    cond = by_name.get(key)
    if cond is None:
        close = difflib.get_close_matches(key, list(by_name), n=1, cutoff=0.6)
        ck.fail(path, f"names '{key}', which is not a searched parameter",
                (f"did you mean '{close[0]}'? " if close else "") + "a condition needs a categorical "
                "parameter of search_space")
    if cond.kind != "categorical" or cond.per_layer:
        ck.fail(path, f"'{key}' is {'per layer' if cond.per_layer else cond.kind}; a condition needs a "
                "categorical parameter", f"give {key} choices: [...], or drop the condition")
    for v in values:
        if not any(type(v) is type(c) and v == c for c in cond.choices):
            ck.fail(path, f"'{key}' cannot be {_show(v)}; its choices are "
                    + ", ".join(_show(c) for c in cond.choices), "name one of its choices")


def _check_per_layer(ck: _Checker, path: tuple, p: ParamSpec, by_name: dict, recipe: Any) -> None:
    from hpsearch.space import MAX_LAYERS
    depth = by_name.get(p.per_layer)
    where = path + ("per_layer",)
    if depth is None:
        ck.fail(where, f"names '{p.per_layer}', which is not a searched parameter",
                f"add e.g. {p.per_layer}: {{type: int, low: 1, high: 4}} to search_space")
    if depth.kind != "int" or depth.per_layer:
        ck.fail(where, f"the depth '{p.per_layer}' must be an int range; got "
                f"{'a per-layer parameter' if depth.per_layer else depth.kind}",
                f"write {p.per_layer}: {{type: int, low: 1, high: 4}}")
    if depth.low < 1 or depth.high > MAX_LAYERS:
        ck.fail(("search_space", p.per_layer, "low" if depth.low < 1 else "high"),
                f"a depth must be within 1..{MAX_LAYERS} layers; got [{depth.low}, {depth.high}]",
                f"every net has at least one layer; at most {MAX_LAYERS} per list")
    target = p.target or p.name
    lists = tuple(getattr(recipe, "list_keys", ()) or ()) if recipe is not None else None
    if lists is not None and target not in lists:
        ck.fail(where, f"{recipe.name}'s '{target}' takes one value, not a list per layer",
                ("lists go to: " + ", ".join(lists)) if lists else f"{recipe.name} takes no list")


def _check_names(ck: _Checker, space: tuple[ParamSpec, ...]) -> None:
    """No two entries set the same net parameter, and no draw name (units_3) is another entry's."""
    from hpsearch.space import MAX_LAYERS, layer_names
    seen: dict[str, str] = {}
    for p in space:
        target = p.target or p.name
        if target in seen and seen[target] != p.name:
            ck.fail(("search_space", p.name), f"sets '{target}', which '{seen[target]}' sets too",
                    "search each net parameter once")
        seen[target] = p.name
    names = {p.name for p in space}
    for p in space:
        if p.per_layer:
            clash = sorted(names & set(layer_names(p.name, MAX_LAYERS)))
            if clash:
                ck.fail(("search_space", clash[0]), f"clashes with the per-layer draws of '{p.name}' "
                        f"({p.name}_1, {p.name}_2, ...)", "rename one of them")


def _check_cycles(ck: _Checker, space: tuple[ParamSpec, ...]) -> None:
    deps = {p.name: p.depends_on() for p in space}
    done: set[str] = set()

    def visit(name: str, chain: list[str]) -> None:
        if name in chain:
            loop = chain[chain.index(name):] + [name]
            ck.fail(("search_space", name), "conditions form a cycle: " + " -> ".join(loop),
                    "a parameter cannot depend, through when/per_layer, on itself")
        if name in done:
            return
        for d in deps.get(name, ()):
            visit(d, chain + [name])
        done.add(name)

    for name in deps:
        visit(name, [])


def _categorical(ck: _Checker, path: tuple, name: str, d: dict, kind: type | None) -> ParamSpec:
    if "choices" not in d:
        ck.fail(path + ("choices",), "is required but missing", "write choices: [a, b, c]")
    choices = d["choices"]
    if not isinstance(choices, list):
        ck.fail(path + ("choices",), f"must be a list; got {_kind(choices)} {_show(choices)}")
    if not choices:
        ck.fail(path + ("choices",), "is empty", "list at least one value, e.g. choices: [8, 16, 32]")
    for i, c in enumerate(choices):
        if c is not None and not isinstance(c, (bool, int, float, str)):
            ck.fail(path + ("choices", i), f"must be a single value; got {_kind(c)} {_show(c)}")
        if isinstance(c, float) and not math.isfinite(c):
            ck.fail(path + ("choices", i), f"must be finite; got {c}")
        if not _value_fits(c, kind):
            ck.fail(path + ("choices", i), f"must be {_kind(kind())} like the default of "
                    f"'{name}'; got {_kind(c)} {_show(c)}")
        if any(type(c) is type(o) and c == o for o in choices[:i]):
            ck.fail(path + ("choices", i), f"repeats {_show(c)}", "list each choice once")
    return ParamSpec(name, "categorical", choices=tuple(choices))


def _numeric(ck: _Checker, path: tuple, name: str, ptype: str, d: dict, kind: type | None) -> ParamSpec:
    for key in ("low", "high"):
        if key not in d:
            ck.fail(path + (key,), "is required but missing", f"write {key}: <number>")
    if ptype == "float" and kind is int:
        ck.fail(path + ("type",), f"'{name}' is an integer hyperparameter; got type float",
                "use type: int")
    if ptype == "int" and kind not in (None, int, float):
        ck.fail(path + ("type",), f"'{name}' takes {_kind(kind())} values; got type int",
                "use choices: [...]")
    conv = ck.integer if ptype == "int" else ck.number
    low, high = conv(d["low"], path + ("low",)), conv(d["high"], path + ("high",))
    log = ck.boolean(d.get("log", False), path + ("log",))
    step = None if d.get("step") is None else conv(d["step"], path + ("step",))
    if low >= high:
        ck.fail(path + ("low",), f"must be < high; got low={low}, high={high}",
                "to fix the value instead, move it to fixed")
    if log and low <= 0:
        ck.fail(path + ("low",), f"must be > 0 when log: true; got {low}",
                "log-scale ranges need a positive low, e.g. 1e-4")
    if step is not None:
        if step <= 0:
            ck.fail(path + ("step",), f"must be > 0; got {step}")
        if log and not (ptype == "int" and step == 1):
            ck.fail(path + ("step",), "cannot be combined with log: true", "drop step or log")
        if step > high - low:
            ck.fail(path + ("step",), f"must be <= high - low ({high - low}); got {step}")
    if name in ("epochs", "batch_size") and low < 1:
        ck.fail(path + ("low",), f"must be >= 1 for {name}; got {low}")
    return ParamSpec(name, ptype, low=low, high=high, log=log, step=step)


def _epochs(recipe: Any, fixed: dict[str, Any], space: tuple[ParamSpec, ...]) -> int | None:
    """The most epochs any trial runs (the pruners' max resource)."""
    for p in space:
        if p.name == "epochs":
            values = p.choices if p.kind == "categorical" else (p.high,)
            ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
            return max(ints) if ints else None
    if isinstance(fixed.get("epochs"), int):
        return fixed["epochs"]
    default = recipe.defaults.get("epochs") if recipe is not None else None
    return default if isinstance(default, int) and not isinstance(default, bool) else None


def _objective(ck: _Checker, value: Any, recipe: Any) -> ObjectiveSpec:
    if isinstance(value, dict) and "metrics" in value:
        return _objectives(ck, value, recipe)
    d = ck.mapping(value, ("objective",), ("metric", "direction"), required=("metric",),
                   example="write objective: {metric: val_loss}")
    metric = ck.string(d["metric"], ("objective", "metric"))
    return ObjectiveSpec(metric, _direction(ck, metric, d.get("direction"), recipe, ("objective",)))


def _direction(ck: _Checker, metric: str, direction: Any, recipe: Any, path: tuple) -> str:
    """``metric``'s direction (checked against the net's), after checking the net produces it."""
    key = path[:1] + ("metric" if len(path) == 1 else "metrics",) + path[1:]
    metrics = dict(recipe.metrics) if recipe is not None else {}
    if recipe is not None and metric not in metrics:
        close = difflib.get_close_matches(metric, list(metrics), n=1, cutoff=0.6)
        ck.fail(key, f"{recipe.name} does not produce '{metric}'",
                (f"did you mean '{close[0]}'? " if close else "") + "it produces: "
                + ", ".join(metrics))
    dkey = path[:1] + ("direction" if len(path) == 1 else "directions",) + path[1:]
    direction = ck.choice(metrics.get(metric, "minimize") if direction is None else direction,
                          dkey, DIRECTIONS, "direction")
    if metric in metrics and direction != metrics[metric]:
        ck.fail(dkey, f"'{metric}' should be {metrics[metric]}d; got {direction}",
                "drop direction: to use the metric's own")
    return direction


def _objectives(ck: _Checker, value: dict, recipe: Any) -> ObjectiveSpec:
    """``objective: {metrics: [a, b], directions: [maximize, minimize]}`` (directions optional)."""
    d = ck.mapping(value, ("objective",), ("metrics", "directions"), required=("metrics",),
                   example="write objective: {metrics: [val_top1, infer_ms]}")
    metrics = d["metrics"]
    if not isinstance(metrics, list) or not metrics:
        ck.fail(("objective", "metrics"), f"must be a list of metrics; got {_show(metrics)}",
                "write metrics: [val_top1, infer_ms]")
    metrics = [ck.string(m, ("objective", "metrics", i)) for i, m in enumerate(metrics)]
    dup = next((m for i, m in enumerate(metrics) if m in metrics[:i]), None)
    if dup is not None:
        ck.fail(("objective", "metrics"), f"names '{dup}' twice", "list each metric once")
    directions = d.get("directions")
    if directions is not None and (not isinstance(directions, list) or len(directions) != len(metrics)):
        ck.fail(("objective", "directions"), f"must list one direction per metric ({len(metrics)}); "
                f"got {_show(directions)}", "or drop directions: to use each metric's own")
    dirs = [_direction(ck, m, None if directions is None else directions[i], recipe, ("objective", i))
            for i, m in enumerate(metrics)]
    if len(metrics) == 1:
        return ObjectiveSpec(metrics[0], dirs[0])
    return ObjectiveSpec(metrics[0], dirs[0], tuple(metrics), tuple(dirs))


def _section_name(value: Any, default: str) -> Any:
    """The name a ``sampler:``/``pruner:`` section asks for (unchecked)."""
    return value if isinstance(value, str) else value.get("name", default) if isinstance(value, dict) else default


def _named_section(ck: _Checker, value: Any, key: str, default: str, registry: Mapping) -> tuple[str, dict]:
    """``key: NAME`` or ``key: {name: NAME, option: value, ...}`` -> (name, options)."""
    if value is None:
        return default, {}
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        ck.mapping(value, (key,), ())
    name = ck.choice(value.get("name", default), (key, "name"), tuple(registry), key)
    factory = registry[name]
    need = factory.missing_requirement()
    if need:
        ck.fail((key, "name"), f"{key} '{name}' needs the {factory.requires} package", need)
    allowed = ["name"] + factory.option_names() + (["seed"] if key == "sampler" else [])
    ck.mapping(value, (key,), allowed)
    options = {}
    for k, v in value.items():
        if k in ("name", "seed"):
            continue
        if v is not None and not isinstance(v, (bool, int, float, str)):
            ck.fail((key, k), f"must be a single value; got {_kind(v)} {_show(v)}")
        options[k] = v
    return name, options


def _try_construct(ck: _Checker, key: str, build: Any) -> None:
    import warnings
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            build()
    except (TypeError, ValueError, AttributeError) as exc:
        ck.fail((key,), f"invalid options: {' '.join(str(exc).split())}",
                "see the Optuna documentation of this " + key)


def _sampler(ck: _Checker, value: Any, space: tuple[ParamSpec, ...], multi: bool = False) -> SamplerSpec:
    from hpsearch.samplers import SINGLE_OBJECTIVE_SAMPLERS, make_sampler
    if multi and _section_name(value, "tpe") in SINGLE_OBJECTIVE_SAMPLERS:
        name = _section_name(value, "tpe")
        ck.fail(("sampler", "name"), f"'{name}' searches a single objective; the study has several",
                "use tpe, nsga2, nsga3, gp or random")
    name, options = _named_section(ck, value, "sampler", "tpe", SAMPLERS)
    if isinstance(value, dict) and value.get("seed") is not None:
        options["seed"] = ck.integer(value["seed"], ("sampler", "seed"), minimum=0)
    if name == "grid":
        try:
            grid_values(space)
        except ValueError as exc:
            ck.fail(("search_space", exc.args[0]), exc.args[1], exc.args[2])
    opts = {k: v for k, v in options.items() if k != "seed"}
    _try_construct(ck, "sampler", lambda: make_sampler(name, opts, 0, space))
    return SamplerSpec(name, options)


def _pruner(ck: _Checker, value: Any, epochs: int | None, multi: bool = False) -> PrunerSpec:
    from hpsearch.samplers import MULTI_OBJECTIVE_PRUNERS, make_pruner
    name = _section_name(value, "none")
    if multi and name in PRUNERS and name not in MULTI_OBJECTIVE_PRUNERS:
        ck.fail(("pruner", "name"), f"'{name}' prunes on a single objective; the study has several",
                "use pruner mo_asha (multi-objective successive halving) or none")
    if not multi and name == "mo_asha":
        ck.fail(("pruner", "name"), "mo_asha prunes multi-objective studies; this one has one metric",
                "use successive_halving or hyperband, or list several objective metrics")
    name, options = _named_section(ck, value, "pruner", "none", PRUNERS)
    if name == "mo_asha" and epochs is not None:
        options.setdefault("max_resource", epochs)
    if name in ("hyperband", "successive_halving", "mo_asha"):
        options.setdefault("min_resource", 1)
        for k in ("min_resource", "reduction_factor", "max_resource"):
            if k in options:
                options[k] = ck.integer(options[k], ("pruner", k), minimum=1)
    if name == "hyperband":
        if "max_resource" not in options and epochs is None:
            ck.fail(("pruner", "max_resource"), "is required when the epochs are unknown",
                    "set fixed.epochs or pruner.max_resource")
        options.setdefault("max_resource", epochs)
        if options["max_resource"] <= options["min_resource"]:
            ck.fail(("pruner", "max_resource"), f"must be > min_resource "
                    f"({options['min_resource']}); got {options['max_resource']}",
                    "train more epochs or lower min_resource")
    _try_construct(ck, "pruner", lambda: make_pruner(name, options))
    return PrunerSpec(name, options)


def _budget(ck: _Checker, value: Any) -> BudgetSpec:
    d = ck.mapping(value, ("budget",), ("trials", "timeout"),
                   example="write budget: {trials: 20} or budget: {timeout: 30m}")
    trials = None if d.get("trials") is None else ck.integer(d["trials"], ("budget", "trials"), minimum=1)
    timeout = None if d.get("timeout") is None else _duration(ck, d["timeout"], ("budget", "timeout"))
    if trials is None and timeout is None:
        ck.fail(("budget",), "needs trials or timeout (or both)", "write e.g. budget: {trials: 20}")
    return BudgetSpec(trials, timeout)


def _duration(ck: _Checker, value: Any, path: tuple[str, ...], allow_zero: bool = False) -> float:
    try:
        return parse_duration(value, allow_zero)
    except ValueError as exc:
        why = "" if str(exc) == "not a duration" else f" ({exc})"
        ck.fail(path, f"{_show(value)} is not a duration{why}",
                "write e.g. 90s, 30m, 2h, 1h30m or a number of seconds")


def _execution(ck: _Checker, value: Any) -> ExecutionSpec:
    if value is None:
        return ExecutionSpec()
    d = ck.mapping(value, ("execution",), ("backend", "parallelism", "master", "data_parallel",
                                           "report_host", "report_bind", "spark_conf", "dispatch",
                                           "pruning_mode"))
    backend = ck.choice(d.get("backend", "spark"), ("execution", "backend"), BACKENDS, "backend")
    parallelism = d.get("parallelism")
    if parallelism is not None:
        parallelism = ck.integer(parallelism, ("execution", "parallelism"), minimum=1)
    master = ck.string(d.get("master"), ("execution", "master"), optional=True)
    data_parallel = _data_parallel(ck, d.get("data_parallel"), backend)
    report = [ck.string(d.get(k), ("execution", k), optional=True) for k in ("report_host", "report_bind")]
    spark_conf = _spark_conf(ck, d.get("spark_conf"))
    dispatch = ck.choice(d.get("dispatch", "auto"), ("execution", "dispatch"), ("auto", "jobs"), "dispatch")
    mode = ck.choice(d.get("pruning_mode", "auto"), ("execution", "pruning_mode"), PRUNING_MODES, "pruning mode")
    if mode == "rungs" and data_parallel is not None:
        ck.fail(("execution", "pruning_mode"), "rungs cannot prune a data-parallel trial (one barrier job)",
                "use pruning_mode: channel (or auto), with a report_host the executors can reach")
    return ExecutionSpec(backend, parallelism, master, data_parallel, *report, spark_conf=spark_conf,
                         dispatch=dispatch, pruning_mode=mode)


_SPARK_KEY_RE = re.compile(r"^spark\.[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")


def _spark_conf(ck: _Checker, value: Any) -> dict[str, str]:
    """``execution.spark_conf``: Spark settings (``spark.x.y: scalar``, dotted keys or nested
    mappings) for the session hpsearch creates. Values may be secrets: no message shows one."""
    path = ("execution", "spark_conf")
    if value is None:
        return {}
    if not isinstance(value, dict):
        ck.fail(path, f"must be a mapping of Spark settings; got {_kind(value)}",
                "write e.g. spark_conf: {spark.authenticate: true, spark.network.crypto.enabled: true}")
    out: dict[str, str] = {}
    for key, item in _flat_items(value, ""):
        if not _SPARK_KEY_RE.match(key):
            ck.fail(path, f"{_key_text(key)} is not a Spark setting name",
                    "names are dotted and start with spark., e.g. spark.authenticate")
        if isinstance(item, bool):
            out[key] = "true" if item else "false"
        elif isinstance(item, (str, int, float)) and not (isinstance(item, float) and not math.isfinite(item)):
            out[key] = str(item)
        else:
            ck.fail(path + (key,), f"must be a string, a number or true/false; got {_kind(item)} "
                    "(the value is not shown: it may be a secret)")
    return out


def _flat_items(value: dict, prefix: str) -> list[tuple[str, Any]]:
    """``{spark: {authenticate: true}}`` -> ``[("spark.authenticate", True)]``."""
    items: list[tuple[str, Any]] = []
    for key, item in value.items():
        name = f"{prefix}{key}" if isinstance(key, str) else repr(key)
        if isinstance(item, dict) and isinstance(key, str) and item:
            items += _flat_items(item, name + ".")
        else:
            items.append((name, item))
    return items


def _data_parallel(ck: _Checker, value: Any, backend: str) -> DataParallelSpec | None:
    path = ("execution", "data_parallel")
    if value is None:
        return None
    d = ck.mapping(value, path, ("workers", "sync_every"), required=("workers",),
                   example="write data_parallel: {workers: 2, sync_every: 1}")
    if backend != "spark":
        label = ck.overridden.get(("execution", "backend"))
        ck.fail(path, f"needs the spark backend; got backend: {backend}"
                + (f" (from {label})" if label else ""),
                "data-parallel trials run as Spark barrier tasks: use backend: spark")
    return DataParallelSpec(ck.integer(d["workers"], path + ("workers",), minimum=1),
                            ck.integer(d.get("sync_every", 1), path + ("sync_every",), minimum=1))


def _storage(ck: _Checker, value: Any, file: str, base_dir: Path, name: Any) -> str:
    from hpsearch.storage import JOURNAL, default_storage
    if value is None:
        stem = Path(file).stem if file != "<dict>" else (name if isinstance(name, str) else "study")
        return default_storage(base_dir, stem)
    url = ck.string(value, ("storage",))
    if url.endswith(".journal") and "://" not in url:     # a journal file's path
        from_cli = ("storage",) in ck.overridden
        path = Path(url).expanduser()
        return JOURNAL + str(path if path.is_absolute() else (Path.cwd() if from_cli else base_dir) / path)
    if url.startswith(JOURNAL) and len(url) > len(JOURNAL):
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    try:
        make_url(url)
    except (ArgumentError, ValueError):
        ck.fail(("storage",), f"{_show(url)} is not a database URL",
                "write e.g. sqlite:///sweeps.db, sweeps.journal or postgresql://user@host/db")
    return url


_TRACKING_SCHEMES = ("file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks",
                     "databricks-uc", "uc")


def _tracking(ck: _Checker, value: Any) -> TrackingSpec:
    if value is None:
        return TrackingSpec()
    d = ck.mapping(value, ("tracking",), ("uri", "experiment", "log_weights", "plots", "register",
                                          "end_wait"))
    uri = ck.string(d.get("uri"), ("tracking", "uri"), optional=True)
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if uri and ":" in uri else ""
    if uri and scheme not in _TRACKING_SCHEMES and not Path(uri).is_absolute():
        ck.fail(("tracking", "uri"), f"{_show(uri)} is not an MLflow tracking URI",
                "use e.g. sqlite:///mlflow.db, http://host:5000 or a directory path")
    return TrackingSpec(
        uri=uri,
        experiment=ck.string(d.get("experiment"), ("tracking", "experiment"), optional=True),
        log_weights=ck.boolean(d.get("log_weights", True), ("tracking", "log_weights")),
        plots=ck.boolean(d.get("plots", True), ("tracking", "plots")),
        register=_register_name(ck, d.get("register"), d.get("log_weights", True)),
        end_wait=(TrackingSpec.end_wait if d.get("end_wait") is None
                  else _duration(ck, d["end_wait"], ("tracking", "end_wait"), allow_zero=True)),
    )


def _register_name(ck: _Checker, value: Any, log_weights: Any) -> str | None:
    """``tracking.register``: a registered model name (MLflow's rules: no '/', ':' or '%')."""
    name = ck.string(value, ("tracking", "register"), optional=True)
    if name is None:
        return None
    if any(c in name for c in "/:%"):
        ck.fail(("tracking", "register"), f"{_show(name)} is not a registered model name",
                "use letters, digits, '-', '_' or '.', e.g. register: lenet-digits")
    if log_weights is False:
        ck.fail(("tracking", "register"), "needs the weights, but tracking.log_weights is false",
                "remove tracking.register or set tracking.log_weights: true")
    return name


def cron_problem(expr: str) -> str | None:
    """Why ``expr`` is not a cron expression croniter accepts (None: it is)."""
    from croniter import croniter
    try:
        croniter(expr)
    except (ValueError, KeyError, TypeError) as exc:  # CroniterBadCronError is a ValueError
        return " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
    return None


def _schedule(ck: _Checker, value: Any) -> ScheduleSpec | None:
    if value is None:
        return None
    d = ck.mapping(value, ("schedule",), ("cron", "trials_per_run", "max_runs"),
                   example='write e.g. schedule: {cron: "0 2 * * *", trials_per_run: 10}')
    cron = ck.string(d.get("cron"), ("schedule", "cron"), optional=True)
    if cron is not None:
        try:
            why = cron_problem(cron)
        except ImportError:
            ck.fail(("schedule", "cron"), "needs the croniter package", "pip install 'hpsearch[schedule]'")
        if why is not None:
            ck.fail(("schedule", "cron"), f"{_show(cron)} is not a cron expression ({why})",
                    "write 5 fields, minute hour day month weekday, e.g. '0 2 * * *' (daily at 2:00) "
                    "or '*/30 * * * *'; a 6th field is seconds")
    per_run = d.get("trials_per_run")
    per_run = None if per_run is None else ck.integer(per_run, ("schedule", "trials_per_run"), minimum=1)
    max_runs = d.get("max_runs")
    max_runs = None if max_runs is None else ck.integer(max_runs, ("schedule", "max_runs"), minimum=1)
    return ScheduleSpec(cron, per_run, max_runs)
