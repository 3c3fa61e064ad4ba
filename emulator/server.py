"""Serve the app with werkzeug's threaded server, announce readiness, and clean up on any exit.

Why werkzeug and not gunicorn: all sessions (kernels) must live in one process, and a thread per
connection makes the ``hang``/``drop`` faults and 220 s executions cheap to hold open. The listen
backlog is raised from werkzeug's 128 so bursts of 200+ concurrent connections are not refused.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import TextIO

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from .app import close_app, create_app
from .settings import Settings

log = logging.getLogger(__name__)


class _Handler(WSGIRequestHandler):
    # Reclaim the thread of a client that vanished mid-request; longer than the 220 s execution cap
    # and the 600 s hang fault so neither is cut short.
    timeout = 900

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.server.log_requests:  # type: ignore[attr-defined]
            super().log_request(code, size)


class _Server(ThreadedWSGIServer):
    request_queue_size = 1024
    daemon_threads = True
    log_requests = False


def _watch_parent(on_orphaned: Callable[[], None], stopping: threading.Event) -> None:
    """If the launcher dies without stopping us (a test runner killed with SIGKILL), shut down cleanly
    instead of living on as an orphan with its kernels."""
    parent = os.getppid()

    def watch() -> None:
        while not stopping.wait(0.5):
            if os.getppid() != parent:
                log.warning("parent process %s is gone: shutting down", parent)
                on_orphaned()
                return

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def base_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


CLIENT_ENV_KEYS = (
    "POOL_MANAGEMENT_ENDPOINT",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "AZURE_SUBSCRIPTION_ID",
    "AZURE_RESOURCE_GROUP",
    "SESSION_POOL_NAME",
    "AZURE_RESOURCE_MANAGER_URL",
    "SESSION_POOL_TYPE",
)


def client_env(settings: Settings, url: str) -> dict[str, str]:
    """What a client (the backend) needs in its environment to use this emulator."""
    env = {
        "POOL_MANAGEMENT_ENDPOINT": url + settings.endpoint_path(),
        "IDENTITY_ENDPOINT": url + "/msi/token",
        "IDENTITY_HEADER": settings.identity_header,
        "AZURE_SUBSCRIPTION_ID": settings.subscription_id,
        "AZURE_RESOURCE_GROUP": settings.resource_group,
        "SESSION_POOL_NAME": settings.pool_name,
        "AZURE_RESOURCE_MANAGER_URL": url,
        "SESSION_POOL_TYPE": settings.pool_type,
    }
    assert tuple(env) == CLIENT_ENV_KEYS
    return env


def serve(settings: Settings, out: TextIO = sys.stdout) -> int:
    app = create_app(settings)
    try:
        server = _Server(settings.host, settings.port, app, handler=_Handler)
    except BaseException:
        close_app(app)
        raise
    server.log_requests = settings.log_requests
    stopping = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        # serve_forever() must be stopped from another thread; the handler runs in the main thread.
        if not stopping.is_set():
            stopping.set()
            log.info("signal %s: shutting down", signum)
            threading.Thread(target=server.shutdown, daemon=True).start()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    if settings.exit_with_parent:
        _watch_parent(lambda: stop(0, None), stopping)

    url = base_url(settings.host, server.server_address[1])
    lines = [f"EMULATOR_READY {url}"] + [f"{k}={v}" for k, v in client_env(settings, url).items()]
    out.write("\n".join(lines) + "\n")
    out.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        close_app(app)  # kills every kernel: pooled, in use or still starting
        log.info("emulator stopped")
    return 0
