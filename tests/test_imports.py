"""Light imports: `import hpsearch` loads no heavy optional dependency; `import nets` loads no
orchestration. Checked in a fresh interpreter (click's test_light_imports pattern)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

CHECK = """
import json, sys
import {module}
print(json.dumps(sorted(sys.modules)))
"""


def _loaded(module: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", CHECK.format(module=module)], capture_output=True,
                         text=True, check=True).stdout
    return {name.split(".")[0] for name in json.loads(out)}


@pytest.mark.parametrize("module,forbidden", [
    ("hpsearch", {"pyspark", "mlflow", "optuna", "numba", "grpc", "sqlalchemy"}),
    ("hpsearch.cli", {"pyspark", "mlflow", "optuna", "numba", "grpc"}),
    ("nets", {"hpsearch", "pyspark", "optuna", "mlflow"}),
])
def test_light_imports(module: str, forbidden: set[str]) -> None:
    assert not (_loaded(module) & forbidden)


def test_errors_module_imports_nothing_from_hpsearch() -> None:
    import ast
    from pathlib import Path
    import hpsearch.errors
    tree = ast.parse(Path(hpsearch.errors.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("hpsearch")
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("hpsearch") for a in node.names)
