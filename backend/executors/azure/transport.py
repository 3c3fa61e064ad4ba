"""The one HTTP transport to a session pool, both kinds: an azure-core pipeline.

    RequestIdPolicy/UserAgentPolicy -> SessionsRetryPolicy -> RequestShapePolicy
        -> SessionsAuthPolicy (BearerTokenCredentialPolicy) -> RequestsTransport

- SessionsRetryPolicy is azure-core's RetryPolicy (Retry-After honoured, exponential backoff)
  with the pool's rules: 403 is retried (role assignments take minutes to propagate), a 404
  never (a full pool is the connection's wait, which may move to a warm session meanwhile;
  a policy cannot change the identifier), and an execution that may have reached the
  service (dropped after sending, 500/502/504) is retried at most once, a timed-out one never.
- RequestShapePolicy: a code-interpreter pool that refuses the flat execution body
  (400 SessionPropertiesMissing) gets the wrapped one, then the legacy route; the shape that
  worked is kept for the process.
- SessionsAuthPolicy caches the token (refreshed at the credential's ``refresh_on``) and,
  told ``invalid_token`` on a 401, retries once with a new one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests
from azure.core import PipelineClient
from azure.core.credentials import TokenCredential
from azure.core.exceptions import ServiceResponseError, ServiceResponseTimeoutError
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import (
    BearerTokenCredentialPolicy,
    HTTPPolicy,
    RequestIdPolicy,
    RetryPolicy,
    UserAgentPolicy,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest
from requests.adapters import HTTPAdapter

log = logging.getLogger(__name__)

LEGACY_API_VERSION = "2024-02-02-preview"
LEGACY_API_VERSIONS = ("2024-02-02-preview", "2024-08-02-preview")
RETRY_AFTER_CAP_S = 60.0
BACKOFF_FACTOR_S = 0.5
BACKOFF_CAP_S = 8
# A response that says the request may have run: a dropped connection after sending, or these.
MAYBE_EXECUTED_STATUSES = frozenset({500, 502, 504})


@dataclass(frozen=True)
class ExecuteMode:
    """One request shape: route, body wrapping, api-version."""

    route: str  # "executions" | "code/execute"
    wrapped: bool
    api_version: str

    @property
    def legacy(self) -> bool:
        return self.route == "code/execute"

    def __str__(self) -> str:
        return f"{self.route}/{'wrapped' if self.wrapped else 'flat'}@{self.api_version}"


def execute_modes(api_version: str) -> list[ExecuteMode]:
    if api_version in LEGACY_API_VERSIONS:
        return [ExecuteMode("code/execute", True, api_version)]
    return [
        ExecuteMode("executions", False, api_version),
        ExecuteMode("executions", True, api_version),
        ExecuteMode("code/execute", True, LEGACY_API_VERSION),
    ]


def error_code(response: Any) -> str:
    """The Azure error code of a response (x-ms-error-code, else the JSON body's error.code)."""
    code = response.headers.get("x-ms-error-code") or ""
    if code:
        return code
    try:
        body = response.json()
    except (ValueError, TypeError):
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("code") or "") if isinstance(error, dict) else ""


