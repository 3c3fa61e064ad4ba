"""Custom-container pool data plane (``--pool-type CustomContainer``): the path after the pool
endpoint goes to the session's container, and ``/.management/stopSession`` ends a session.

[DOC sessions-custom-container.md, sessions-usage.md] the endpoint is
``https://<pool>.<environment-id>.<region>.azurecontainerapps.io`` and "anything in the path
following the pool management endpoint is forwarded to the session's container", routed by
``?identifier=``, with the same Entra token and Session Executor role as code-interpreter pools.
127.0.0.1 cannot carry the pool in its host name, so here that host is the first path segment:
``http://127.0.0.1:<port>/<pool>.<environment-id>.<region>.azurecontainerapps.io``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import requests
from flask import Blueprint, Response, request, stream_with_context

from .checks import acquire, api_version, authorize, get_emulator, identifier, operation
from .errors import EmulatorError
from .settings import Settings

log = logging.getLogger(__name__)

# Guess: no documented per-request cap for custom containers (the 220 s cap is the code interpreter's).
FORWARD_TIMEOUT_S = 900
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
                        "transfer-encoding", "upgrade", "host", "content-length"})


def make_blueprint(settings: Settings) -> Blueprint:
    bp = Blueprint("container", __name__, url_prefix="/" + settings.container_host)

    @bp.post("/.management/stopSession")
    @operation("session")
    def stop_session() -> Response:
        emu = get_emulator()
        authorize(emu)
        api_version()
        ident = identifier()
        emu.sessions.delete(ident)
        # [DOC sessions-custom-container.md, 2026 revision] 200 text/plain. Guess: an unknown identifier too.
        text = f"Session {ident} in session pool {emu.config().pool_name} stopped."
        return Response(text, status=200, content_type="text/plain")

    @bp.route("/", defaults={"path": ""}, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    @bp.route("/<path:path>", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    @operation("container")
    def forward(path: str) -> Response:
        return _forward(path)

    return bp


def _forward(path: str) -> Response:
    emu = get_emulator()
    authorize(emu)  # same token and role checks as the code-interpreter data plane
    if path.startswith(".management/"):
        raise EmulatorError(404, "NotFound", f"Unknown management operation '{path}'.")
    ident = identifier()
    session = acquire(emu, ident)
    assert session is not None and session.kernel is not None
    session.execution_count += 1
    emu.counters.record_route(f"{request.method} /{path}")
    container = session.kernel
    # Guess: the ingress forwards the request as received: query string (identifier and all) and
    # headers, Authorization included. Nothing documents either way; this is the worst case for
    # secrecy, and the session app needs neither (SERVICE_ROLE=session trusts the pool's check).
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    try:
        upstream = requests.request(
            request.method, f"{container.url}/{path}", params=request.args.to_dict(flat=False),
            data=request.get_data(), headers=headers, timeout=(5, FORWARD_TIMEOUT_S), stream=True,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        emu.sessions.release(session)
        if not container.alive():
            # Guess: a container that died is a lost session; the identifier starts a new one next time.
            emu.sessions.delete(ident)
        raise EmulatorError(502, "BadGateway", f"The session's container did not answer: {type(exc).__name__}.") \
            from None

    def body() -> Iterator[bytes]:
        try:
            yield from upstream.iter_content(64 * 1024)
        finally:
            upstream.close()
            emu.sessions.release(session)

    response_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
    return Response(stream_with_context(body()), status=upstream.status_code, headers=response_headers)
