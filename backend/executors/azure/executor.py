"""SessionPoolExecutor: every submission runs in a PythonLTS (code interpreter) dynamic session.

``open`` leases a session identifier (a slot of this worker), ``run_many`` sends one
harness request (compile once + every run) in one round trip and maps the answer to
Piston's stage fields, exactly as the local executor would report them. Leases, errors,
readiness and metrics are the connection's (connection.py), shared with custom containers.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

from backend.config import PoolType, SessionStrategy, Settings
from backend.executors.azure import harness
from backend.executors.azure.client import SessionsClient, SessionsPoolFullError, SessionsResponseError
from backend.executors.azure.connection import (
    Holder,
    PoolConnection,
    PoolExecutor,
    SessionBroken,
    fingerprint,
)
from backend.executors.azure.leases import Lease
from backend.executors.base import Box
from backend.executors.errors import ExecutorUnavailable, UpstreamError
from backend.models import Comparison, Program, RunSpec, StageResult
from backend.runtimes import Runtime

log = logging.getLogger(__name__)

MAX_EXECUTION_S = 220  # [DOC] the service's cap per execution
PROBE_BUDGET_S = 60

__all__ = ["SessionBox", "SessionPoolExecutor", "fingerprint"]


class SessionPoolExecutor(PoolExecutor):
    name = "azure-sessions"

    def __init__(self, settings: Settings, connection: PoolConnection | None = None) -> None:
        self.isolation: str | None = None
        super().__init__(settings, connection or PoolConnection(settings, PoolType.PYTHON_LTS))

    def _probe(self) -> list[Runtime]:
        request = harness.probe_request()
        # No wait for a free session: a bare 404 here says the endpoint is wrong, not that the pool is full.
        result = self.connection.round_trip(lambda lease: self._execute(request, PROBE_BUDGET_S, lease,
                                                                        validating=True))
        found = harness.runtimes_from_probe(result)
        self.isolation = harness.isolation_from_probe(result)
        self.connection.set_isolation(self.isolation)
        log.info("session pool runtimes: %s", ", ".join(f"{rt.language}-{rt.version}" for rt in found) or "none")
        return found

    def _session_runtime(self, runtime: Runtime) -> Runtime:
        """The pool's own runtime for ``runtime`` (binaries as found in the session)."""
        runtimes = self.probed.get()
        for rt in runtimes:
            if rt.language == runtime.language and rt.version == runtime.version:
                return rt
        for rt in runtimes:
            if rt.language == runtime.language:
                return rt
        raise ExecutorUnavailable(f"the session pool has no {runtime.language} runtime")

    @contextlib.contextmanager
    def open(self, program: Program, runtime: Runtime) -> Iterator[Box]:
        self.check_open()
        session_runtime = self._session_runtime(runtime)
        box = SessionBox(self, self.connection.lease(), program, session_runtime)
        try:
            yield box
        finally:
            self.connection.finish(box.lease, keep=box.healthy)

    def health(self) -> dict[str, Any]:
        client = self.connection._client
        return {
            "executor": self.name,
            "sessions": {
                **self.connection.health(),
                "api_version": self.settings.sessions_api_version,
                "execute_mode": str(client.mode) if client else None,
                "isolation": self.isolation,
                "runtimes_probed": self.probed.known,
                "probe_error": self.probed.failure,
            },
        }

    def _reachable(self, client: SessionsClient) -> str:
        return _metadata_answers(client)

    # ------------------------------------------------------------ one round trip

    def _round_trip(self, request: dict[str, Any], *, budget: float, holder: Holder) -> dict[str, Any]:
        return self.connection.round_trip(lambda lease: self._execute(request, budget, lease), holder)

    def _execute(self, request: dict[str, Any], budget: float, lease: Lease, *,
                 validating: bool = False) -> dict[str, Any]:
        client = self.client()
        nonce = request["nonce"]
        request_json = harness.encode(request)
        timeout_s = int(min(MAX_EXECUTION_S, math.ceil(budget)))
        deadline = None if validating else self.connection.queue_deadline()
        fresh = lease.use()
        try:
            if len(request_json) > harness.INLINE_INPUT_MAX:
                name = f"piston-in-{nonce}.json"
                client.upload(lease.identifier, name, request_json.encode(), deadline=deadline, fresh=fresh)
                fresh = False
                request_json = harness.encode({"v": harness.PROTOCOL, "nonce": nonce, "input_file": name,
                                               "inline_max": harness.INLINE_RESULT_MAX})
            started = time.monotonic()
            output = client.execute(lease.identifier, harness.render_code(request_json),
                                    timeout_s=max(1, timeout_s), deadline=deadline, fresh=fresh)
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
                    raise SessionBroken("the result file vanished from the session") from exc
                raise
            # Not deleted here (a round trip): the next harness run in this session removes it before
            # running anything, and a fresh session is deleted whole.
            return harness.decode_result(data)
        except harness.HarnessError as exc:
            raise SessionBroken(str(exc)) from exc
        except SessionsPoolFullError as exc:
            if validating:
                self.connection.check_validation(exc)
            raise


