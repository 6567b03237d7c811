"""Bad study files: one `Error:` line naming the file and key path, exit 2, nothing created."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import lenet_dict, run_cli
from hpsearch.cli import cli
from hpsearch.errors import SpecError
from hpsearch.spec import TOP_KEYS, load_spec, parse_duration, spec_from_dict


def _set(path: str, value):
    """A change to the LeNet study: set a dotted key (value `...` deletes it)."""
    def change(d: dict) -> dict:
        d = copy.deepcopy(d)
        *parents, last = path.split(".")
        node = d
        for p in parents:
            node = node.setdefault(p, {})
        if value is ...:
            node.pop(last, None)
        else:
            node[last] = value
        return d
    return change


def _rename(old: str, new: str):
    def change(d: dict) -> dict:
        d = copy.deepcopy(d)
        *parents, last = old.split(".")
        node = d
        for p in parents:
            node = node[p]
        node[new] = node.pop(last)
        return d
    return change


BROKEN_YAML = """net: lenet
search_space:
  lr: {type: float, low: 0.01, high: 0.1
objective: {metric: val_loss}
budget: {trials: 2}
"""

DUPLICATE_KEY = """net: lenet
search_space:
  lr: {type: float, low: 0.01, high: 0.1}
objective: {metric: val_loss}
budget: {trials: 2}
budget: {trials: 3}
"""

# (id, change or raw YAML text, key path the message must name, a fragment it must contain)
CASES = [
    ("unknown-key", _rename("search_space", "serach_space"), "serach_space", "did you mean 'search_space'"),
    ("unknown-nested-key", _set("search_space.lr.hihg", 0.3), "search_space.lr.hihg", "did you mean 'high'"),
    ("unknown-hyperparameter", _rename("search_space.hidden", "hiden"), "search_space.hiden",
     "did you mean 'hidden'"),
    ("wrong-type", _set("budget.trials", "ten"), "budget.trials", "must be an integer"),
    ("wrong-type-fixed", _set("fixed.epochs", "two"), "fixed.epochs", "must be an integer"),
    ("low-ge-high", _set("search_space.lr", {"type": "float", "low": 0.5, "high": 0.1}),
     "search_space.lr.low", "must be < high"),
    ("log-low-le-0", _set("search_space.lr", {"type": "float", "low": 0.0, "high": 0.1, "log": True}),
     "search_space.lr.low", "must be > 0 when log: true"),
    ("empty-choices", _set("search_space.batch_size", {"choices": []}),
     "search_space.batch_size.choices", "is empty"),
    ("float-for-int-param", _set("search_space.hidden", {"type": "float", "low": 8, "high": 64}),
     "search_space.hidden.type", "integer"),
    ("unknown-net", _set("net", "lenett"), "net", "did you mean 'lenet'"),
    ("custom-net-missing-attr", _set("net", "recipes_for_tests:nope"), "net", "has no attribute"),
    ("custom-net-not-recipe", _set("net", "recipes_for_tests:not_a_recipe"), "net", "not a nets.Recipe"),
    ("unknown-sampler", _set("sampler.name", "tpee"), "sampler.name", "did you mean 'tpe'"),
    ("unknown-sampler-option", _set("sampler.n_startup_trails", 3), "sampler.n_startup_trails",
     "did you mean 'n_startup_trials'"),
    ("unknown-pruner", _set("pruner.name", "hyperbnd"), "pruner.name", "did you mean 'hyperband'"),
    ("grid-on-continuous", _set("sampler", "grid"), "search_space.lr", "grid sampler"),
    ("data-path-missing", _set("data.path", "no/such/dir"), "data.path", "does not exist"),
    ("unreadable-data", _set("data.path", "."), "data.path", "cannot read"),
    ("negative-trials", _set("budget.trials", -3), "budget.trials", "must be >= 1"),
    ("bad-duration", _set("budget.timeout", "30 minutes"), "budget.timeout", "not a duration"),
    ("bad-end-wait", _set("tracking", {"end_wait": "-5s"}), "tracking.end_wait", "not a duration"),
    ("bool-end-wait", _set("tracking", {"end_wait": False}), "tracking.end_wait", "not a duration"),
    ("no-budget", _set("budget", {}), "budget", "needs trials or timeout"),
    ("bad-metric", _set("objective.metric", "val_acc"), "objective.metric", "does not produce 'val_acc'"),
    ("direction-contradicts", _set("objective.direction", "maximize"), "objective.direction",
     "should be minimized"),
    ("missing-section", _set("objective", ...), "objective", "is required"),
    ("not-a-mapping", _set("search_space", ["lr", "hidden"]), "search_space", "must be a mapping"),
    ("broken-yaml", BROKEN_YAML, "line 4", "broken YAML"),
    ("duplicate-key", DUPLICATE_KEY, "budget", "given twice (lines 5 and 6)"),
    ("unknown-pruning-mode", _set("execution.pruning_mode", "rung"), "execution.pruning_mode",
     "did you mean 'rungs'"),
    ("rungs-data-parallel", _set("execution", {"backend": "spark", "data_parallel": {"workers": 2},
                                               "pruning_mode": "rungs"}),
     "execution.pruning_mode", "cannot prune a data-parallel trial"),
]




def mlp_dict() -> dict:
    """The shipped conditional study (depth, units per layer, optimizer settings), on the local backend."""
    data = yaml.safe_load((Path(__file__).parents[2] / "studies" / "mlp.yaml").read_text())
    data["execution"] = {"backend": "local", "parallelism": 1}
    return data


def _both(*changes):
    def change(d: dict) -> dict:
        for c in changes:
            d = c(d)
        return d
    return change


_INT = {"type": "int", "low": 1, "high": 4}
# bad conditional / per-layer spaces, on studies/mlp.yaml: (id, change, key path, fragment)
STRUCTURE_CASES = [
    ("when-unknown-param", _set("search_space.momentum.when", {"optimiser": "sgd"}),
     "search_space.momentum.when.optimiser", "did you mean 'optimizer'"),
    ("when-non-categorical", _set("search_space.momentum.when", {"lr": 0.1}),
     "search_space.momentum.when.lr", "'lr' is float; a condition needs a categorical"),
    ("when-per-layer-param", _set("search_space.momentum.when", {"units": 32}),
     "search_space.momentum.when.units", "'units' is per layer"),
    ("when-impossible-value", _set("search_space.momentum.when", {"optimizer": "rmsprop"}),
     "search_space.momentum.when.optimizer", "cannot be 'rmsprop'"),
    ("when-impossible-in-list", _set("search_space.lr_decay.when", {"optimizer": ["adagrad", "nag"]}),
     "search_space.lr_decay.when.optimizer", "cannot be 'nag'"),
    ("when-wrong-type-value", _set("search_space.momentum.when", {"batch_size": "16"}),
     "search_space.momentum.when.batch_size", "cannot be '16'"),
    ("when-empty", _set("search_space.momentum.when", {}), "search_space.momentum.when", "is empty"),
    ("when-not-a-mapping", _set("search_space.momentum.when", "sgd"), "search_space.momentum.when",
     "must be a mapping"),
    ("when-fixed-param", _both(_set("search_space.optimizer", ...), _set("fixed.optimizer", "sgd")),
     "search_space.momentum.when.optimizer", "not a searched parameter"),
    ("cycle", _both(_set("search_space.optimizer.when", {"batch_size": 16}),
                    _set("search_space.batch_size.when", {"optimizer": "sgd"})),
     "search_space.", "conditions form a cycle"),
    ("cycle-self", _set("search_space.batch_size.when", {"batch_size": 16}), "search_space.batch_size",
     "cycle: batch_size -> batch_size"),
    ("per-layer-float-depth", _set("search_space.layers", {"type": "float", "low": 1, "high": 4}),
     "search_space.units.per_layer", "must be an int range; got float"),
    ("per-layer-categorical-depth", _set("search_space.layers", {"choices": [1, 2]}),
     "search_space.units.per_layer", "must be an int range; got categorical"),
    ("per-layer-zero-layers", _set("search_space.layers", {**_INT, "low": 0}), "search_space.layers.low",
     "within 1..8 layers"),
    ("per-layer-too-deep", _set("search_space.layers", {**_INT, "high": 9}), "search_space.layers.high",
     "within 1..8 layers"),
    ("per-layer-unknown-depth", _set("search_space.layers", ...),
     "search_space.units.per_layer", "'layers', which is not a searched parameter"),
    ("per-layer-depth-is-net-param", _both(_set("search_space.layers", ...),
                                           _set("search_space.units.per_layer", "batch_size")),
     "search_space.batch_size", "is a mlp hyperparameter, but per_layer uses it as a depth"),
    ("net-takes-no-list", _set("search_space.units.as", "lr"), "search_space.units.per_layer",
     "mlp's 'lr' takes one value, not a list"),
    ("as-without-per-layer", _set("search_space.lr.as", "hidden"), "search_space.lr.as",
     "applies only with per_layer"),
    ("as-unknown-net-param", _set("search_space.units.as", "hiden"), "search_space.units.as",
     "did you mean 'hidden'"),
    ("two-lists-one-param", _both(_set("search_space.hidden", {"type": "int", "low": 8, "high": 64}),
                                  _rename("search_space.units", "width")),
     "search_space.width", "sets 'hidden', which 'hidden' sets too"),
    ("list-target-fixed", _set("fixed.hidden", [64, 32]), "search_space.units",
     "sets 'hidden', which is also set in fixed"),
    ("draw-name-clash", _both(_rename("search_space.layers", "units_1"),
                              _set("search_space.units.per_layer", "units_1")),
     "search_space.units_1", "clashes with the per-layer draws of 'units'"),
    ("grid-conditional", _both(_set("sampler", "grid"), _set("search_space.lr", {"choices": [0.01, 0.1]})),
     "search_space.units", "grid sampler cannot search a conditional or per-layer"),
    ("fixed-list-too-long", _both(_set("search_space.units", ...), _set("fixed.hidden", [8] * 9)),
     "fixed.hidden", "must list 1 to 8 layer sizes"),
]


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return CliRunner()


def _write(tmp_path: Path, case) -> Path:
    path = tmp_path / "bad.yaml"
    text = case if isinstance(case, str) else yaml.safe_dump(case(lenet_dict()), sort_keys=False)
    path.write_text(text)
    return path


def _assert_one_error(output: str, file: str, key: str, fragment: str) -> None:
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, output
    assert len(lines) == 1, output
    assert file in errors[0] and key in errors[0] and fragment in errors[0], errors[0]
    assert "Traceback" not in output


@pytest.mark.parametrize("case,key,fragment", [pytest.param(c, k, f, id=i) for i, c, k, f in CASES])
def test_bad_study_file_one_error_line_and_nothing_created(runner: CliRunner, tmp_path: Path,
                                                             case, key: str, fragment: str) -> None:
    path = _write(tmp_path, case)
    result = runner.invoke(cli, ["run", str(path)])
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stdout == ""
    _assert_one_error(result.stderr, str(path), key, fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]  # no study DB, no MLflow store


@pytest.mark.parametrize("change,key,fragment", [pytest.param(c, k, f, id=i) for i, c, k, f in STRUCTURE_CASES])
def test_bad_conditional_or_per_layer_space_one_error_line(runner: CliRunner, tmp_path: Path,
                                                            change, key: str, fragment: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(change(mlp_dict()), sort_keys=False))
    result = runner.invoke(cli, ["run", str(path)])
    assert result.exit_code == 2, (result.output, result.exception)
    _assert_one_error(result.stderr, str(path), key, fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_the_conditional_study_itself_is_valid() -> None:
    spec = spec_from_dict(mlp_dict())
    by_name = {p.name: p for p in spec.space}
    assert by_name["units"].per_layer == "layers" and by_name["units"].target == "hidden"
    assert by_name["momentum"].when == (("optimizer", ("sgd",)),)


def test_tracking_end_wait_takes_a_duration_or_zero() -> None:
    assert spec_from_dict(lenet_dict()).tracking.end_wait == 60.0
    for value, seconds in ((0, 0.0), ("0s", 0.0), ("2m", 120.0), (5, 5.0)):
        assert spec_from_dict(lenet_dict(tracking={"end_wait": value})).tracking.end_wait == seconds


@pytest.mark.parametrize("case,key,fragment", [pytest.param(c, k, f, id=i) for i, c, k, f in CASES[:4]])
def test_validate_reports_the_same_line(runner: CliRunner, tmp_path: Path, case, key, fragment) -> None:
    path = _write(tmp_path, case)
    result = runner.invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2
    _assert_one_error(result.stderr, str(path), key, fragment)


def test_line_numbers_point_at_the_key(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("net: lenet\nsearch_space:\n  lr: {type: float, low: 0, high: 0.1, log: true}\n"
                    "objective: {metric: val_loss}\nbudget: {trials: 2}\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.line().startswith(f"{path}:3: search_space.lr.low: must be > 0")


@pytest.mark.parametrize("args,key,fragment", [
    (["--set", "fixed.epocs=1"], "fixed.epocs", "did you mean 'epochs'"),
    (["--set", "nokeyvalue"], "", "is not KEY=VALUE"),
    (["--trials", "0"], "budget.trials", "(from --trials 0)"),
    (["--timeout", "soon"], "budget.timeout", "not a duration"),
    (["--extend", "0"], "--extend", "must be >= 1"),
    (["--tracking-uri", "foo://bar"], "tracking.uri", "not an MLflow tracking URI"),
])
def test_bad_command_line_values(runner: CliRunner, tmp_path: Path, args, key, fragment) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(lenet_dict()))
    result = runner.invoke(cli, ["run", str(path), *args])
    assert result.exit_code == 2, result.output
    _assert_one_error(result.stderr, str(path) if key else "", key, fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.yaml"]


def test_missing_file_and_subprocess_has_no_traceback(tmp_path: Path, env: dict) -> None:
    path = _write(tmp_path, CASES[0][1])
    proc = run_cli(["run", str(path)], env, tmp_path)
    assert proc.returncode == 2
    _assert_one_error(proc.stderr, str(path), "serach_space", "did you mean")
    proc = run_cli(["validate", str(tmp_path / "nope.yaml")], env, tmp_path)
    assert proc.returncode == 2
    _assert_one_error(proc.stderr, "nope.yaml", "", "file not found")


@pytest.mark.parametrize("text,seconds", [(90, 90.0), ("90s", 90.0), ("30m", 1800.0), ("2h", 7200.0),
                                          ("1h30m", 5400.0), ("1.5h", 5400.0), ("1d", 86400.0)])
def test_durations(text, seconds) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5m", "5 minutes", "m", "1x", "h1", True, None, [1]])
def test_bad_durations(text) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


# --------------------------------------------------------------------------- property test

_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
_keys = st.one_of(st.sampled_from(TOP_KEYS + ("type", "low", "high", "log", "step", "choices",
                                              "name", "metric", "trials", "timeout", "path", "lr",
                                              "hidden", "epochs", "batch_size", "limit", "when",
                                              "per_layer", "as", "layers")),
                  st.text(max_size=8), st.integers(-3, 3))
_values = st.recursive(_scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(_keys, inner, max_size=5)),
                       max_leaves=12)


def _mutations(base: dict) -> st.SearchStrategy:
    """Valid-looking LeNet studies with one to three keys replaced by junk."""
    paths = [("net",), ("search_space",), ("search_space", "lr"), ("search_space", "lr", "low"),
             ("search_space", "lr", "log"), ("search_space", "batch_size", "choices"),
             ("objective",), ("objective", "metric"), ("sampler",), ("pruner",), ("pruner", "name"),
             ("budget",), ("budget", "timeout"), ("budget", "trials"), ("fixed",), ("fixed", "epochs"),
             ("data",), ("data", "limit"), ("execution",), ("tracking",), ("seed",), ("storage",),
             ("pruner", "reduction_factor"), ("search_space", "hidden", "step")]

    def apply(changes):
        d = copy.deepcopy(base)
        for path, value in changes:
            node = d
            for p in path[:-1]:
                if not isinstance(node.get(p), dict):
                    node[p] = {}
                node = node[p]
            node[path[-1]] = value
        return d
    return st.lists(st.tuples(st.sampled_from(paths), _values), min_size=1, max_size=3).map(apply)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_values, _mutations(lenet_dict())))
def test_generated_specs_raise_nothing_but_spec_error(tmp_path_factory, data) -> None:
    try:
        spec_from_dict(data) if isinstance(data, dict) else _load_text(tmp_path_factory, data)
    except SpecError as exc:
        line = exc.line()
        assert "\n" not in line and line.startswith("<dict>") or ".yaml" in line


_NAMES = ("layers", "units", "optimizer", "lr", "momentum", "lr_decay", "batch_size", "hidden", "depth")
_VALUES = ("sgd", "adam", "adagrad", "rmsprop", 16, 32, 0, 1, 4, 9, 2.5, None, True)
_structure = st.one_of(
    st.sampled_from(_NAMES + _VALUES),
    st.dictionaries(st.sampled_from(_NAMES), st.one_of(st.sampled_from(_VALUES),
                                                       st.lists(st.sampled_from(_VALUES), max_size=3)),
                    max_size=3),
    st.fixed_dictionaries({"type": st.sampled_from(["int", "float", "categorical"]),
                           "low": st.integers(-1, 3), "high": st.integers(1, 10)}),
    _values)


def _structure_mutations(base: dict) -> st.SearchStrategy:
    """Conditional studies (studies/mlp.yaml) with one to four when/per_layer/as/depth keys changed."""
    paths = [("search_space", "momentum", "when"), ("search_space", "momentum", "when", "optimizer"),
             ("search_space", "lr_decay", "when"), ("search_space", "optimizer", "when"),
             ("search_space", "batch_size", "when"), ("search_space", "units", "per_layer"),
             ("search_space", "units", "as"), ("search_space", "lr", "per_layer"),
             ("search_space", "layers"), ("search_space", "layers", "high"),
             ("search_space", "layers", "low"), ("search_space", "optimizer", "choices"),
             ("search_space", "units"), ("search_space", "depth"), ("fixed", "hidden"),
             ("fixed", "optimizer"), ("sampler", "name"), ("net",)]

    def apply(changes):
        d = copy.deepcopy(base)
        for path, value in changes:
            node = d
            for p in path[:-1]:
                if not isinstance(node.get(p), dict):
                    node[p] = {}
                node = node[p]
            node[path[-1]] = value
        return d
    return st.lists(st.tuples(st.sampled_from(paths), _structure), min_size=1, max_size=4).map(apply)


_subset = st.lists(st.sampled_from(["sgd", "adam", "adagrad"]), min_size=1, max_size=3, unique=True)
_maybe_when = st.one_of(st.none(), _subset.map(lambda v: {"optimizer": v}))


@st.composite
def _valid_conditional(draw) -> dict:
    """Valid nested conditional spaces: depths 1..8, conditions on conditions (optimizer itself only
    under some batch sizes), per-layer lists under a condition."""
    d = mlp_dict()
    ss = d["search_space"]
    low = draw(st.integers(1, 7))
    ss["layers"] = {"type": "int", "low": low, "high": draw(st.integers(low + 1, 8))}
    ss["optimizer"]["when"] = draw(st.one_of(st.none(), st.lists(st.sampled_from([16, 32, 64]), min_size=1,
                                                                  unique=True).map(lambda v: {"batch_size": v})))
    for key in ("layers", "momentum", "lr_decay", "lr"):
        ss[key]["when"] = draw(_maybe_when) if key != "momentum" else {"optimizer": draw(_subset)}
    for key in list(ss):
        if ss[key].get("when") is None:
            ss[key].pop("when", None)
    return d


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_structure_mutations(mlp_dict()), _valid_conditional()))
def test_generated_conditional_specs_raise_spec_error_or_draw_exactly_the_active_params(data) -> None:
    """Bad when/per_layer/as give one SpecError line; a space that passes draws, for every trial,
    exactly the parameters active under its own values, and folds into lists the net takes."""
    import optuna

    from hpsearch.space import Conditional, active_names, layout, net_params
    try:
        spec = spec_from_dict(data)
    except SpecError as exc:
        assert "\n" not in exc.line() and exc.line().startswith("<dict>")
        return
    space = Conditional(spec.space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(3):
        trial = study.ask()
        values = space(trial)
        assert set(values) == set(trial.params) == active_names(spec.space, values)
        folded = net_params(values, layout(spec.space))
        for name, depth, target in layout(spec.space):   # an inactive depth: the net's default
            assert depth not in folded and (len(folded[target]) == values[depth] if depth in values
                                            else target not in folded)
            assert not any(k.startswith(name + "_") for k in folded)
        study.tell(trial, 0.0)


def _load_text(tmp_path_factory, data) -> None:
    path = tmp_path_factory.mktemp("gen") / "g.yaml"
    path.write_text(yaml.safe_dump(data))
    load_spec(path)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abc: -[]{}\n\t'\"#&*!|>%@,0.1e")), max_size=80))
def test_generated_yaml_text_raises_nothing_but_spec_error(tmp_path_factory, text) -> None:
    path = tmp_path_factory.mktemp("txt") / "t.yaml"
    path.write_text(text)
    try:
        load_spec(path)
    except SpecError as exc:
        assert "\n" not in exc.line()


def test_glove_path_resolved_like_data_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fixed.glove: relative to the study file (or the working directory with --set), ~ expanded,
    and a missing file is one error naming fixed.glove."""
    (tmp_path / "vec").mkdir()
    (tmp_path / "vec" / "g.txt").write_text("the 0.1 0.2\n")
    study = yaml.safe_load(Path("studies/textcnn.yaml").read_text())
    study["fixed"]["glove"] = "vec/g.txt"
    spec_file = tmp_path / "tc.yaml"
    spec_file.write_text(yaml.safe_dump(study))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_spec(spec_file).fixed["glove"] == str(tmp_path / "vec" / "g.txt")
    monkeypatch.setenv("HOME", str(tmp_path))
    study["fixed"]["glove"] = "~/vec/g.txt"
    spec_file.write_text(yaml.safe_dump(study))
    assert load_spec(spec_file).fixed["glove"] == str(tmp_path / "vec" / "g.txt")
    (elsewhere / "mine.txt").write_text("the 0.1 0.2\n")
    got = load_spec(spec_file, [("fixed.glove", "mine.txt", "--set fixed.glove=mine.txt")])
    assert got.fixed["glove"] == str(elsewhere / "mine.txt")
    study["fixed"]["glove"] = "vec/none.txt"
    spec_file.write_text(yaml.safe_dump(study))
    with pytest.raises(SpecError) as err:
        load_spec(spec_file)
    assert "fixed.glove" in str(err.value) and "does not exist" in str(err.value)
