"""A new SQLite MLflow store is a copy of an empty one MLflow built (hpsearch.tracking.seed_store):
the same schema and rows as a store MLflow creates itself, never over an existing file."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from hpsearch.tracking import seed_store


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)        # MLflow's Default experiment: artifacts under the working dir
    return tmp_path / "cache" / "hpsearch"


def dump(db: Path) -> dict:
    """Schema and every row but the Default experiment's times. A table's lines (columns,
    constraints) are compared as a set: MLflow's migrations write a table's constraints in an order
    that differs from one interpreter to the next (two stores MLflow creates differ so)."""
    with sqlite3.connect(db) as conn:
        tables = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        rows = {t: sorted(map(repr, conn.execute(f'SELECT * FROM "{t}"'))) for t in tables if t != "experiments"}
        rows["experiments"] = conn.execute("SELECT experiment_id, name, artifact_location, lifecycle_stage "
                                           "FROM experiments").fetchall()
        rows["schema"] = sorted((kind, name, table, sorted((sql or "").split("\n")))
                                for kind, name, table, sql in conn.execute(
                                    "SELECT type, name, tbl_name, sql FROM sqlite_master"))
    conn.close()
    return rows


def test_a_seeded_store_is_the_store_mlflow_creates(tmp_path: Path, cache: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)               # the template is built in another working directory
    seed_store(f"sqlite:///{elsewhere / 'first.db'}")
    monkeypatch.chdir(tmp_path)
    seeded, made = tmp_path / "a" / "mlflow.db", tmp_path / "b" / "mlflow.db"
    seeded.parent.mkdir()
    made.parent.mkdir()
    seed_store(f"sqlite:///{seeded}")
    assert seeded.exists() and (cache / f"mlflow-{mlflow.__version__}-store.db").exists()
    ids = [MlflowClient(f"sqlite:///{db}").create_experiment("x") for db in (seeded, made)]
    assert ids[0] == ids[1]
    got, want = dump(seeded), dump(made)
    assert got == want
    assert [row[:3] for row in got["experiments"]] == [(0, "Default", str(tmp_path / "mlruns" / "0")),
                                                       (1, "x", str(tmp_path / "mlruns" / "1"))]
    leftovers = [p.name for d in (cache, seeded.parent) for p in d.iterdir() if p.suffix != ".db"]
    assert leftovers == []


def test_the_template_is_built_once_and_no_store_is_overwritten(tmp_path: Path, cache: Path) -> None:
    seed_store(f"sqlite:///{tmp_path / 'one.db'}")
    template = cache / f"mlflow-{mlflow.__version__}-store.db"
    built = template.stat().st_mtime_ns
    seed_store(f"sqlite:///{tmp_path / 'two.db'}")
    assert template.stat().st_mtime_ns == built and (tmp_path / "two.db").exists()
    mine = tmp_path / "mine.db"
    mine.write_bytes(b"not a store")
    seed_store(f"sqlite:///{mine}")
    assert mine.read_bytes() == b"not a store"
    for uri in ("sqlite://", "sqlite:///:memory:", f"file://{tmp_path / 'mlruns'}", "http://127.0.0.1:1"):
        seed_store(uri)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "mine.db", "one.db", "two.db"]


def test_an_unwritable_cache_leaves_the_store_to_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("a file, not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    seed_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert not (tmp_path / "mlflow.db").exists()
    seed_store(f"sqlite:///{tmp_path / 'no-such-dir' / 'mlflow.db'}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
