"""The storage layer: SQLite tuning of hpsearch's own engines only, the driver lock, and library
loggers quieted for a block and then put back."""
from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import sqlalchemy

from hpsearch.errors import StorageError
from hpsearch.scoped import quiet
from hpsearch.storage import LOCK_ATTR, driver_lock, lock_holder, open_storage


def _journal(engine: sqlalchemy.Engine) -> tuple[str, int]:
    with engine.connect() as conn:
        return (conn.exec_driver_sql("PRAGMA journal_mode").scalar(),
                conn.exec_driver_sql("PRAGMA synchronous").scalar())


def test_the_study_store_is_tuned_and_a_users_engine_is_not(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}", create=True)
    user = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'user.db'}")
    assert _journal(user) == ("delete", 2)                      # SQLite's defaults: rollback, FULL
    rdb = getattr(storage, "_backend", storage)                 # Optuna wraps it in a cache
    assert _journal(rdb.engine) == ("wal", 1)                   # WAL, NORMAL
    assert _journal(sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'user2.db'}")) == ("delete", 2)


def test_the_mlflow_store_is_tuned(tmp_path: Path) -> None:
    from hpsearch.spec import spec_from_dict
    from hpsearch.tracking import Tracker
    from conftest import lenet_dict
    spec = spec_from_dict(lenet_dict(), name="tuned", base_dir=tmp_path)
    Tracker(spec, f"sqlite:///{tmp_path / 'mlflow.db'}")
    mode = sqlite3.connect(tmp_path / "mlflow.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"                          # persistent in the file: the store was tuned


def test_the_driver_lock_is_held_for_the_block_and_refuses_a_second_live_driver(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}")
    with driver_lock(study):
        assert study.user_attrs[LOCK_ATTR]["pid"] == os.getpid()
        assert lock_holder(study) is None                       # our own lock is not another's
    assert study.user_attrs[LOCK_ATTR] is None
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        study.set_user_attr(LOCK_ATTR, {"host": os.uname().nodename, "pid": other.pid})
        with pytest.raises(StorageError, match=f"being run by process {other.pid}"):
            with driver_lock(study):
                pass
        assert study.user_attrs[LOCK_ATTR]["pid"] == other.pid  # a refused driver leaves it alone
    finally:
        other.kill()
        other.wait()
    with driver_lock(study):                                    # a dead holder's lock is stale
        assert study.user_attrs[LOCK_ATTR]["pid"] == os.getpid()


def test_quiet_restores_the_levels_it_raised() -> None:
    optuna_logger, mine = logging.getLogger("optuna"), logging.getLogger("somebody.else")
    before = optuna_logger.level
    optuna_logger.setLevel(logging.DEBUG)
    try:
        with quiet():
            assert optuna_logger.level == logging.WARNING
        assert optuna_logger.level == logging.DEBUG and mine.level == logging.NOTSET
        with quiet("optuna", level=logging.INFO):   # never lowers a level
            optuna_logger.setLevel(logging.ERROR)
        assert optuna_logger.level == logging.DEBUG
    finally:
        optuna_logger.setLevel(before)
