"""runctl's exception tree and the exit code each one maps to.

    RunctlError (exit 1)
    ├── InputError (exit 2)            bad input: config, arguments, unknown run
    │   └── ConfigError                names file:line:col and the field
    ├── StartError (exit 3)            the run could not be started
    │   └── Refused                    the team store's database refused a change (not the run's owner)
    ├── BackendUnreachable (exit 4)    daemon/host/cluster did not answer
    │   └── StoreUnreachable           the team store's database did not answer
    ├── NotFinished (exit 1)
    └── DiskFull (exit 1)              no space left where runctl had to write

Third-party exceptions are converted at the edge (in each backend) and chained with
``from`` so the original stays visible with ``--debug``.
"""

from __future__ import annotations

from typing import Any


class ExitCode:
    OK = 0
    ERROR = 1
    BAD_INPUT = 2
    START_FAILED = 3
    BACKEND_UNREACHABLE = 4
    DETACHED = 5  # Ctrl-C while following or waiting: runctl stopped watching, the run goes on
    TIMED_OUT = 124
    CANCELED = 130


class RunctlError(Exception):
    exit_code = ExitCode.ERROR


class InputError(RunctlError):
    exit_code = ExitCode.BAD_INPUT


class ConfigError(InputError):
    """A problem at a place in a config file: rendered as ``file:line:col: field: what; hint``."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        col: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.col = col
        self.field = field
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.file:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
                if self.col is not None:
                    where += f":{self.col}"
            where += ": "
        field = f"{self.field}: " if self.field else ""
        hint = f"; {self.hint}" if self.hint else ""
        return f"{where}{field}{self.message}{hint}"

    def lines(self) -> list[str]:
        """This problem and the file's others, a line each."""
        return [self.render(), *(e.render() for e in self.more)]

    more: tuple[ConfigError, ...] = ()  # the file's other problems, in line order

    def with_more(self, others: list[ConfigError]) -> ConfigError:
        """This error, reporting ``others`` after it (every problem of a file at once)."""
        self.more = tuple(others)
        self.args = ("\n".join(self.lines()),)
        return self


class StartError(RunctlError):
    exit_code = ExitCode.START_FAILED


class BackendUnreachable(RunctlError):
    """The compute cannot be asked now. From ``status_many`` of a backend with several hosts,
    ``answered`` holds the states of the runs whose host did answer (None for the others)."""

    exit_code = ExitCode.BACKEND_UNREACHABLE

    def __init__(self, message: str, answered: list[Any] | None = None) -> None:
        super().__init__(message)
        self.answered = answered


class StoreUnreachable(BackendUnreachable):
    """The team store (PostgreSQL) did not answer: nothing was changed; try again later."""


class Refused(InputError):
    """The team store's database refused a change: the run belongs to another teammate."""


class NotFinished(RunctlError):
    """An operation needs a finished run."""


class DiskFull(RunctlError):
    """No space left on a device runctl writes to (the store, a run directory)."""


class RunFailed(RunctlError):
    """``run.wait_for_completion()`` on a run that failed (Azure ML's ActivityFailedException)."""

    def __init__(self, message: str, error_details: dict | None = None) -> None:
        super().__init__(message)
        self.error_details = error_details or {}


ActivityFailedException = RunFailed
