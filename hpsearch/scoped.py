"""Process state changed for a block only, then put back: library loggers quieted, environment
variables set. hpsearch owns its own loggers and nothing else in the process."""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

LIBRARIES = ("optuna", "mlflow", "alembic")
"""The libraries whose INFO lines (trial finished, study created, database migrated) hpsearch
replaces with its own output."""


@contextmanager
def quiet(*names: str, level: int = logging.WARNING) -> Iterator[None]:
    """Raise the loggers ``names`` (default :data:`LIBRARIES`) to ``level`` for the block; their
    own levels come back after it. A library that sets its level on import must be imported first."""
    loggers = [logging.getLogger(n) for n in names or LIBRARIES]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(level, lg.level))
    try:
        yield
    finally:
        for lg, was in saved:
            lg.setLevel(was)


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Every one of :data:`LIBRARIES` quiet for the block (a sweep)."""
    import mlflow  # noqa: F401 - mlflow sets its logger's level on import; override it after
    with quiet(*LIBRARIES):
        yield


@contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block (a child process started in it inherits them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
