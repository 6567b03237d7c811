"""The layers stay layered: no module reaches into another module's private names, and the
spec (the first step of the flow) never pulls in numba, Spark or the trial objective."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hpsearch", "nets")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    """The absolute module of a (possibly relative) ``from ... import``."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _package_of(module: str) -> str:
    return module.rpartition(".")[0]


def private_uses(path: Path) -> list[str]:
    """``file:line what`` for every private name this file takes from another of our modules.

    A private name is one starting with ``_``. A private module (``pkg/_base.py``) may be imported
    by the modules of its own package only; a private function, class or constant by no other module.
    """
    module, is_package = _module_name(path), path.name == "__init__.py"
    own_package = module if is_package else _package_of(module)
    tree = ast.parse(path.read_text(), str(path))
    found, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _absolute(module, node, is_package)
            if source.split(".")[0] not in PACKAGES:
                continue
            found += _bad_module(source, own_package, path, node)
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} from {source} import {alias.name}")
                aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    found += _bad_module(alias.name, own_package, path, node)
                    aliases[alias.asname or alias.name.split(".")[0]] = alias.name
    found += _private_attributes(tree, aliases, path)
    return found


def _bad_module(source: str, own_package: str, path: Path, node: ast.AST) -> list[str]:
    parts = source.split(".")
    for i, part in enumerate(parts):
        if _private(part) and ".".join(parts[:i]) != own_package:
            return [f"{path.relative_to(ROOT)}:{node.lineno} imports the private module {source}"]
    return []


def _private_attributes(tree: ast.AST, aliases: dict[str, str], path: Path) -> list[str]:
    """``mod._x`` where ``mod`` names one of our modules (imported under any name)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in aliases:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} uses {ast.unparse(node)}")
    return found


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_no_module_imports_a_private_name_of_another_module() -> None:
    found = [line for path in _sources() for line in private_uses(path)]
    assert not found, "make the name public, or move it to the module that uses it:\n" + "\n".join(found)


def test_the_check_sees_private_imports(tmp_path: Path) -> None:
    """The checker itself: each kind of reach-in is reported (a checker that finds nothing proves nothing)."""
    probe = ROOT / "hpsearch" / "_layering_probe.py"
    probe.write_text("from hpsearch.study import _best\nfrom hpsearch.backends._base import Backend\n"
                     "from .storage import LOCK_ATTR\nimport hpsearch.recipes as r\nr._DATA_CACHE\n"
                     "from hpsearch.backends import _base\n")
    try:
        found = private_uses(probe)
    finally:
        probe.unlink()
    assert [f.split(" ", 1)[1] for f in found] == [
        "from hpsearch.study import _best", "imports the private module hpsearch.backends._base",
        "from hpsearch.backends import _base", "uses r._DATA_CACHE"]


CHECK = """
import json, sys
import hpsearch.spec
before = sorted(sys.modules)
spec = hpsearch.spec.load_spec({file!r})
print(json.dumps([before, sorted(sys.modules)]))
"""


def test_the_spec_imports_no_numba_spark_or_trial_objective() -> None:
    """Importing the spec loads none of them; validating a study loads the nets (its recipe), never
    Spark or the worker side."""
    out = subprocess.run([sys.executable, "-c", CHECK.format(file=str(ROOT / "studies" / "lenet.yaml"))],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    imported, validated = (set(names) for names in json.loads(out.splitlines()[-1]))
    worker_side = {"hpsearch.objective", "hpsearch.backends.local", "hpsearch.backends.spark",
                   "hpsearch.backends.spark_barrier"}
    assert not {m for m in imported if m.split(".")[0] in {"numba", "nets", "pyspark"}}
    assert not imported & worker_side
    assert "nets" in validated   # the check would see an import: validation does load the recipe
    assert not {m for m in validated if m.split(".")[0] == "pyspark"}
    assert not validated & worker_side
