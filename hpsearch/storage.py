"""Optuna storage: a journal file beside the study by default, a SQLite file, or any SQLAlchemy URL.

The driver is the only process that writes it. Workers reach it through the driver's gRPC
channel (see :mod:`hpsearch.pruning`), so a store file is never written by two processes.

A new study's default store is ``<stem>.optuna.journal`` (Optuna's JournalStorage: one appended
JSON line per change, read back from memory: about 0.3 ms of driver CPU per trial against 12 on
SQLite, see :mod:`hpsearch.journal`); a study
whose ``<stem>.optuna.db`` exists keeps resuming in it.
"""
from __future__ import annotations

import os
import socket
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.errors import StorageError

LOCK_ATTR = "hpsearch_driver"
"""The study's user attribute naming the driver that runs it: ``{"host": ..., "pid": ...}``."""
REQUEUED = "hpsearch_requeued"
"""A trial's user attribute: failed by a stopped driver, its params queued again (not counted)."""

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage
    from sqlalchemy.engine import Engine


JOURNAL = "journal:///"
"""The URL prefix of a journal store: ``journal:///rel/path`` or ``journal:////abs/path``."""


def default_storage(base_dir: Path, stem: str) -> str:
    """The store of a study without ``storage``: its SQLite file if it has one already (a study
    begun before the journal became the default), else a journal file; both beside the study."""
    db = base_dir / f"{stem}.optuna.db"
    return f"sqlite:///{db}" if db.exists() else f"{JOURNAL}{base_dir / (stem + '.optuna.journal')}"


def journal_path(url: str) -> Path | None:
    """The file of a ``journal:///`` URL (``None`` for other URLs)."""
    return Path(url[len(JOURNAL):]) if url.startswith(JOURNAL) and len(url) > len(JOURNAL) else None


def store_file(url: str) -> Path | None:
    """The file that holds the study store at ``url`` (SQLite or journal), ``None`` for a server."""
    return journal_path(url) or sqlite_path(url)


def cache_dir() -> Path:
    """hpsearch's cache folder: ``$XDG_CACHE_HOME/hpsearch`` (``~/.cache/hpsearch``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hpsearch"


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (``None`` for other URLs and in-memory)."""
    if not url.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url
    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None


_TUNED: weakref.WeakSet[Engine] = weakref.WeakSet()


def tune_sqlite(engine: Engine) -> None:
    """WAL journal and synchronous=NORMAL for one of hpsearch's own SQLite engines (the Optuna
    study; MLflow's store, see :class:`hpsearch.tracking.Tracker`): a commit costs a fraction of a
    millisecond instead of an fsync, readers (the MLflow UI, `hpsearch show`) never block the
    driver, and a crash can lose at most the last commits, never corrupt the file. Other engines
    in the process (the user's) are left as they are."""
    from sqlalchemy import event
    if engine.dialect.name != "sqlite" or event.contains(engine, "connect", _sqlite_pragmas):
        return
    event.listen(engine, "connect", _sqlite_pragmas)
    _TUNED.add(engine)
    engine.dispose()   # connections opened before the listener reconnect with the pragmas


def close_sqlite() -> None:
    """Close the pooled connections of the engines :func:`tune_sqlite` tuned (they stay usable):
    the last connection to a file folds its WAL back in, so no ``-wal``/``-shm`` file is left
    beside it when the process ends without the interpreter's teardown (``hpsearch`` does)."""
    for engine in list(_TUNED):
        engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def open_storage(url: str, *, create: bool) -> BaseStorage:
    """The Optuna storage at ``url``, cached for the driver and its gRPC proxy.

    Args:
        create: when ``False``, a missing SQLite file is an error instead of being created.
    """
    import optuna
    path = store_file(url)
    if path is not None:
        if not create and not path.exists():
            raise StorageError(f"no study store at {path}",
                               "run the study first: hpsearch run SPEC (or pass --storage URL)")
        if not path.parent.is_dir():
            raise StorageError(f"cannot create {path}: {path.parent} is not a directory",
                               "create the directory or pass --storage URL")
    if journal_path(url) is not None:
        return _open_journal(url, path)
    kwargs = {"connect_args": {"timeout": 60}} if path is not None else {}
    try:
        rdb = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy/driver errors vary by database
        raise StorageError(f"cannot open storage {url}: {' '.join(str(exc).split())[:300]}",
                           "check the URL, the database server and its driver package") from None
    if path is not None:
        tune_sqlite(rdb.engine)
    return optuna.storages.get_storage(rdb)


def _open_journal(url: str, path: Path) -> BaseStorage:
    from optuna.storages import JournalStorage

    from hpsearch.journal import DriverJournal
    try:
        return JournalStorage(DriverJournal(str(path)))
    except (OSError, ValueError) as exc:   # ValueError: a line that is not JSON
        raise StorageError(f"cannot open storage {url}: {' '.join(str(exc).split())[:300]}",
                           "check the path; a damaged line can be removed from the file") from None


def load_existing_study(url: str, name: str) -> optuna.Study:
    """A study that must exist already (for ``show`` and ``best``)."""
    import optuna
    storage = open_storage(url, create=False)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise StorageError(f"no study named '{name}' in {url}",
                           "run it first: hpsearch run SPEC") from None


# --------------------------------------------------------------------------- the driver lock

def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` on this host is alive (a zombie is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def lock_holder(study: optuna.Study) -> int | None:
    """The pid of another live process on this host that holds the study's driver lock, if any.

    A lock held on another host, or by a dead process, is stale: it does not count.
    """
    held = study.user_attrs.get(LOCK_ATTR)
    if not isinstance(held, dict) or held.get("host") != socket.gethostname():
        return None
    pid = held.get("pid")
    if not isinstance(pid, int) or pid == os.getpid() or not pid_alive(pid):
        return None
    return pid


@contextmanager
def driver_lock(study: optuna.Study) -> Iterator[None]:
    """Hold the study's driver lock for the block; StorageError when a live driver holds it."""
    holder = lock_holder(study)
    if holder is not None:
        raise StorageError(f"study '{study.study_name}' is being run by process {holder}",
                           "wait for it to finish, or stop it first")
    study.set_user_attr(LOCK_ATTR, {"host": socket.gethostname(), "pid": os.getpid()})
    try:
        yield
    finally:
        study.set_user_attr(LOCK_ATTR, None)


def requeue_orphans(study: optuna.Study, dists: dict[str, Any] | None,
                    complete: Callable[[dict[str, Any]], bool] | None = None) -> int:
    """Fail the trials a dead driver left RUNNING and queue their params again; how many.

    A trial killed while it was being asked (some of ``dists`` not yet drawn, or, in a conditional
    space, ``complete(params)`` false: some active parameter missing) never started: it is failed,
    and nothing is queued for it.
    """
    from optuna.trial import TrialState
    orphans = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in orphans:
        started = ((dists is None or set(dists) <= set(t.params))
                   and (complete is None or complete(dict(t.params))))
        reason = ("the driver stopped before this trial finished; its params were re-queued"
                  if started else "the driver stopped while asking this trial; nothing re-queued")
        trial_id = t._trial_id  # Optuna's own fail_stale_trials uses the same key
        study._storage.set_trial_user_attr(trial_id, "fail_reason", reason)
        study._storage.set_trial_user_attr(trial_id, REQUEUED, True)
        study._storage.set_trial_state_values(trial_id, TrialState.FAIL)
        if started:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                study.enqueue_trial(dict(t.params), skip_if_exists=False)
    return len(orphans)
