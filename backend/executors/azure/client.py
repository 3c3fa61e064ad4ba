"""SessionsClient: the operations of both pool kinds (there is no Python data-plane SDK).

Code interpreters: executions (both API generations), files, session delete, metadata.
Custom containers: any path forwarded to the session, ``.management/stopSession``. Every
call goes through the one azure-core pipeline of ``transport.py`` (token, retries, body
shape); what comes back as an error status becomes a typed ``Sessions*Error`` here, and a
404 is read for what it says (a full pool, a missing pool, a lost session).
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.rest import HttpRequest, HttpResponse

from backend.executors.azure.credentials import TokenUnavailable
from backend.executors.azure.transport import (
    RETRY_AFTER_CAP_S,
    ExecuteMode,
    build_pipeline,
    execute_modes,
)

log = logging.getLogger(__name__)

__all__ = ["ExecuteMode", "SessionsClient", "execute_modes"]
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
READ_MARGIN_S = 15  # the read timeout of an execution exceeds its own timeout by up to this much
FILE_TIMEOUT_S = 60
ALL_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
EXECUTING_OPS = frozenset({"execute", "forward"})  # may run submitted code: retried at most once once sent


class SessionsError(Exception):
    """Base of the client's errors."""


class SessionsRequestError(SessionsError):
    """No response: connection refused, reset or dropped (the request may not have been sent)."""


class SessionsTimeoutError(SessionsError):
    """The request was sent but no response came within the read timeout."""


class SessionsResponseError(SessionsError):
    """The service answered with an error status."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class SessionsThrottledError(SessionsResponseError):
    """429: too many requests."""


class SessionsAuthError(SessionsResponseError):
    """401/403: the token or the identity's role is not accepted."""


class SessionsPoolFullError(SessionsResponseError):
    """404 on a call that allocates a session: the pool is at maxConcurrentSessions.

    ``stated``: the body said so; otherwise it is the documented reading of a bare 404 for
    a new identifier, which a wrong endpoint also gives.
    """

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None,
                 *, stated: bool = False) -> None:
        super().__init__(status, code, message, retry_after)
        self.stated = stated


