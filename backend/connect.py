"""``/api/v2/connect``: Piston's interactive WebSocket protocol (api/src/api/v2.js, ``router.ws``).

The client sends ``init`` (an /execute body) within 1 s; the server answers ``runtime``,
then ``stage``/``data``/``exit`` per stage, and closes with 4999 when the job is done.
The client may send ``data`` on ``stdin`` and ``signal`` while it runs. Protocol errors
close with Piston's codes; failures are an ``error`` message followed by close 4002.

Served with flask-sock (simple-websocket underneath): it takes the raw socket from
gunicorn's gthread worker, so a connection is one worker thread for its lifetime.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from typing import Any

from flask import Blueprint, current_app
from flask.sansio.blueprints import BlueprintSetupState
from flask_sock import Sock
from simple_websocket import ConnectionClosed, Server

from backend.errors import ApiError, ValidationError
from backend.executors.errors import ExecutorError
from backend.interactive import SIGNALS, InteractiveSession
from backend.schema import parse_execute

log = logging.getLogger(__name__)
INIT_TIMEOUT_S = 1.0  # Piston: "Terminate the socket after 1 second, if not initialized"
JOB_POLL_S = 0.5

ALREADY_INITIALIZED = (4000, "Already Initialized")
INITIALIZATION_TIMEOUT = (4001, "Initialization Timeout")
NOTIFIED_ERROR = (4002, "Notified Error")
NOT_YET_INITIALIZED = (4003, "Not yet initialized")
ONLY_STDIN = (4004, "Can only write to stdin")
INVALID_SIGNAL = (4005, "Invalid signal")
JOB_COMPLETED = (4999, "Job Completed")
CLOSE_CODES = (ALREADY_INITIALIZED, INITIALIZATION_TIMEOUT, NOTIFIED_ERROR, NOT_YET_INITIALIZED, ONLY_STDIN,
               INVALID_SIGNAL, JOB_COMPLETED)

sock = Sock()


class _Closed(Exception):
    """The connection is closed (by us with a Piston code, or by the client): stop handling."""


class Connection:
    """One /connect socket: sends from the job thread and the receive loop never interleave."""

    def __init__(self, ws: Server, state: Any) -> None:
        self.ws = ws
        self.state = state
        self._lock = threading.Lock()
        self.session = InteractiveSession(self.send)
        self.job: threading.Thread | None = None

    def send(self, message: dict[str, Any]) -> None:
        with self._lock:
            try:
                self.ws.send(json.dumps(message))
            except (ConnectionClosed, OSError):
                # The client left: stop the program rather than let it run to its limits.
                self.session.cancel()

    def close(self, code_reason: tuple[int, str]) -> None:
        with self._lock, contextlib.suppress(ConnectionClosed, OSError):
            self.ws.close(*code_reason)

    def fail(self, message: str) -> None:
        # Piston: close messages are limited to 123 bytes, so the reason goes in an `error` message first.
        self.send({"type": "error", "message": message})
        self.close(NOTIFIED_ERROR)

    # -- the receive loop (the request's thread)

    def serve(self) -> None:
        deadline = time.monotonic() + INIT_TIMEOUT_S
        try:
            while self.ws.connected:
                # While the job runs, wake up now and then: the job thread may have closed the socket.
                timeout = JOB_POLL_S if self.job is not None else deadline - time.monotonic()
                if timeout <= 0:
                    self.close(INITIALIZATION_TIMEOUT)
                    return
                raw = self.ws.receive(timeout=timeout)
                if raw is None:
                    continue
                try:
                    self.handle(raw)
                except (ApiError, ExecutorError) as exc:
                    self.fail(exc.message)
                    return
        except (ConnectionClosed, _Closed):
            return
        finally:
            self.session.cancel()  # a no-op once the job has finished
            if self.job is not None:
                self.job.join()

    def handle(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValidationError(f"message is not valid JSON: {exc}") from None
        if not isinstance(message, dict):
            raise ValidationError("messages must be JSON objects with a type")
        kind = message.get("type")
        if kind == "init":
            self.init(message)
        elif kind == "data":
            self.require_job()
            if message.get("stream") != "stdin":
                self.close_with(ONLY_STDIN)
            if not isinstance(message.get("data"), str):
                raise ValidationError("data must be a string")
            self.session.feed(message["data"])
        elif kind == "signal":
            self.require_job()
            if not isinstance(message.get("signal"), str) or message["signal"] not in SIGNALS:
                self.close_with(INVALID_SIGNAL)
            self.session.signal(message["signal"])
        # Other types are ignored, as in Piston.

    def require_job(self) -> None:
        if self.job is None:
            self.close_with(NOT_YET_INITIALIZED)

    def close_with(self, code_reason: tuple[int, str]) -> None:
        self.close(code_reason)
        raise _Closed

    def init(self, body: dict[str, Any]) -> None:
        if self.job is not None:
            self.close_with(ALREADY_INITIALIZED)
        state = self.state
        request = parse_execute(body, state.service.registry, state.settings)
        if body.get("stdin"):
            # Piston ignores `stdin` in init; here it is the program's first input.
            self.session.feed(request.run.stdin)
        self.job = threading.Thread(target=self.run_job, args=(request,), name="connect-job", daemon=True)
        self.job.start()

    # -- the job (its own thread, so that stdin and signals keep arriving)

    def run_job(self, request: Any) -> None:
        try:
            self.state.service.interact(request, self.session)
        except (ApiError, ExecutorError) as exc:
            self.fail(exc.message)
            return
        except Exception:
            log.exception("interactive job failed")
            self.fail("internal error")
            return
        self.close(JOB_COMPLETED)


def register(bp: Blueprint) -> None:
    """Add /api/v2/connect to the API blueprint; messages are bounded like request bodies."""

    @bp.record_once
    def _options(setup: BlueprintSetupState) -> None:
        settings = setup.app.extensions["piston"].settings
        setup.app.config.setdefault("SOCK_SERVER_OPTIONS", {"max_message_size": settings.max_request_bytes})

    @sock.route("/api/v2/connect", bp=bp)
    def connect(ws: Server) -> None:
        Connection(ws, current_app.extensions["piston"]).serve()
