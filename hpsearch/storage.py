"""Optuna storage: a SQLite file beside the study by default, or any SQLAlchemy URL.

The driver is the only process that opens it. Workers reach it through the driver's gRPC
proxy (see :mod:`hpsearch.pruning`), so a SQLite file is never written by two processes.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hpsearch.errors import StorageError

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (``None`` for other URLs and in-memory)."""
    if not url.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url
    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None


_TUNED = False


def tune_sqlite() -> None:
    """WAL journal and synchronous=NORMAL for every SQLite database the driver opens (the Optuna
    study and MLflow's default store): a commit costs a fraction of a millisecond instead of an
    fsync, readers (the MLflow UI, `hpsearch show`) never block the driver, and a crash can lose at
    most the last commits, never corrupt the file."""
    global _TUNED
    if _TUNED:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _pragmas(dbapi_conn, _record):  # noqa: ANN001 - SQLAlchemy's hook signature
        if type(dbapi_conn).__module__.startswith("sqlite3"):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    _TUNED = True


def open_storage(url: str, *, create: bool) -> BaseStorage:
    """The Optuna storage at ``url``, cached for the driver and its gRPC proxy.

    Args:
        create: when ``False``, a missing SQLite file is an error instead of being created.
    """
    import optuna
    path = sqlite_path(url)
    if path is not None:
        if not create and not path.exists():
            raise StorageError(f"no study store at {path}",
                               "run the study first: hpsearch run SPEC (or pass --storage URL)")
        if not path.parent.is_dir():
            raise StorageError(f"cannot create {path}: {path.parent} is not a directory",
                               "create the directory or pass --storage URL")
    kwargs = {"connect_args": {"timeout": 60}} if path is not None else {}
    tune_sqlite()
    try:
        rdb = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy/driver errors vary by database
        raise StorageError(f"cannot open storage {url}: {' '.join(str(exc).split())[:300]}",
                           "check the URL, the database server and its driver package") from None
    return optuna.storages.get_storage(rdb)


def load_existing_study(url: str, name: str) -> optuna.Study:
    """A study that must exist already (for ``show`` and ``best``)."""
    import optuna
    storage = open_storage(url, create=False)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise StorageError(f"no study named '{name}' in {url}",
                           "run it first: hpsearch run SPEC") from None