class SessionsNotFoundError(SessionsResponseError):
    """Any other 404. ``what``: "pool" or "session" when the body says which, else "unknown"."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None,
                 *, what: str = "unknown") -> None:
        super().__init__(status, code, message, retry_after)
        self.what = what


# What a 404 body may say. Guess for the pool-full name (no source shows the live code); the
# other names are the live and emulated codes in the research note (1.6, 1.7).
POOL_FULL_CODES = frozenset({"MaxConcurrentSessionsReached", "SessionPoolFull", "SessionPoolCapacityReached"})
POOL_FULL_MESSAGE = re.compile(r"max(imum)?\b.{0,30}concurrent sessions|pool is full", re.I)
POOL_MISSING_SUFFIXES = ("PoolNotFound", "ResourceNotFound", "ResourceGroupNotFound", "SubscriptionNotFound")
SESSION_MISSING_CODES = frozenset({"SessionWithIdentifierNotFound", "SessionNotFound"})


@dataclass(frozen=True)
class ExecutionOutput:
    succeeded: bool
    stdout: str
    stderr: str
    result: Any


class SessionsClient:
    """The pool's operations (both kinds) over the transport (transport.py); errors are typed."""

    def __init__(
        self,
        endpoint: str,
        credential: TokenCredential,
        *,
        scope: str = "https://dynamicsessions.io/.default",
        api_version: str,
        connect_timeout: float = 5.0,
        request_timeout: float = 240.0,
        max_retries: int = 4,
        pool_size: int = 16,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.host = urlsplit(self.endpoint).netloc
        self.api_version = api_version
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.max_retries = max_retries
        # azure-core sends no bearer token over plain http; only a local stand-in (the emulator) is.
        self._enforce_https = urlsplit(self.endpoint).scheme != "http"
        # For /metrics: retries and final failures by kind ("429", "503", "connection", "timeout"...).
        self.retries: dict[str, int] = {}
        self.faults: dict[str, int] = {}
        self._counts_lock = threading.Lock()
        self._pipeline, self._shape, self._session = build_pipeline(
            self.endpoint, credential, scope=scope, api_version=api_version, pool_size=pool_size)

    @property
    def mode(self) -> ExecuteMode:
        return self._shape.mode

    def close(self) -> None:
        self._pipeline.close()
        self._session.close()

    # ------------------------------------------------------------ operations

    def execute_read_timeout(self, timeout_s: int) -> float:
        """SESSION_REQUEST_TIMEOUT_S caps the wait, but never below the execution's own timeout + 2 s."""
        return max(timeout_s + 2.0, min(timeout_s + READ_MARGIN_S, self.request_timeout))

    def execute(self, identifier: str, code: str, *, timeout_s: int, deadline: float | None = None,
                fresh: bool = False) -> ExecutionOutput:
        """Run ``code`` synchronously in the session; 200/202 bodies of both generations are understood."""
        fields = {"codeInputType": "Inline", "executionType": "Synchronous", "code": code,
                  "timeoutInSeconds": timeout_s}
        response = self._call("POST", self.mode.route, identifier, op="execute", execute_fields=fields,
                              read_timeout=self.execute_read_timeout(timeout_s), deadline=deadline, fresh=fresh)
        legacy = "/code/execute?" in response.request.url
        api_version = self.mode.api_version
        return self._execution_output(response, identifier, legacy, api_version, timeout_s)

    def upload(self, identifier: str, name: str, data: bytes, *, deadline: float | None = None,
               fresh: bool = False) -> None:
        route = "files/upload" if self.mode.legacy else "files"
        self._call("POST", route, identifier, op="upload", api_version=self.mode.api_version,
                   files={"file": (name, data, "application/octet-stream")}, read_timeout=FILE_TIMEOUT_S,
                   deadline=deadline, fresh=fresh)

    def forward(self, method: str, path: str, identifier: str, *, json: Any = None, read_timeout: float,
                deadline: float | None = None, fresh: bool = False) -> Any:
        """A custom-container call: ``path`` after the endpoint, routed by ``identifier``; the JSON answer.

        [DOC sessions-custom-container.md] shows only ``?identifier=`` on these calls: no api-version.
        """
        response = self._call(method, path, identifier, op="forward", api_version="", json=json,
                              read_timeout=read_timeout, deadline=deadline, fresh=fresh)
        return _json_any(response)

    def stop_session(self, identifier: str, *, retries: int = 1) -> None:
        """[DOC sessions-custom-container.md, 2026 revision] custom-container pools have no DELETE /session."""
        self._call("POST", ".management/stopSession", identifier, op="delete_session",
                   api_version="2025-02-02-preview", read_timeout=FILE_TIMEOUT_S, retries=retries)

    def ping(self, *, timeout_s: float = 5.0) -> int:
        """GET the endpoint itself (no identifier: no session is allocated); the status it answers."""
        try:
            return self._call("GET", "", None, op="ping", api_version="", read_timeout=timeout_s, retries=0).status_code
        except SessionsAuthError:
            raise
        except SessionsResponseError as exc:
            return exc.status

    def download(self, identifier: str, name: str) -> bytes:
        route = f"files/content/{quote(name)}" if self.mode.legacy else f"files/{quote(name)}/content"
        return self._call("GET", route, identifier, op="download", api_version=self.mode.api_version,
                          read_timeout=FILE_TIMEOUT_S).content

    def delete_file(self, identifier: str, name: str) -> None:
        if self.mode.legacy:
            return  # the legacy API has no file delete; the harness removes stale result files
        self._call("DELETE", f"files/{quote(name)}", identifier, op="delete_file", read_timeout=FILE_TIMEOUT_S)

    def delete_session(self, identifier: str, *, retries: int = 1) -> None:
        self._call("DELETE", "session", identifier, op="delete_session", read_timeout=FILE_TIMEOUT_S,
                   retries=retries)

    def metadata(self, *, timeout_s: float = 5.0) -> dict[str, Any]:
        response = self._call("GET", "metadata", None, op="metadata", read_timeout=timeout_s, retries=0)
        return response.json() if response.content else {}

    # ------------------------------------------------------------ plumbing

    def _call(
        self, method: str, route: str, identifier: str | None, *, op: str, read_timeout: float,
        api_version: str | None = None, json: Any = None, files: Any = None, deadline: float | None = None,
        retries: int | None = None, fresh: bool = False, execute_fields: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """One operation through the pipeline. ``api_version`` "" sends none; ``fresh``: the identifier is new."""
        params: dict[str, str] = {}
        if api_version != "":
            params["api-version"] = api_version or self.api_version
        if identifier is not None:
            params["identifier"] = identifier
        url = f"{self.endpoint}/{route}" if route else self.endpoint + "/"
        request = HttpRequest(method, url, params=params, json=json, files=files)
        max_retries = self.max_retries if retries is None else retries
        options: dict[str, Any] = {
            "connection_timeout": self.connect_timeout, "read_timeout": read_timeout,
            "retry_total": max_retries, "retry_connect": max_retries, "retry_read": max_retries,
            "retry_status": max_retries, "retry_on_methods": ALL_METHODS, "deadline": deadline,
            "maybe_executed_retries": 1 if op in EXECUTING_OPS else None,
            "on_retry": lambda kind: self._count(self.retries, kind), "enforce_https": self._enforce_https,
        }
        if execute_fields is not None and identifier is not None:
            options["execute_fields"] = (identifier, execute_fields)
        try:
            response = self._pipeline.send_request(request, **options)
        except ClientAuthenticationError as exc:
            raise TokenUnavailable(str(exc.message)) from exc
        except ServiceResponseTimeoutError as exc:
            self._count(self.faults, "timeout")
            raise SessionsTimeoutError(f"{self.host} did not answer within {read_timeout:g} s ({op})") from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            self._count(self.faults, "connection")
            raise SessionsRequestError(f"connection to {self.host} failed: {_reason(exc)}") from exc
        if response.status_code < 400:
            return response
        error = _response_error(response, op, identifier, fresh)
        self._count(self.faults, _kind(error))
        raise error

    def _count(self, counter: dict[str, int], kind: str) -> None:
        with self._counts_lock:
            counter[kind] = counter.get(kind, 0) + 1

    def _execution_output(self, response: HttpResponse, identifier: str, legacy: bool, api_version: str,
                          timeout_s: int) -> ExecutionOutput:
        body = _json(response)
        if legacy:
            props = body.get("properties") or {}
            return ExecutionOutput(props.get("status") == "Success", props.get("stdout") or "",
                                   props.get("stderr") or "", props.get("result"))
        deadline = time.monotonic() + timeout_s + READ_MARGIN_S
        while body.get("status") in ("NotStarted", "Running"):
            # Asynchronous acceptance (202): poll the execution until it is done.
            if time.monotonic() > deadline:
                raise SessionsTimeoutError(f"execution on {self.host} still running after {timeout_s} s")
            time.sleep(0.2)
            body = _json(self._call("GET", f"executions/{quote(str(body.get('id', '')))}", identifier,
                                    op="execution_get", read_timeout=FILE_TIMEOUT_S, api_version=api_version))
        result = body.get("result") or {}
        return ExecutionOutput(body.get("status") == "Succeeded", result.get("stdout") or "",
                               result.get("stderr") or "", result.get("executionResult"))


def _json(response: HttpResponse) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise SessionsResponseError(response.status_code, "InvalidResponse",
                                    f"not JSON: {response.text()[:200]!r}") from exc
    if not isinstance(body, dict):
        raise SessionsResponseError(response.status_code, "InvalidResponse", "not a JSON object")
    return body


def _json_any(response: HttpResponse) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise SessionsResponseError(response.status_code, "InvalidResponse",
                                    f"not JSON: {response.text()[:200]!r}") from exc


def _response_error(response: HttpResponse, op: str, identifier: str | None,
                    fresh: bool = False) -> SessionsResponseError:
    code, message = response.headers.get("x-ms-error-code") or "", ""
    try:
        body = response.json()
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        # Azure's {"error": {code, message}}, or a custom container's own (Piston's {"message"}).
        code, message = error.get("code") or code, error.get("message") or body.get("message") or ""
    except (ValueError, AttributeError):
        message = response.text()[:300]
    if identifier:
        # Messages reach logs and, through the service's errors, clients: never the identifier itself.
        message = message.replace(identifier, "<session>")
    code = code or response.reason or "Error"  # type: ignore[assignment]
    retry_after = _retry_after(response.headers.get("Retry-After"))
    status = response.status_code
    if status == 429:
        return SessionsThrottledError(status, code, message, retry_after)
    if status in (401, 403):
        return SessionsAuthError(status, code, message, retry_after)
    if status == 404:
        return _not_found(code, message, retry_after, allocating=fresh and op in ("execute", "upload", "forward"))
    return SessionsResponseError(status, code, message, retry_after)


def _not_found(code: str, message: str, retry_after: float | None, *, allocating: bool) -> SessionsResponseError:
    """A 404 body that says what it is wins; a bare 404 for a new identifier is the documented full pool
    ([DOC session-pool.md] requests beyond maxConcurrentSessions get 404); one for an identifier that
    has worked is not (its session is gone, or the route is wrong)."""
    if code in POOL_FULL_CODES or POOL_FULL_MESSAGE.search(message):
        return SessionsPoolFullError(404, code, message, retry_after, stated=True)
    if code.endswith(POOL_MISSING_SUFFIXES):
        return SessionsNotFoundError(404, code, message, retry_after, what="pool")
    if code in SESSION_MISSING_CODES:
        return SessionsNotFoundError(404, code, message, retry_after, what="session")
    if allocating:
        return SessionsPoolFullError(404, code, message, retry_after)
    return SessionsNotFoundError(404, code, message, retry_after)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, min(float(value), RETRY_AFTER_CAP_S))
    except ValueError:
        return None  # an HTTP date: rare enough to fall back to our own backoff


def _kind(error: SessionsError) -> str:
    if isinstance(error, SessionsResponseError):
        return str(error.status)
    return "connection"


def backoff(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return retry_after + random.uniform(0, 0.1 * retry_after + 0.05)
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)
    return random.uniform(ceiling / 2, ceiling)  # "equal jitter": spread out, never near zero


def _reason(exc: BaseException) -> str:
    inner: BaseException | None = exc
    while inner is not None and inner.__context__ is not None and len(str(inner)) > 200:
        inner = inner.__context__
    return " ".join(str(inner or exc).split())[:200]
