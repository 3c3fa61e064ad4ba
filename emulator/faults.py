"""Fault injection, LocalStack-chaos style: rules posted to ``/_emulator/faults`` match service calls.

A rule matches an operation (``execute``, ``execution_get``, ``files``, ``session``, ``metadata``,
``token``, ``arm``, ``dataplane`` = every data-plane call, or ``*`` = every service call), optionally an
identifier and an HTTP method, fires with ``probability``, at most ``count`` times, and then does, in order:
``latency_ms`` (sleep), ``hang`` (hold the request silently, then close it), ``drop`` (close without
answering), ``status`` (answer with an error; ``retry_after`` adds a Retry-After header; ``body``
replaces the JSON error body with raw text, e.g. to send a non-JSON token response).
A rule with only ``latency_ms`` slows matching calls and then lets them through.
"""

from __future__ import annotations

import random
import select
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, replace
from typing import Any

from flask import Request, Response

from .errors import ConnectionDropped, EmulatorError, default_code

# "container": any call a custom-container pool forwards to a session (emulator/routes_container.py).
OPERATIONS = ("execute", "execution_get", "files", "session", "metadata", "token", "arm", "container")
DATAPLANE_OPERATIONS = frozenset({"execute", "execution_get", "files", "session", "metadata", "container"})
HANG_MAX_S = 600.0  # "hang": true holds until the client gives up, but never longer than this


@dataclass
class FaultRule:
    id: str
    operation: str = "*"
    status: int | None = None
    error_code: str | None = None
    message: str | None = None
    retry_after: float | None = None
    count: int | None = None  # remaining firings; None = unlimited
    probability: float = 1.0
    latency_ms: int = 0
    hang: float | None = None  # seconds to hold the request before closing it
    drop: bool = False
    body: str | None = None
    identifier: str | None = None
    method: str | None = None
    fired: int = 0

    def matches(self, operation: str, identifier: str | None, method: str) -> bool:
        if self.operation == "*":
            pass
        elif self.operation == "dataplane":
            if operation not in DATAPLANE_OPERATIONS:
                return False
        elif self.operation != operation:
            return False
        if self.identifier is not None and self.identifier != identifier:
            return False
        return self.method is None or self.method.upper() == method.upper()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_rule(payload: Any) -> FaultRule:
    """Build a rule from JSON; ValueError names the bad field."""
    if not isinstance(payload, dict):
        raise ValueError("a fault rule must be a JSON object")
    known = set(FaultRule.__dataclass_fields__) - {"id", "fired"}
    unknown = set(payload) - known
    if unknown:
        raise ValueError(f"unknown fault field(s): {sorted(unknown)}; known: {sorted(known)}")
    rule = FaultRule(id=uuid.uuid4().hex[:12])
    operation = payload.get("operation", "*")
    if operation not in (*OPERATIONS, "dataplane", "*"):
        raise ValueError(f"operation must be one of {[*OPERATIONS, 'dataplane', '*']}")
    rule.operation = operation
    if payload.get("status") is not None:
        rule.status = _int(payload, "status", 100, 599)
    if payload.get("count") is not None:
        rule.count = _int(payload, "count", 1, 10**9)
    if payload.get("latency_ms") is not None:
        rule.latency_ms = _int(payload, "latency_ms", 0, 3_600_000)
    if payload.get("retry_after") is not None:
        rule.retry_after = _number(payload, "retry_after", 0, 86_400)
    if payload.get("probability") is not None:
        rule.probability = _number(payload, "probability", 0, 1)
    hang = payload.get("hang")
    if hang is True:
        rule.hang = HANG_MAX_S
    elif hang not in (None, False):
        rule.hang = _number(payload, "hang", 0, HANG_MAX_S)
    rule.drop = bool(payload.get("drop", False))
    for name in ("error_code", "message", "body", "identifier", "method"):
        value = payload.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} must be a string")
        setattr(rule, name, value)
    if not (rule.status or rule.latency_ms or rule.hang is not None or rule.drop or rule.body is not None):
        raise ValueError("a fault rule needs at least one of status, latency_ms, hang, drop, body")
    return rule


def _int(payload: dict[str, Any], name: str, low: int, high: int) -> int:
    value = payload[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}")
    return value


def _number(payload: dict[str, Any], name: str, low: float, high: float) -> float:
    value = payload[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{name} must be a number in {low}..{high}")
    return float(value)


class FaultStore:
    """Thread-safe ordered list of rules; the first matching rule that fires wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self.fired_total = 0

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule_id: str) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) != before

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def reset(self) -> None:
        with self._lock:
            self._rules.clear()
            self.fired_total = 0

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.to_json() for r in self._rules]

    def match(self, operation: str, identifier: str | None, method: str) -> FaultRule | None:
        with self._lock:
            for rule in self._rules:
                if not rule.matches(operation, identifier, method):
                    continue
                if rule.probability < 1.0 and random.random() >= rule.probability:
                    continue
                rule.fired += 1
                self.fired_total += 1
                if rule.count is not None:
                    rule.count -= 1
                    if rule.count <= 0:
                        self._rules.remove(rule)
                return replace(rule)
        return None


def apply_fault(rule: FaultRule, request: Request) -> Response | None:
    """Carry out a fired rule. Returns a response, raises, or returns None to let the call through."""
    if rule.latency_ms:
        time.sleep(rule.latency_ms / 1000)
    if rule.hang is not None:
        request.get_data()  # read the body, so that "socket readable" below means the client went away
        _hold(request, rule.hang)
        _drop(request)
    if rule.drop:
        _drop(request)
    if rule.status is None and rule.body is None:
        return None
    status = rule.status or 200
    # Marks the answer as injected, so contract checks in tests can tell it from the service's own.
    headers: dict[str, str] = {"x-emulator-fault": str(rule.id)}
    if rule.retry_after is not None:
        # Retry-After is integer seconds on the wire; round up so clients never retry too early.
        headers["Retry-After"] = str(int(-(-rule.retry_after // 1)))
    if rule.body is not None:
        return Response(rule.body, status=status, headers=headers, content_type="text/plain")
    code = rule.error_code or default_code(status)
    message = rule.message or f"Injected fault {rule.id}: {status} {code}."
    raise EmulatorError(status, code, message, headers)


def _socket(request: Request) -> socket.socket | None:
    sock = request.environ.get("werkzeug.socket")
    return sock if isinstance(sock, socket.socket) else None


def _hold(request: Request, seconds: float) -> None:
    """Sleep up to ``seconds``, returning early when the client closes its end."""
    deadline = time.monotonic() + seconds
    sock = _socket(request)
    poller = select.poll() if sock is not None else None
    if poller is not None and sock is not None:
        poller.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR)
    while (left := deadline - time.monotonic()) > 0:
        if poller is None or sock is None:
            time.sleep(min(left, 0.25))
            continue
        if not poller.poll(int(min(left, 0.25) * 1000)):
            continue
        try:
            peek = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            continue
        except OSError:
            return
        if not peek:
            return  # orderly close by the client
        time.sleep(min(left, 0.25))  # a pipelined request is waiting; keep holding


def _drop(request: Request) -> None:
    sock = _socket(request)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    raise ConnectionDropped()