def _metadata_answers(client: SessionsClient) -> str:
    try:
        client.metadata()
    except SessionsResponseError as exc:
        if exc.status < 500 and exc.status not in (401, 403):
            return f"session pool reachable (/metadata answered {exc.status})"
        raise
    return "session pool reachable"


class SessionBox(Box, Holder):
    def __init__(self, executor: SessionPoolExecutor, lease: Lease, program: Program, runtime: Runtime) -> None:
        Holder.__init__(self, lease)
        self.executor = executor
        self.program = program
        self.runtime = runtime

    def run_many(self, specs: Sequence[RunSpec]) -> list[StageResult]:
        return [result for result, _ in self._rounds(specs, None, None, stop=False)]

    def run_and_match(self, specs: Sequence[RunSpec], expected: Sequence[str], comparison: Comparison,
                      *, stop_on_first_failure: bool) -> list[tuple[StageResult, bool]]:
        """Compared in the session, in the same round trip, so a failing case stops the rest there."""
        return self._rounds(specs, expected, comparison, stop=stop_on_first_failure)

    def _rounds(self, specs: Sequence[RunSpec], expected: Sequence[str] | None, comparison: Comparison | None,
                *, stop: bool) -> list[tuple[StageResult, bool]]:
        matched_runs: list[tuple[StageResult, bool]] = []
        # One execution may last MAX_EXECUTION_S: split long batches. Each chunk compiles again
        # (the box does not outlive an execution); the first chunk's compile result is reported.
        chunks = _chunks(list(specs))
        # A session that serves nobody after this box: the harness then skips the snapshot it would
        # restore for a later submission (a walk of the kernel's site-packages on the "none" path).
        discarded = self.executor.connection.leases.strategy is SessionStrategy.FRESH
        for index, chunk in enumerate(chunks):
            start = len(matched_runs)
            want = None if expected is None else list(expected[start:start + len(chunk)])
            request = harness.build_request(self.program, self.runtime, chunk, expected=want, comparison=comparison,
                                            stop_on_first_failure=stop,
                                            last_use=discarded and index == len(chunks) - 1)
            result = self.executor._round_trip(request, budget=harness.budget_s(request), holder=self)
            try:
                compile_stage, runs = harness.stages(result, len(chunk), at_most=stop)
            except harness.HarnessError as exc:
                self.healthy = False
                raise UpstreamError(f"the session pool returned an unusable result: {exc}") from exc
            if self.compile is None:
                self.compile = compile_stage
            matched = [bool(raw.get("matched")) for raw in result["runs"]]
            matched_runs += zip(runs, matched, strict=True)
            if stop and (len(runs) < len(chunk) or not all(matched)):
                break
        return matched_runs


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
