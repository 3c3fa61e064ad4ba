"""Request ids, JSON-line logs and Prometheus metrics.

Logs never carry code, stdin or tokens at INFO: the access line holds the route,
status, duration, language and the stage status only.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from backend.executors.base import Executor

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": REQUEST_ID.get(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class Metrics:
    """The app's own registry (one per app, so tests and workers do not share globals)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("piston_http_requests_total", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.request_seconds = Histogram("piston_http_request_seconds", "HTTP request latency", ["route"],
                                         buckets=LATENCY_BUCKETS, registry=self.registry)
        self.executions = Counter("piston_executions_total", "Executions by language and run status",
                                  ["language", "status", "executor"], registry=self.registry)
        self.execution_seconds = Histogram("piston_execution_seconds", "Time to execute (compile + run)",
                                           ["language"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.inflight = Gauge("piston_jobs_inflight", "Jobs admitted (running or queued)", registry=self.registry)
        self.rejected = Counter("piston_jobs_rejected_total", "Jobs refused with 503", ["reason"], registry=self.registry)
        self.fallbacks = Counter("piston_fallbacks_total", "Executions moved to the local fallback", registry=self.registry)

    def watch_executor(self, executor: Executor) -> None:
        self.registry.register(_ExecutorStats(executor))

    def render(self) -> Response:
        return Response(generate_latest(self.registry), mimetype="text/plain; version=0.0.4; charset=utf-8")


class _ExecutorStats(Collector):
    """Reads ``executor.stats()`` at scrape time: {"name": value} or {"name": {label: value}}."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    def collect(self) -> Iterable[GaugeMetricFamily]:
        for name, value in self.executor.stats().items():
            if isinstance(value, dict):
                family = GaugeMetricFamily(f"piston_executor_{name}", f"executor statistic {name}", labels=["kind"])
                for kind, number in value.items():
                    family.add_metric([str(kind)], float(number))
            else:
                family = GaugeMetricFamily(f"piston_executor_{name}", f"executor statistic {name}", value=float(value))
            yield family


def install_request_hooks(app: Flask, metrics: Metrics) -> None:
    access = logging.getLogger("backend.access")

    @app.before_request
    def start() -> None:
        rid = request.headers.get("X-Request-ID", "")[:128] or uuid.uuid4().hex
        g.request_id = rid
        g.started = time.perf_counter()
        g.token = REQUEST_ID.set(rid)

    @app.after_request
    def finish(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else "unmatched"
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        response.headers["X-Request-ID"] = g.get("request_id", "-")
        metrics.requests.labels(request.method, route, str(response.status_code)).inc()
        metrics.request_seconds.labels(route).observe(elapsed)
        fields = {"method": request.method, "path": request.path, "status": response.status_code,
                  "duration_ms": round(elapsed * 1000, 1), **g.get("log_fields", {})}
        access.info("request", extra={"fields": fields})
        return response

    @app.teardown_request
    def reset(_exc: BaseException | None) -> None:
        token = g.pop("token", None)
        if token is not None:
            REQUEST_ID.reset(token)
