"""Data plane: code execution (both generations) and session management.

Legacy (2024-02-02-preview, 2024-08-02-preview): ``POST /code/execute`` with ``{"properties": {...}}``.
New (2024-10-02-preview+): ``POST /executions`` (flat), ``GET /executions/{id}``, ``GET|DELETE /session``,
``GET /listSessions``, ``GET /metadata`` [SPEC routes.tsp]. Any known api-version is accepted on any
route: live tests found "the api-version is not behaviourally significant on the data plane" [3P].
"""

from __future__ import annotations

import importlib.metadata
import platform
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, request

from .checks import DATAPLANE_PREFIX, acquire, check_pool, get_emulator, operation, prologue, session_headers
from .errors import bad_request, not_found
from .executions import ExecutionRecord, parse_execute_body, run_execution, run_in_background
from .sessions import iso
from .settings import BodyShape
from .state import Emulator

bp = Blueprint("dataplane", __name__, url_prefix=DATAPLANE_PREFIX)
bp.url_value_preprocessor(check_pool)

LIST_PAGE_SIZE = 300  # [DOC .management/listSessions] "300 per page"


@bp.post("/code/execute")
@operation("execute")
def legacy_execute() -> Response:
    emu = get_emulator()
    # Guess: the legacy route only ever documented synchronous runs, so "asynchronous" runs synchronously.
    record, session, started = _execute(emu, emu.config().code_execute_body, allow_async=False)
    headers = {"operation-id": record.id, **session_headers(session, started)}
    return _json(record.to_legacy_json(), 200, headers)


@bp.post("/executions")
@operation("execute")
def execute() -> Response:
    emu = get_emulator()
    record, session, started = _execute(emu, emu.config().executions_body, allow_async=True)
    headers = {"operation-id": record.id, **session_headers(session, started)}
    if record.asynchronous:
        headers["Operation-Location"] = _operation_location(record)
        body = record.to_json()
        if body["status"] == "NotStarted":
            body["status"] = "Running"  # the async example answers "Running" right away [SPEC]
        return _json(body, 202, headers)
    return _json(record.to_json(), 200, headers)


def _execute(emu: Emulator, shape: BodyShape, *, allow_async: bool) -> tuple[ExecutionRecord, Any, float]:
    cfg = emu.config()
    _, ident = prologue(emu)
    req = parse_execute_body(request.get_json(force=True, silent=True), shape, max_execution_s=cfg.max_execution_s)
    asynchronous = req.asynchronous and allow_async
    # The client may choose the execution id with the operation-id header [SPEC ExecutionOperationIdHeader].
    execution_id = request.headers.get("operation-id") or str(uuid.uuid4())
    started = time.monotonic()
    session = acquire(emu, ident)
    assert session is not None
    record = ExecutionRecord(execution_id, ident, asynchronous)
    session.remember(execution_id, record)
    if asynchronous:
        run_in_background(emu.sessions, session, record, req)  # takes over the lease
        return record, session, started
    try:
        run_execution(emu.sessions, session, record, req)
    finally:
        emu.sessions.release(session)
    return record, session, started


def _operation_location(record: ExecutionRecord) -> str:
    query = urlencode({"api-version": request.args["api-version"], "identifier": record.identifier})
    base = request.base_url.rsplit("/executions", 1)[0]
    return f"{base}/executions/{record.id}?{query}"


@bp.get("/executions/<execution_id>")
@operation("execution_get")
def get_execution(execution_id: str) -> Response:
    emu = get_emulator()
    _, ident = prologue(emu)
    session = acquire(emu, ident, create=False)
    if session is None:
        raise not_found("ExecutionNotFound", f"Execution '{execution_id}' was not found.")
    try:
        record = session.executions.get(execution_id)
        if record is None:
            raise not_found("ExecutionNotFound", f"Execution '{execution_id}' was not found.")
        return _json(record.to_json(), 200, {"operation-id": record.id, **session_headers(session)})
    finally:
        emu.sessions.release(session)


@bp.get("/session")
@operation("session")
def get_session() -> Response:
    emu = get_emulator()
    _, ident = prologue(emu)
    session = acquire(emu, ident, create=False)
    if session is None:
        # Guess: status; the live .management/getSession answers 400 with this code [3P], a REST GET 404.
        raise not_found("SessionWithIdentifierNotFound", f"Session with identifier '{ident}' was not found.")
    try:
        return _json(session.to_json(emu.config().cooldown_s), 200, session_headers(session))
    finally:
        emu.sessions.release(session)


@bp.delete("/session")
@operation("session")
def delete_session() -> Response:
    emu = get_emulator()
    _, ident = prologue(emu)
    # Guess: deleting an unknown session is 204 too (Azure REST guidelines: DELETE is idempotent).
    emu.sessions.delete(ident)
    return Response(status=204)


@bp.get("/listSessions")
@operation("session")
def list_sessions() -> Response:
    emu = get_emulator()
    prologue(emu, with_identifier=False)  # pool-wide: no identifier [DOC session-pool.md]
    raw_skip = request.args.get("skip", "0")
    if not raw_skip.isdigit():
        raise bad_request("SessionRequestValidationFailed", "skip must be a non-negative integer.")
    skip = int(raw_skip)
    sessions = [s for s in emu.sessions.list() if s.ready.is_set() and not s.alloc_error]
    page = sessions[skip : skip + LIST_PAGE_SIZE]
    next_link = None
    if skip + LIST_PAGE_SIZE < len(sessions):
        query = urlencode({"api-version": request.args["api-version"], "skip": skip + LIST_PAGE_SIZE})
        next_link = f"{request.base_url}?{query}"
    cooldown = emu.config().cooldown_s
    body: dict[str, Any] = {"sessions": [s.to_json(cooldown) for s in page]}
    if next_link is not None:  # absent on the last page: the swagger types it as a URI string
        body["nextLink"] = next_link
    return _json(body, 200, {})


@bp.get("/metadata")
@operation("metadata")
def metadata() -> Response:
    emu = get_emulator()
    prologue(emu, with_identifier=False)
    if emu.metadata_cache is None:
        emu.metadata_cache = _build_metadata(emu)
    return _json(emu.metadata_cache, 200, {})


def _build_metadata(emu: Emulator) -> dict[str, Any]:
    """SessionPoolMetadata [SPEC example], describing the kernel environment the sessions really run."""
    packages = sorted({(d.metadata["Name"] or "", d.version) for d in importlib.metadata.distributions() if d.metadata["Name"]})
    return {
        "runtimes": [{"name": "python", "version": platform.python_version()}],
        "preInstalledPackages": [{"name": n, "version": v} for n, v in packages],
        "createdAt": iso(emu.started_at),
        "lastUpdatedAt": iso(emu.started_at),
        "jupyterKernel": {
            "name": "python3",
            "version": importlib.metadata.version("ipykernel"),
            "projectUrl": "https://github.com/ipython/ipykernel",
            "description": "IPython Kernel for Jupyter",
        },
    }


def _json(body: Any, status: int, headers: dict[str, str]) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers)
    return response