class SessionsRetryPolicy(RetryPolicy):
    """Per-call options: ``maybe_executed_retries`` (None: no such limit), ``deadline`` (monotonic;
    no retry whose wait would pass it) and ``on_retry`` (called with the kind of each retry)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(retry_on_status_codes=[403], retry_backoff_factor=BACKOFF_FACTOR_S,
                         retry_backoff_max=BACKOFF_CAP_S, **kwargs)

    def configure_retries(self, options: dict[str, Any]) -> dict[str, Any]:
        settings = super().configure_retries(options)
        settings["maybe_executed_left"] = options.pop("maybe_executed_retries", None)
        settings["deadline"] = options.pop("deadline", None)
        settings["on_retry"] = options.pop("on_retry", None)
        return settings

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse) -> bool:
        if response.http_response.status_code == 404:
            return False
        return super().is_retry(settings, response)

    def get_retry_after(self, response: PipelineResponse) -> float | None:
        retry_after = super().get_retry_after(response)
        return None if retry_after is None else min(retry_after, RETRY_AFTER_CAP_S)

    def increment(self, settings: dict[str, Any], response: Any = None, error: Exception | None = None) -> bool:
        status = response.http_response.status_code if isinstance(response, PipelineResponse) else None
        kind = str(status) if status else "connection"
        if isinstance(error, ServiceResponseTimeoutError):
            kind = "timeout"
        left = settings["maybe_executed_left"]
        if left is not None and (isinstance(error, ServiceResponseError) or status in MAYBE_EXECUTED_STATUSES):
            if isinstance(error, ServiceResponseTimeoutError) or left <= 0:
                return False  # it may be running still, or ran: never twice more
            settings["maybe_executed_left"] = left - 1
        if not super().increment(settings, response=response, error=error):
            return False
        deadline = settings["deadline"]
        if deadline is not None:
            wait = (self.get_retry_after(response) if status else None) or self.get_backoff_time(settings)
            if time.monotonic() + wait > deadline:
                return False
        on_retry: Callable[[str], None] | None = settings["on_retry"]
        if on_retry is not None:
            on_retry(kind)
        log.info("%s %s: %s; retrying", getattr(response, "http_request", None) and response.http_request.method,
                 _path(response), kind)
        return True


def _path(response: Any) -> str:
    request = getattr(response, "http_request", None)
    return request.url.split("?", 1)[0].rsplit("/", 1)[-1] if request is not None else "?"


class RequestShapePolicy(HTTPPolicy):
    """Per-call option ``execute_fields=(identifier, fields)`` marks an execution; the policy sends
    it in the remembered shape and moves to the next shape on SessionPropertiesMissing."""

    def __init__(self, endpoint: str, api_version: str) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.modes = execute_modes(api_version)
        self._index = 0
        self._lock = threading.Lock()

    @property
    def mode(self) -> ExecuteMode:
        return self.modes[self._index]

    def request_for(self, identifier: str, fields: dict[str, Any], mode: ExecuteMode | None = None) -> HttpRequest:
        mode = mode or self.mode
        query = urlencode({"api-version": mode.api_version, "identifier": identifier})
        body = {"properties": fields} if mode.wrapped else fields
        return HttpRequest("POST", f"{self.endpoint}/{mode.route}?{query}", json=body)

    def send(self, request: PipelineRequest) -> PipelineResponse:
        marked = request.context.options.pop("execute_fields", None)
        if marked is not None:
            request.context["execute_fields"] = marked  # retries pass through here again
        marked = request.context.get("execute_fields")
        if marked is None:
            return self.next.send(request)
        identifier, fields = marked
        index = self._index
        request.http_request = self.request_for(identifier, fields, self.modes[index])
        while True:
            response = self.next.send(request)
            if (response.http_response.status_code == 400 and index + 1 < len(self.modes)
                    and error_code(response.http_response) == "SessionPropertiesMissing"):
                index += 1
                log.warning("execution body rejected (SessionPropertiesMissing); trying %s", self.modes[index])
                request.http_request = self.request_for(identifier, fields, self.modes[index])
                continue
            if index != self._index and response.http_response.status_code < 400:
                with self._lock:
                    self._index = index
                log.warning("session pool accepts %s; using it from now on", self.modes[index])
            return response


class SessionsAuthPolicy(BearerTokenCredentialPolicy):
    def __init__(self, credential: TokenCredential, scope: str) -> None:
        super().__init__(credential, scope)
        self.scope = scope

    def on_challenge(self, request: PipelineRequest, response: PipelineResponse) -> bool:
        if super().on_challenge(request, response):
            return True
        # An expired or revoked token: once more with a new one (the 401 dropped the cached token).
        challenge = response.http_response.headers.get("WWW-Authenticate", "")
        if "invalid_token" in challenge and not request.context.get("reauthorized"):
            request.context["reauthorized"] = True
            self.authorize_request(request, self.scope)
            return True
        return False


def build_pipeline(endpoint: str, credential: TokenCredential, *, scope: str, api_version: str,
                   pool_size: int) -> tuple[PipelineClient, RequestShapePolicy, requests.Session]:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(pool_size, 4), max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    shape = RequestShapePolicy(endpoint, api_version)
    policies = [
        RequestIdPolicy(), UserAgentPolicy(base_user_agent="piston-sessions-backend"),
        SessionsRetryPolicy(), shape, SessionsAuthPolicy(credential, scope),
    ]
    transport = RequestsTransport(session=session, session_owner=False)
    return PipelineClient(endpoint, policies=policies, transport=transport), shape, session
