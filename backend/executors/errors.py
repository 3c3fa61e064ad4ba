"""Failures of an executor (or of the admission in front of it), without HTTP codes.

Executors raise these; ``backend/api.py`` maps each to its HTTP status in one table
(``EXECUTOR_STATUS``) and ``backend/connect.py`` to a WebSocket close. A submission that
fails is not an error here: it is a ``StageResult`` with a status.
"""

from __future__ import annotations


class ExecutorError(Exception):
    """Base: a message safe to show the client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Overloaded(ExecutorError):
    """The job queue is full or the wait for a slot timed out."""


class ExecutorUnavailable(ExecutorError):
    """The executor cannot run anything (sandbox refused, pool unreachable)."""


class UpstreamError(ExecutorError):
    """The session pool answered wrongly."""


class UpstreamTimeout(UpstreamError):
    """The session pool did not answer in time."""


class InteractiveUnsupported(ExecutorError):
    """The executor cannot run interactive ``/api/v2/connect`` sessions (the session pools)."""
