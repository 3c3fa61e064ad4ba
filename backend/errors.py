"""Typed failures of the service itself, each mapped to one JSON answer ``{"message": ...}``.

A submission that fails is not an error here: it is a ``StageResult`` with a status.
"""

from __future__ import annotations


class ApiError(Exception):
    """Base: an HTTP status and a client-facing message."""

    status_code = 500

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code


class ValidationError(ApiError):
    status_code = 400


class UnsupportedMediaType(ApiError):
    status_code = 415


class Unauthorized(ApiError):
    status_code = 401


class PayloadTooLarge(ApiError):
    status_code = 413


class Overloaded(ApiError):
    """The job queue is full or the wait for a slot timed out."""

    status_code = 503


class ExecutorUnavailable(ApiError):
    """The executor cannot run anything (sandbox refused, pool unreachable)."""

    status_code = 503


class UpstreamError(ApiError):
    """The session pool answered wrongly (502) or not in time (504)."""

    status_code = 502


class UpstreamTimeout(UpstreamError):
    status_code = 504


class MethodNotAllowed(ApiError):
    """A route that exists but refuses the method (package installs: runtimes come with the image)."""

    status_code = 405


class InteractiveUnsupported(ApiError):
    """The executor cannot run interactive ``/api/v2/connect`` sessions (the session pools)."""

    status_code = 501
