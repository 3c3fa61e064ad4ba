"""SessionPoolExecutor: every submission runs in an Azure Container Apps dynamic session.

``open`` leases a session identifier (a slot of this worker), ``run_many`` sends one
harness request (compile once + every run) in one round trip and maps the answer to
Piston's stage fields, exactly as the local executor would report them. Failures of the
pool become ExecutorUnavailable (503), UpstreamError (502), UpstreamTimeout (504) or,
for a full pool after the queue timeout, Overloaded (503); the service may then fall
back to the local executor.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from backend.config import Settings
from backend.errors import ExecutorUnavailable, Overloaded, UpstreamError, UpstreamTimeout
from backend.executors.azure import harness
from backend.executors.azure.client import (
    SessionsAuthError,
    SessionsClient,
    SessionsError,
    SessionsPoolFullError,
    SessionsRequestError,
    SessionsResponseError,
    SessionsThrottledError,
    SessionsTimeoutError,
)
from backend.executors.azure.credentials import TokenProvider, TokenUnavailable, build_credential
from backend.executors.azure.endpoint import EndpointError, resolve_endpoint
from backend.executors.azure.leases import Lease, LeasePool
from backend.executors.base import Box, Executor
from backend.models import Comparison, Program, RunSpec, StageResult
from backend.runtimes import Runtime

log = logging.getLogger(__name__)

MAX_EXECUTION_S = 220  # [DOC] the service's cap per execution
READY_CACHE_S = 5.0
PROBE_ATTEMPTS = 2


def fingerprint(identifier: str) -> str:
    """A short, irreversible tag of an identifier for logs (identifiers themselves are secrets)."""
    return hashlib.sha256(identifier.encode()).hexdigest()[:10]


class SessionPoolExecutor(Executor):
    name = "azure-sessions"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._credential = build_credential(settings)
        self.tokens = TokenProvider(self._credential, settings.sessions_token_scope)
        self._endpoint_error: str | None = None
        self._client: SessionsClient | None = None
        self._client_lock = threading.Lock()
        self.leases = LeasePool(
            strategy=settings.session_strategy, cooldown_s=settings.session_cooldown_seconds,
            capacity=settings.max_concurrent_jobs,
        )
        self._runtimes: list[Runtime] | None = None
        self._probe_lock = threading.Lock()
        self._ready: tuple[float, bool, str] | None = None
        self._janitor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="session-cleanup")
        self._closed = False
        with contextlib.suppress(ExecutorUnavailable):
            self.client()  # resolve the endpoint once at start; retried lazily if ARM is down

    # ------------------------------------------------------------ wiring

    def client(self) -> SessionsClient:
        if self._client is not None:
            return self._client
        with self._client_lock:
            if self._client is None:
                try:
                    endpoint = resolve_endpoint(self.settings, self._credential)
                except EndpointError as exc:
                    self._endpoint_error = str(exc)
                    raise ExecutorUnavailable(f"session pool endpoint unavailable: {exc}") from exc
                self._endpoint_error = None
                self._client = SessionsClient(
                    endpoint, self.tokens, api_version=self.settings.sessions_api_version,
                    request_timeout=self.settings.session_request_timeout,
                    max_retries=self.settings.session_max_retries,
                    pool_size=self.settings.max_concurrent_jobs + 4,
                )
            return self._client

    # ------------------------------------------------------------ Executor

    def runtimes(self) -> list[Runtime]:
        """What the pool really offers, probed once through the harness and cached for the process."""
        if self._runtimes is not None:
            return list(self._runtimes)
        with self._probe_lock:
            if self._runtimes is None:
                for attempt in range(PROBE_ATTEMPTS):
                    try:
                        self._runtimes = self._probe()
                        break
                    except (ExecutorUnavailable, UpstreamError, Overloaded) as exc:
                        log.warning("probing the session pool's runtimes failed (%d/%d): %s",
                                    attempt + 1, PROBE_ATTEMPTS, exc.message)
                        if attempt + 1 < PROBE_ATTEMPTS:
                            time.sleep(1)
                else:
                    # The registry is built from this list once: without it every request would be
                    # refused. Offer what this image has; open() re-probes and refuses what the pool lacks.
                    from backend.executors.local.toolchains import discover_runtimes

                    log.error("session pool unreachable at start; advertising this image's runtimes until it answers")
                    return discover_runtimes()
        return list(self._runtimes or [])

    def _probe(self) -> list[Runtime]:
        request = harness.probe_request()
        result = self._round_trip(request, budget=60)
        found = harness.runtimes_from_probe(result)
        log.info("session pool runtimes: %s", ", ".join(f"{rt.language}-{rt.version}" for rt in found) or "none")
        return found

    def _session_runtime(self, runtime: Runtime) -> Runtime:
        """The pool's own runtime for ``runtime`` (binaries as found in the session)."""
        if self._runtimes is None:
            with self._probe_lock:
                if self._runtimes is None:
                    self._runtimes = self._probe()
        for rt in self._runtimes:
            if rt.language == runtime.language and rt.version == runtime.version:
                return rt
        for rt in self._runtimes:
            if rt.language == runtime.language:
                return rt
        raise ExecutorUnavailable(f"the session pool has no {runtime.language} runtime")

    @contextlib.contextmanager
    def open(self, program: Program, runtime: Runtime) -> Iterator[Box]:
        if self._closed:
            raise ExecutorUnavailable("the session pool executor is shut down")
        self.client()
        session_runtime = self._session_runtime(runtime)
        lease = self.leases.acquire(self.settings.queue_timeout / 1000)
        box = SessionBox(self, lease, program, session_runtime)
        try:
            yield box
        finally:
            self._finish(box.lease, keep=box.healthy)

    def _finish(self, lease: Lease, *, keep: bool) -> None:
        keep = keep and self.leases.strategy == "reuse"
        self.leases.release(lease, keep=keep)
        if not keep and lease.uses:
            # Fresh strategy (or a broken session): delete it so it does not hold a pool slot until cooldown.
            self._delete_later(lease.identifier)

    def _delete_later(self, identifier: str) -> None:
        try:
            self._janitor.submit(self._delete_session, identifier)
        except RuntimeError:  # shutting down: the pool's cooldown will reclaim it
            pass

    def _delete_session(self, identifier: str) -> None:
        try:
            self.client().delete_session(identifier)
        except (SessionsError, ExecutorUnavailable, TokenUnavailable) as exc:
            log.info("deleting session %s failed: %s", fingerprint(identifier), exc)

    def health(self) -> dict[str, Any]:
        client = self._client
        expires_in = self.tokens.expires_in()
        return {
            "executor": self.name,
            "sessions": {
                "endpoint_host": client.host if client else None,
                "endpoint_error": self._endpoint_error,
                "api_version": self.settings.sessions_api_version,
                "execute_mode": str(client.mode) if client else None,
                "strategy": self.leases.strategy,
                "leases": self.leases.stats(),
                "token": {"cached": expires_in is not None,
                          "expires_in": None if expires_in is None else int(expires_in),
                          "fetches": self.tokens.fetches, "last_error": self.tokens.last_error},
                "runtimes_probed": self._runtimes is not None,
            },
        }

    def stats(self) -> dict[str, Any]:
        """For /metrics (piston_executor_*): session leases, upstream retries and faults, token fetches."""
        client = self._client
        return {
            "session_leases": self.leases.stats(),
            "upstream_retries": dict(client.retries) if client else {},
            "upstream_faults": dict(client.faults) if client else {},
            "token_fetches": self.tokens.fetches,
        }

    def ready(self) -> tuple[bool, str]:
        cached = self._ready
        if cached is not None and time.monotonic() - cached[0] < READY_CACHE_S:
            return cached[1], cached[2]
        ok, detail = self._check_ready()
        self._ready = (time.monotonic(), ok, detail)
        return ok, detail

    def _check_ready(self) -> tuple[bool, str]:
        try:
            client = self.client()
            self.tokens.token()
            client.metadata()
        except ExecutorUnavailable as exc:
            return False, exc.message
        except TokenUnavailable as exc:
            return False, str(exc)
        except SessionsResponseError as exc:
            if exc.status < 500 and exc.status not in (401, 403):
                return True, f"session pool reachable (/metadata answered {exc.status})"
            return False, f"session pool answered {exc}"
        except SessionsError as exc:
            return False, f"session pool unreachable: {exc}"
        return True, "session pool reachable"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        client = self._client
        if client is not None and self.leases.strategy == "reuse":
            for lease in self.leases.drain_idle():
                with contextlib.suppress(SessionsError, TokenUnavailable):
                    client.delete_session(lease.identifier, retries=0)
        self._janitor.shutdown(wait=True, cancel_futures=False)
        if client is not None:
            client.close()

    # ------------------------------------------------------------ one round trip

    def _round_trip(self, request: dict[str, Any], *, budget: float, holder: _Holder | None = None) -> dict:
        """Send a harness request into a session and return its result; retries once on a broken session.

        ``holder`` is the box whose lease to use; without one (the probe) a lease is taken here.
        """
        if holder is not None:
            return self._attempt_twice(request, budget, holder)
        holder = _Holder(self.leases.acquire(self.settings.queue_timeout / 1000))
        try:
            return self._attempt_twice(request, budget, holder)
        finally:
            self._finish(holder.lease, keep=holder.healthy)

    def _attempt_twice(self, request: dict[str, Any], budget: float, holder: _Holder) -> dict[str, Any]:
        for attempt in (1, 2):
            try:
                return self._execute(request, budget, holder.lease)
            except harness.HarnessError as exc:
                # The kernel died (a submission can kill it) or answered garbage: never reuse it.
                log.warning("session %s broke (%s)", fingerprint(holder.lease.identifier), exc)
                old, holder.lease = holder.lease, self.leases.replace(holder.lease)
                self._delete_later(old.identifier)
                if attempt == 2:
                    holder.healthy = False
                    raise UpstreamError(f"the session pool returned no usable result: {exc}") from exc
            except BaseException:
                holder.healthy = False
                raise
        raise AssertionError("unreachable")

    def _execute(self, request: dict[str, Any], budget: float, lease: Lease) -> dict[str, Any]:
        client = self.client()
        nonce = request["nonce"]
        request_json = harness.encode(request)
        timeout_s = int(min(MAX_EXECUTION_S, math.ceil(budget)))
        deadline = time.monotonic() + self.settings.queue_timeout / 1000
        lease.uses += 1
        try:
            if len(request_json) > harness.INLINE_INPUT_MAX:
                name = f"piston-in-{nonce}.json"
                client.upload(lease.identifier, name, request_json.encode(), deadline=deadline)
                request_json = harness.encode({"v": harness.PROTOCOL, "nonce": nonce, "input_file": name,
                                               "inline_max": harness.INLINE_RESULT_MAX})
            started = time.monotonic()
            output = client.execute(lease.identifier, harness.render_code(request_json),
                                    timeout_s=max(1, timeout_s), deadline=deadline)
            log.debug("executed on session %s (worker %d, use %d) in %.0f ms", fingerprint(lease.identifier),
                      os.getpid(), lease.uses, (time.monotonic() - started) * 1000)
            reply = harness.parse_reply(output.stdout, nonce)
            if reply.result is not None:
                return reply.result
            assert reply.result_file is not None
            try:
                data = client.download(lease.identifier, reply.result_file)
            except SessionsResponseError as exc:
                if exc.status == 404:  # the session was recycled between the two calls
                    raise harness.HarnessError("the result file vanished from the session") from exc
                raise
            # Not deleted here (a round trip): the next harness run in this session removes it before
            # running anything, and a fresh session is deleted whole.
            return harness.decode_result(data)
        except harness.HarnessError:
            raise
        except TokenUnavailable as exc:
            raise ExecutorUnavailable(str(exc)) from exc
        except SessionsError as exc:
            raise _api_error(exc, client.host, self.settings) from exc


