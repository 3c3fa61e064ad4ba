"""Typed failures of a request at the API (bad input, auth, limits), each with its HTTP status and
one JSON answer ``{"message": ...}``.

A submission that fails is not an error here: it is a ``StageResult`` with a status. Executors
raise their own exceptions (``backend/executors/errors.py``), mapped to HTTP codes in
``backend/api.py``.
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


class MethodNotAllowed(ApiError):
    """A route that exists but refuses the method (package installs: runtimes come with the image)."""

    status_code = 405
