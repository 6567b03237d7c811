"""User-facing errors of nets. This module imports nothing from nets."""
from __future__ import annotations


class NetsError(Exception):
    """Root of every error nets raises about the user's input. Its message is one line."""

    exit_code = 2


class DataError(NetsError):
    """A data file or directory is missing, truncated or malformed.

    The message names the file, the problem, and the byte offset (or line number) where it applies.
    """

    def __init__(self, path, problem: str, *, offset: int | None = None, line: int | None = None,
                 hint: str | None = None):
        self.path = str(path)
        self.problem = problem
        self.offset = offset
        self.line = line
        self.hint = hint
        where = ""
        if offset is not None:
            where = f" at byte offset {offset}"
        elif line is not None:
            where = f" at line {line}"
        msg = f"{self.path}{where}: {problem}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class ConfigError(NetsError):
    """A hyperparameter or training setting is out of range (e.g. a negative learning rate)."""


class DivergedError(NetsError):
    """Training produced a non-finite loss; the configuration is bad, not the machine."""

    def __init__(self, epoch: int, batch: int, value: float):
        self.epoch, self.batch, self.value = epoch, batch, value
        super().__init__(f"loss became {value} at epoch {epoch}, batch {batch}")
