"""CI's lint and size checks: ruff (pyflakes, pycodestyle errors, the complexity and length limits of
pyproject.toml) and a line budget per package, like tinygrad's sz.py.

Run as a script for the table: ``python tests/test_lint.py``.
"""
from __future__ import annotations

import ast
import io
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

BUDGET = {"hpsearch": 6200, "nets": 3500}
"""Code lines per package (no blank lines, comments or docstrings): the size when adopted plus about
5%; hpsearch's raised once since, on purpose (6100 -> 6200, for the driver JVM's class-data archive,
rather than dropping a tested capability of its size). Raise a budget on purpose, in its own commit,
never to make a change fit."""


def code_lines(path: Path) -> int:
    """Lines holding code: blank lines, comments and docstrings do not count."""
    text = path.read_text()
    docstrings = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                docstrings.update(range(first.lineno, first.end_lineno + 1))
    lines = set()
    skip = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENDMARKER)
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type not in skip:
            lines.update(n for n in range(tok.start[0], tok.end[0] + 1) if n not in docstrings)
    return len(lines)


def package_lines(package: str) -> dict[str, int]:
    return {str(p.relative_to(ROOT)): code_lines(p) for p in sorted((ROOT / package).rglob("*.py"))}


@pytest.mark.parametrize("package", sorted(BUDGET))
def test_package_fits_its_line_budget(package: str) -> None:
    total = sum(package_lines(package).values())
    assert total <= BUDGET[package], f"{package}: {total} code lines > budget {BUDGET[package]}"


def test_code_lines_skip_blank_lines_comments_and_docstrings(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text('"""Doc\n\nstring."""\n# comment\n\ndef f(x):\n    """Doc."""\n    return (x +\n'
                 '            1)  # trailing\n')
    assert code_lines(f) == 3


def test_ruff() -> None:
    pytest.importorskip("ruff", reason="pip install -e '.[dev]' (CI installs it)")
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise",
                          "hpsearch", "nets", "tests", "bench"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


if __name__ == "__main__":
    for package in sorted(BUDGET):
        files = package_lines(package)
        for name, n in sorted(files.items(), key=lambda kv: -kv[1]):
            print(f"{n:6d}  {name}")
        print(f"{sum(files.values()):6d}  {package} (budget {BUDGET[package]})\n")