class _Holder:
    """The lease a round trip uses; swapped when the session breaks, judged unhealthy on errors."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.healthy = True


class SessionBox(Box, _Holder):
    def __init__(self, executor: SessionPoolExecutor, lease: Lease, program: Program, runtime: Runtime) -> None:
        _Holder.__init__(self, lease)
        self.executor = executor
        self.program = program
        self.runtime = runtime

    def run_many(self, specs: Sequence[RunSpec]) -> list[StageResult]:
        return [result for result, _ in self._rounds(specs, None, None, stop=False)]

    def judge_many(self, specs: Sequence[RunSpec], expected: Sequence[str], comparison: Comparison,
                   *, stop_on_first_failure: bool) -> list[tuple[StageResult, bool]]:
        """Compared in the session, in the same round trip, so a failing case stops the rest there."""
        return self._rounds(specs, expected, comparison, stop=stop_on_first_failure)

    def _rounds(self, specs: Sequence[RunSpec], expected: Sequence[str] | None, comparison: Comparison | None,
                *, stop: bool) -> list[tuple[StageResult, bool]]:
        judged: list[tuple[StageResult, bool]] = []
        # One execution may last MAX_EXECUTION_S: split long batches. Each chunk compiles again
        # (the box does not outlive an execution); the first chunk's compile result is reported.
        for chunk in _chunks(list(specs)):
            start = len(judged)
            want = None if expected is None else list(expected[start:start + len(chunk)])
            request = harness.build_request(self.program, self.runtime, chunk, expected=want, comparison=comparison,
                                            stop_on_first_failure=stop)
            result = self.executor._round_trip(request, budget=harness.budget_s(request), holder=self)
            try:
                compile_stage, runs = harness.stages(result, len(chunk), at_most=stop)
            except harness.HarnessError as exc:
                self.healthy = False
                raise UpstreamError(f"the session pool returned an unusable result: {exc}") from exc
            if self.compile is None:
                self.compile = compile_stage
            matched = [bool(raw.get("matched")) for raw in result["runs"]]
            judged += zip(runs, matched, strict=True)
            if stop and (len(runs) < len(chunk) or not all(matched)):
                break
        return judged


def _chunks(specs: list[RunSpec]) -> list[list[RunSpec]]:
    limit_ms = (MAX_EXECUTION_S - harness.EXECUTION_OVERHEAD_S) * 1000
    chunks: list[list[RunSpec]] = []
    current: list[RunSpec] = []
    used = 0
    for spec in specs:
        cost = spec.limits.timeout_ms + harness.STAGE_OVERHEAD_MS
        if current and used + cost > limit_ms / 2:  # half: the compile shares the budget
            chunks.append(current)
            current, used = [], 0
        current.append(spec)
        used += cost
    if current or not chunks:
        chunks.append(current)
    return chunks


def _api_error(exc: SessionsError, host: str, settings: Settings) -> Exception:
    if isinstance(exc, SessionsPoolFullError):
        return Overloaded(
            f"the session pool is full ({exc.code}) and no session freed up within "
            f"{settings.queue_timeout / 1000:g} s; try again later"
        )
    if isinstance(exc, SessionsTimeoutError):
        return UpstreamTimeout(f"the session pool did not answer in time: {exc}")
    if isinstance(exc, SessionsRequestError):
        return ExecutorUnavailable(f"the session pool is unreachable: {exc}")
    if isinstance(exc, SessionsThrottledError):
        return ExecutorUnavailable(f"the session pool keeps throttling requests (429 {exc.code}); try again later")
    if isinstance(exc, SessionsAuthError):
        hint = " (does the identity hold the Azure ContainerApps Session Executor role on the pool?)" \
            if exc.status == 403 else ""
        return ExecutorUnavailable(f"the session pool refused our identity: {exc.status} {exc.code}{hint}")
    if isinstance(exc, SessionsResponseError):
        return UpstreamError(f"the session pool at {host} answered {exc.status} {exc.code}: {exc.message[:300]}")
    return UpstreamError(f"session pool error: {exc}")
