"""Application factory: one ``Emulator`` state object per app, blueprints, and the request pipeline.

Pipeline for service routes (data plane, identity, ARM), in order:
url_value_preprocessor (data plane: is this our pool?) -> count the call -> global latency ->
fault rules (latency / hang / drop / status) -> the view (auth, validation, work) -> request-id headers.
The control API (``/_emulator``) skips counting, latency and faults.
"""

from __future__ import annotations

import logging
import time
import uuid

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from . import routes_arm, routes_container, routes_control, routes_dataplane, routes_files, routes_identity
from .checks import DATAPLANE_PREFIX, get_emulator
from .errors import (
    ConnectionDropped,
    EmulatorError,
    handle_dropped,
    handle_emulator_error,
    handle_http_exception,
    render,
)
from .faults import apply_fault
from .settings import Settings
from .state import Emulator

log = logging.getLogger(__name__)
SERVICE_BLUEPRINTS = frozenset({"dataplane", "files", "identity", "arm", "container"})


def create_app(settings: Settings | None = None) -> Flask:
    """Build the emulator app. Kernels start in the background; call ``close_app(app)`` when done."""
    settings = settings or Settings()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes
    app.json.sort_keys = False  # keep the documented field order in responses
    app.extensions["emulator"] = Emulator(settings)

    for module in (routes_dataplane, routes_files, routes_identity, routes_arm, routes_control):
        app.register_blueprint(module.bp)
    if settings.pool_type == "CustomContainer":
        app.register_blueprint(routes_container.make_blueprint(settings))

    app.before_request(_service_prologue)
    app.after_request(_request_ids)
    app.register_error_handler(EmulatorError, handle_emulator_error)
    app.register_error_handler(ConnectionDropped, handle_dropped)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, _unexpected)
    return app


def close_app(app: Flask) -> None:
    """Stop every kernel and remove temporary data (idempotent)."""
    app.extensions["emulator"].close()


def _service_prologue() -> Response | None:
    if request.blueprint not in SERVICE_BLUEPRINTS or request.url_rule is None:
        return None
    view = current_app.view_functions.get(request.endpoint or "")
    op = getattr(view, "_emulator_operation", None)
    if op is None:
        return None
    emu = get_emulator()
    emu.counters.record_call(op, f"{request.method} {request.url_rule.rule.replace(DATAPLANE_PREFIX, '')}")
    latency_ms = emu.config().latency_ms
    if latency_ms:
        time.sleep(latency_ms / 1000)
    rule = emu.faults.match(op, request.args.get("identifier"), request.method)
    if rule is None:
        return None
    log.info("fault %s fires on %s %s", rule.id, request.method, request.path)
    return apply_fault(rule, request)


def _request_ids(response: Response) -> Response:
    if request.blueprint in SERVICE_BLUEPRINTS or request.blueprint is None:
        request_id = str(uuid.uuid4())
        response.headers.setdefault("x-ms-request-id", request_id)
        client_request_id = request.headers.get("x-ms-client-request-id")
        if client_request_id:
            response.headers["x-ms-client-request-id"] = client_request_id
        if request.blueprint == "arm":
            response.headers["x-ms-correlation-request-id"] = request.headers.get("x-ms-correlation-request-id", request_id)
    return response


def _unexpected(error: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.path, exc_info=error)
    return render(500, "InternalServerError", f"The emulator failed: {type(error).__name__}: {error}")
