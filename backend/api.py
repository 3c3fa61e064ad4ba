"""The HTTP API: Piston v2 routes plus health. Thin: parse, call the service, serialise."""

from __future__ import annotations

import json
import time
from typing import Any

from flask import Blueprint, Flask, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.routing import WebsocketMismatch

from backend import connect
from backend.errors import ApiError, MethodNotAllowed, PayloadTooLarge, UnsupportedMediaType, ValidationError
from backend.executors.errors import (
    ExecutorError,
    ExecutorUnavailable,
    InteractiveUnsupported,
    Overloaded,
    UpstreamError,
    UpstreamTimeout,
)
from backend.judge import parse_judge
from backend.openapi import document
from backend.schema import parse_execute

bp = Blueprint("piston", __name__)
connect.register(bp)  # /api/v2/connect, Piston's interactive WebSocket protocol


def _state() -> Any:
    return current_app.extensions["piston"]


def _require_json_type() -> None:
    content_type = request.headers.get("Content-Type", "")
    # Piston's check: a prefix match, case-sensitive; "application/json; charset=utf-8" passes.
    if not content_type.startswith("application/json"):
        raise UnsupportedMediaType("requests must be of type application/json")


def _json_body() -> Any:
    _require_json_type()
    try:
        raw = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise PayloadTooLarge(
            f"request body exceeds the limit of {current_app.config['MAX_CONTENT_LENGTH']} bytes"
        ) from None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError(f"request body is not valid JSON: {exc}") from None


@bp.get("/")
def root() -> Any:
    return jsonify(message="Piston v2 API (piston-sessions-backend)")


@bp.get("/api/v2/openapi.json")
def openapi() -> Any:
    return jsonify(document())


@bp.get("/api/v2/runtimes")
def runtimes() -> Any:
    return jsonify(_state().service.registry.to_json())


@bp.get("/api/v2/packages")
def packages() -> Any:
    """Piston's package list, for what this service has: every runtime is installed, none is downloadable."""
    return jsonify([
        {"language": rt.language, "language_version": rt.version, "installed": True}
        for rt in _state().service.registry
    ])


@bp.route("/api/v2/packages", methods=["POST", "DELETE"])
def change_packages() -> Any:
    _require_json_type()  # Piston's router checks the content type before any POST/DELETE route
    raise MethodNotAllowed(
        "packages cannot be installed or removed here: runtimes come with the service's image; "
        "GET /api/v2/runtimes lists them"
    )


def _answer(state: Any, body: dict[str, Any], *, language: str, outcome: str, note: str | None,
            started: float, **log_fields: Any) -> Any:
    """Record the run in metrics and the access log, and build the JSON answer."""
    executor = "local-fallback" if note else state.executor.name
    state.metrics.executions.labels(language, outcome, executor).inc()
    state.metrics.execution_seconds.labels(language).observe(time.perf_counter() - started)
    g.log_fields = {"language": language, "executor": executor, **log_fields}
    response = jsonify(body)
    if note:
        state.metrics.fallbacks.inc()
        response.headers["X-Piston-Notes"] = note
    return response


@bp.post("/api/v2/execute")
def execute() -> Any:
    state = _state()
    req = parse_execute(_json_body(), state.service.registry, state.settings)
    started = time.perf_counter()
    with state.metrics.inflight.track_inprogress():
        result = state.service.execute(req)
    status = result.run.status.value if result.run.status else "OK"
    return _answer(state, result.to_json(), language=result.language, outcome=status,
                   note="; ".join(result.notes) or None, started=started, run_status=status)


@bp.post("/api/v2/judge")
def judge() -> Any:
    """Extension: compile once, run many test cases, a verdict per case (backend/judge.py)."""
    state = _state()
    req = parse_judge(_json_body(), state.service.registry, state.settings)
    started = time.perf_counter()
    with state.metrics.inflight.track_inprogress():
        body, note = state.service.judge(req)
    return _answer(state, body, language=body["language"], outcome=f"judge-{body['verdict']}", note=note,
                   started=started, verdict=body["verdict"], cases=body["total"])


@bp.get("/health")
def health() -> Any:
    state = _state()
    body = {"status": "ok", "role": state.settings.service_role.value, **state.executor.health(),
            "inflight": state.service.admission.inflight}
    return jsonify(body)


@bp.get("/metrics")
def metrics() -> Any:
    return _state().metrics.render()


@bp.get("/ready")
def ready() -> Any:
    ok, detail = _state().executor.ready()
    return jsonify(status="ready" if ok else "unavailable", detail=detail), 200 if ok else 503


# The HTTP answer to each executor failure: the one place executor exceptions meet status codes.
EXECUTOR_STATUS: dict[type[ExecutorError], int] = {
    Overloaded: 503,
    ExecutorUnavailable: 503,
    UpstreamError: 502,
    UpstreamTimeout: 504,
    InteractiveUnsupported: 501,
}


def executor_status(exc: ExecutorError) -> int:
    """The status of the most specific class of ``exc`` in EXECUTOR_STATUS (500 if none)."""
    return next((EXECUTOR_STATUS[kind] for kind in type(exc).__mro__ if kind in EXECUTOR_STATUS), 500)


def register_errors(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Any:
        return jsonify(message=exc.message), exc.status_code

    @app.errorhandler(ExecutorError)
    def executor_error(exc: ExecutorError) -> Any:
        status = executor_status(exc)
        if status == 503:
            app.extensions["piston"].metrics.rejected.labels(type(exc).__name__).inc()
        return jsonify(message=exc.message), status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        if isinstance(exc, WebsocketMismatch):
            return jsonify(message="/api/v2/connect speaks WebSocket only (Piston's interactive protocol); "
                                   "connect with a WebSocket client"), 426
        # Piston answers unknown routes and wrong methods alike with 404 Not Found.
        if exc.code in (404, 405):
            return jsonify(message="Not Found"), 404
        if isinstance(exc, RequestEntityTooLarge):
            return jsonify(message=f"request body exceeds the limit of {app.config['MAX_CONTENT_LENGTH']} bytes"), 413
        return jsonify(message=exc.description or exc.name), exc.code or 500

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        app.logger.exception("unhandled error")
        return jsonify(message="internal error"), 500
