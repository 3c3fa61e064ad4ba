"""piston-sessions-backend: a Piston v2 compatible code-execution service."""

from __future__ import annotations

import atexit
import logging
from dataclasses import dataclass

from flask import Flask

from backend.config import Settings, load_settings
from backend.executors.base import Executor, Fallback
from backend.observability import Metrics, configure_logging, install_request_hooks
from backend.security import install_api_keys, install_cors
from backend.service import Admission, ExecutionService


@dataclass
class AppState:
    settings: Settings
    executor: Executor
    service: ExecutionService
    metrics: Metrics
    fallback: Executor | None = None

    def close(self) -> None:
        """Release sandboxes and sessions (gunicorn's worker_exit, atexit); idempotent."""
        for executor in (self.executor, self.fallback):
            if executor is not None:
                executor.close()


def build_executor(settings: Settings) -> tuple[Executor, Executor | None]:
    """The primary executor and, when configured, the local fallback."""
    from backend.executors.local.executor import LocalExecutor

    if settings.use_local_executor:  # always in SERVICE_ROLE=session (backend/config.py forces it)
        return LocalExecutor(settings), None
    from backend.executors.azure import build_pool_executor

    fallback = Fallback(LocalExecutor(settings)) if settings.fallback_to_local else None
    return build_pool_executor(settings), fallback


def create_app(settings: Settings | None = None, executor: Executor | None = None) -> Flask:
    """Build the app. Settings come from the environment and `.env` unless given."""
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    fallback = None
    if executor is None:
        executor, fallback = build_executor(settings)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.strict_slashes = False  # Piston (Express) matches "/api/v2/runtimes/" too
    service = ExecutionService(
        executor, Admission(settings.max_concurrent_jobs, settings.max_queued_jobs), fallback=fallback,
        display_bytes=settings.judge_display_bytes,
    )
    metrics = Metrics()
    metrics.watch_executor(executor)
    state = AppState(settings, executor, service, metrics, fallback)
    app.extensions["piston"] = state

    from backend.api import bp, register_errors

    install_request_hooks(app, metrics)
    install_api_keys(app, settings.api_keys)
    install_cors(app, settings.cors_origins)
    app.register_blueprint(bp)
    register_errors(app)
    atexit.register(state.close)
    logging.getLogger(__name__).info(
        "started", extra={"fields": {"role": settings.service_role.value, "executor": executor.name,
                                     **executor.health()}},
    )
    return app
