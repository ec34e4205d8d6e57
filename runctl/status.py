"""Run statuses, named as Azure ML v1 names them, with the predicates callers need."""

from __future__ import annotations

import enum


class RunStatus(str, enum.Enum):
    NOT_STARTED = "NotStarted"
    QUEUED = "Queued"
    PREPARING = "Preparing"
    STARTING = "Starting"
    RUNNING = "Running"
    FINALIZING = "Finalizing"
    CANCEL_REQUESTED = "CancelRequested"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @classmethod
    def parse(cls, text: str) -> RunStatus:
        for s in cls:
            if s.value.lower() == text.lower():
                return s
        raise ValueError(text)


_TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED})
