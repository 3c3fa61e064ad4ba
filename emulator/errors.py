"""Errors shaped like the real service so clients exercise their real error mapping (Azurite style).

Data plane and ARM: Azure.Core ``{"error": {"code", "message"}}`` plus an ``x-ms-error-code`` header [SPEC].
Managed-identity endpoint: App Service style ``{"statusCode", "message"}``, which is what MSAL reads into
``error_description`` (msal/managed_identity.py ``_obtain_token_on_app_service``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

from flask import Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException


class EmulatorError(Exception):
    """A contract error: rendered as an HTTP error response, never as a 200."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


class ConnectionDropped(Exception):
    """Raised after a fault closed the client's connection: nothing must be written any more."""


def bad_request(code: str, message: str) -> EmulatorError:
    return EmulatorError(400, code, message)


def not_found(code: str, message: str) -> EmulatorError:
    return EmulatorError(404, code, message)


def unauthorized(code: str, message: str) -> EmulatorError:
    # Entra-protected Azure APIs answer 401 with a Bearer challenge; azure-core only acts on it when it
    # carries CAE claims, so a plain challenge is safe for SDK clients.
    challenge = (
        'Bearer authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
        f'error="invalid_token", error_description="{message}"'
    )
    return EmulatorError(401, code, message, {"WWW-Authenticate": challenge})


def forbidden(principal_id: str, action: str, scope: str) -> EmulatorError:
    # Message modelled on ARM's AuthorizationFailed text.
    message = (
        f"The client '{principal_id}' with object id '{principal_id}' does not have authorization to perform "
        f"action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, "
        "please refresh your credentials."
    )
    return EmulatorError(403, "AuthorizationFailed", message)


def default_code(status: int) -> str:
    return {
        400: "BadRequest",
        401: "InvalidAuthenticationToken",
        403: "AuthorizationFailed",
        404: "NotFound",
        405: "MethodNotAllowed",
        408: "RequestTimeout",
        409: "Conflict",
        413: "RequestEntityTooLarge",
        429: "TooManyRequests",
        500: "InternalServerError",
        502: "BadGateway",
        503: "ServiceUnavailable",
        504: "GatewayTimeout",
    }.get(status, "EmulatorInjectedFault")


def render(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """Serialise an error in the shape of the blueprint that is answering."""
    if request.blueprint == "identity":
        body: dict[str, object] = {"statusCode": status, "message": message, "correlationId": str(uuid.uuid4())}
    else:
        body = {"error": {"code": code, "message": message}}
    response = jsonify(body)
    response.status_code = status
    if request.blueprint != "identity":
        response.headers["x-ms-error-code"] = code
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def handle_emulator_error(error: EmulatorError) -> Response:
    return render(error.status, error.code, error.message, error.headers)


_POOL_PATH = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/sessionPools/([^/]+)(/.*)?$", re.IGNORECASE)


def handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    if status == 404:
        return _route_not_found()
    return render(status, default_code(status), error.description or error.name)


def _route_not_found() -> Response:
    """A 404 that says which part of the URL is wrong, so a client can tell it from a full pool.

    Guess: the live service's text and codes for these are not documented.
    """
    match = _POOL_PATH.match(request.path)
    if match is None:
        return render(404, "NotFound", f"No service route matches '{request.path}'.")
    pool, rest = match.group(1), match.group(2) or "/"
    settings = current_app.extensions["emulator"].config()
    if request.path.lower().startswith(settings.pool_path.lower() + "/") or request.path.lower() == settings.pool_path.lower():
        return render(404, "RouteNotFound", f"Session pool '{pool}' has no operation '{request.method} {rest}'.")
    return render(404, "SessionPoolNotFound", f"Session pool '{pool}' was not found at '{request.path}'.")


def handle_dropped(_error: ConnectionDropped) -> Response:
    # The socket is already shut down; werkzeug's write fails with EPIPE and it treats that as a
    # client disconnect, so this body is never seen.
    return Response(b"", status=500)
