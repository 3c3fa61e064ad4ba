"""Request checks shared by the data-plane blueprints, and the plumbing every route uses.

Order of checks on a data-plane call. Guess: nothing documents it; like Azurite's pipeline (auth before
deserialisation) and Entra-fronted Azure APIs, a bad token is reported before a bad query string:
bearer token (401) -> role (403) -> api-version (400) -> identifier (400) -> body (400) -> capacity (404).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from flask import current_app, request

from .auth import authenticate
from .errors import EmulatorError, bad_request, forbidden, not_found
from .pool import AllocationFailed
from .sessions import PoolFull, Session
from .settings import KNOWN_API_VERSIONS, LEGACY_API_VERSIONS
from .state import Emulator

DATAPLANE_PREFIX = "/subscriptions/<sub>/resourceGroups/<rg>/sessionPools/<pool>"
EXECUTE_ACTION = "Microsoft.App/sessionPools/interpreters/execute/action"

# Identifier rules. Docs disagree:
#   [DOC sessions-usage.md] 4-128 chars, alphanumeric plus | - & ^ % $ # ( ) { } [ ] ; < >
#   [SPEC 2024-10-02-preview, 2025-02-02-preview] ^[A-Za-z0-9-_]{1,256}$
#   [SPEC 2025-10-02-preview common.tsp] 4-128 of letters, digits and most ASCII punctuation (incl. "_", "/")
# "common" (default) accepts only what every one of them accepts: letters, digits and "-", 4-128 chars, so
# a client that passes here is safe whichever rule the live service enforces. "union" accepts what any
# of them accepts (the 2025-10-02-preview pattern covers the others), for clients that rely on more.
IDENTIFIER_RULES = {
    "common": re.compile(r"^[A-Za-z0-9-]{4,128}$"),
    "union": re.compile(r"^[a-zA-Z0-9_|}{\[\]:\";'<>?/.,@#$%^&*()\-+=!~`]{4,128}$"),
}
IDENTIFIER_MESSAGES = {
    "common": "The identifier must be 4-128 characters: letters, digits and '-' (what every documented rule accepts).",
    "union": "The identifier must be 4-128 characters: letters, digits and the punctuation the 2025-10-02-preview "
    "contract allows.",
}
IDENTIFIER_RE = IDENTIFIER_RULES["common"]
REGIONAL_SUFFIX = ".dynamicsessions.io"  # [DOC] endpoints are https://<region>.dynamicsessions.io/...

F = TypeVar("F", bound=Callable[..., Any])


def operation(name: str) -> Callable[[F], F]:
    """Tag a view with the operation name that counters and fault rules use."""

    def tag(view: F) -> F:
        view._emulator_operation = name  # type: ignore[attr-defined]
        return view

    return tag


def get_emulator() -> Emulator:
    return current_app.extensions["emulator"]


def check_pool(_endpoint: str | None, values: dict[str, Any] | None) -> None:
    """url_value_preprocessor: the path must name this emulator's pool (names are case-insensitive)."""
    if values is None:
        return
    cfg = get_emulator().config()
    sub, rg, pool = values.pop("sub", ""), values.pop("rg", ""), values.pop("pool", "")
    host = request.host.rsplit(":", 1)[0].lower()
    if host.endswith(REGIONAL_SUFFIX) and host.split(".", 1)[0] != cfg.location.lower():
        # A client that reaches the emulator under a regional name (a Host header, or DNS pointed here)
        # names a region; the pool lives in --location only. Guess: same code as an unknown pool.
        raise not_found(
            "SessionPoolNotFound",
            f"Session pool '{pool}' was not found in region '{host.split('.', 1)[0]}' (it is in '{cfg.location}').",
        )
    if (sub.lower(), rg.lower(), pool.lower()) != (
        cfg.subscription_id.lower(),
        cfg.resource_group.lower(),
        cfg.pool_name.lower(),
    ):
        # Guess: code name; a real regional endpoint answers some 404 for an unknown pool.
        raise not_found("SessionPoolNotFound", f"Session pool '{pool}' was not found in resource group '{rg}'.")


def authorize(emu: Emulator) -> dict[str, Any]:
    cfg = emu.config()
    claims = authenticate(request, emu.tokens, cfg.data_plane_audiences())
    if not cfg.principal_allowed(claims["oid"]):
        raise forbidden(claims["oid"], EXECUTE_ACTION, cfg.arm_pool_id)
    return claims


def api_version() -> str:
    version = request.args.get("api-version")
    if not version:
        raise bad_request("MissingApiVersionParameter", "The api-version query parameter is required.")
    if version not in KNOWN_API_VERSIONS:
        raise bad_request(
            "UnsupportedApiVersion",
            f"The api-version '{version}' is not supported. Supported versions: {', '.join(KNOWN_API_VERSIONS)}.",
        )
    return version


def is_legacy(version: str) -> bool:
    return version in LEGACY_API_VERSIONS


def identifier() -> str:
    value = request.args.get("identifier")
    if not value:
        raise bad_request("MissingIdentifier", "The identifier query parameter is required.")
    rule = get_emulator().config().identifier_rule
    if not IDENTIFIER_RULES[rule].match(value):
        # Guess: code name; [DOC] only says such identifiers are invalid.
        raise bad_request("InvalidSessionIdentifier", IDENTIFIER_MESSAGES[rule])
    return value


def prologue(emu: Emulator, *, with_identifier: bool = True) -> tuple[str, str]:
    """Auth, api-version and identifier checks; returns (api_version, identifier or "")."""
    authorize(emu)
    version = api_version()
    return version, identifier() if with_identifier else ""


def acquire(emu: Emulator, ident: str, *, create: bool = True) -> Session | None:
    try:
        return emu.sessions.acquire(ident, create=create)
    except PoolFull:
        # [DOC session-pool.md]: "Requests that come in after the max limit is met are returned a 404".
        # Guess: the error code name.
        raise not_found(
            "MaxConcurrentSessionsReached",
            f"The session pool has reached its maximum of {emu.config().max_sessions} concurrent sessions.",
        ) from None
    except AllocationFailed as exc:
        raise EmulatorError(503, "SessionAllocationFailed", f"Could not allocate a session: {exc}") from None


@contextmanager
def leased(emu: Emulator, ident: str) -> Iterator[Session]:
    """A session for the duration of a request, allocated if new; resets its idle timer."""
    session = acquire(emu, ident)
    assert session is not None
    try:
        yield session
    finally:
        emu.sessions.release(session)


def session_headers(session: Session, started: float | None = None) -> dict[str, str]:
    headers = {"X-Ms-Session-Guid": session.guid}
    if started is not None:
        headers["X-Ms-Overall-Execution-Time"] = str(int((time.monotonic() - started) * 1000))
    return headers
