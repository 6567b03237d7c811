"""Errors hpsearch shows to its users.

This module MUST NOT import anything from hpsearch: every other module imports it.

Every error is one line: ``<where>: <what is wrong>; <hint>``. The CLI prints it as
``Error: <that line>`` on stderr and exits with :attr:`HpsearchError.exit_code` (2).
"""
from __future__ import annotations

import re
from typing import Any

# scheme://user:PASSWORD@host: the password runs to the last '@' before the host (raw '@'s in it too)
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@'\"]*:)[^\s/'\"]*@")
# ...?password=...&token=... in a URL's query string
_QUERY_SECRET = re.compile(r"(?P<head>[?&;](?:password|passwd|pwd|secret|token|access_token|api_key)=)"
                           r"[^&;\s'\"]*", re.IGNORECASE)
# a setting whose name says it is a secret: spark.authenticate.secret: X, --set ...password=X
_NAMED_SECRET = re.compile(r"(?P<head>\b[\w.\-]*(?:secret|password|passwd)[\w.\-]*['\"]?[ \t]*[:=][ \t]*)"
                           r"(?!\*\*\*)(?:'[^'\n]*'|\"[^\"\n]*\"|[^\s,;'\"}\]]+)", re.IGNORECASE)


def redact(text: Any) -> str:
    """``text`` (a URL, or any text holding URLs) with every password masked as ``***``.

    ``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``; the user name, host and
    path stay readable, and so does a query string except its password/token values. The value of a
    setting whose name holds ``secret`` or ``password`` (``spark.authenticate.secret: X``,
    ``--set ...password=X``) is masked too. Applied to every
    error message, to what the CLI prints about storage and tracking, and to what hpsearch logs to
    MLflow (params, tags, the study file artifact).
    """
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + "***@", str(text))
    text = _QUERY_SECRET.sub(lambda m: m.group("head") + "***", text)
    return _NAMED_SECRET.sub(lambda m: m.group("head") + "***", text)



class HpsearchError(Exception):
    """Root of every error hpsearch raises about the user's input or setup.

    Args:
        problem: what is wrong, one line, no trailing period.
        hint: what to do about it, or ``None``.
    """

    exit_code = 2

    def __init__(self, problem: str, hint: str | None = None) -> None:
        self.problem = redact(" ".join(str(problem).split()))
        self.hint = redact(" ".join(str(hint).split())) if hint else None
        super().__init__(self.line())

    def where(self) -> str:
        """The location prefix of the message ('' when the error has no location)."""
        return ""

    def line(self) -> str:
        """The whole message on one line: ``<where>: <problem>; <hint>``."""
        where = self.where()
        text = f"{where}: {self.problem}" if where else self.problem
        return f"{text}; {self.hint}" if self.hint else text


class SpecError(HpsearchError):
    """A study file (or a ``--set`` override, or a Python-built spec) is invalid.

    Args:
        file: the study file as the user named it (or ``"<dict>"`` for a spec built in Python).
        key: the dotted key path, e.g. ``search_space.lr.low``; ``""`` for the whole document.
        problem: what is wrong with the value, e.g. ``must be > 0 when log: true; got 0.0``.
        hint: what to do about it.
        line: the 1-based line in the file, when known.
    """

    def __init__(self, file: str, key: str, problem: str, hint: str | None = None,
                 *, line: int | None = None) -> None:
        self.file = str(file)
        self.key = key
        self.lineno = line
        super().__init__(problem, hint)

    def where(self) -> str:
        file = f"{self.file}:{self.lineno}" if self.lineno else self.file
        return f"{file}: {self.key}" if self.key else file


class BackendError(HpsearchError):
    """A backend cannot be used (not installed, bad master URL, no workers)."""


class StorageError(HpsearchError):
    """The Optuna storage cannot be opened, or holds no study of that name."""
