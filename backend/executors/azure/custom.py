"""CustomContainerExecutor: each session is this project's own image in ``SERVICE_ROLE=session``.

[DOC sessions-custom-container.md] "anything in the path following the pool management endpoint
is forwarded to the session's container", routed by ``?identifier=``. The session speaks Piston
itself, so a run is one ``POST {endpoint}/api/v2/execute`` (or ``/api/v2/judge``) rebuilt from the
validated request with every limit spelled out, and the answer is the session's local executor's,
field for field. Runs are separated inside the session (a fresh sandbox and uid per run), so
sessions are reused warm. Leases, retries, errors, readiness and metrics are the connection's.
"""

from __future__ import annotations

import base64
import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from backend.config import PoolType, Settings
from backend.executors.azure.client import SessionsClient, SessionsPoolFullError
from backend.executors.azure.connection import Holder, PoolConnection, PoolExecutor
from backend.executors.azure.leases import Lease
from backend.executors.base import Box
from backend.executors.errors import ExecutorUnavailable, UpstreamError
from backend.models import Comparison, Limits, Program, RunSpec, StageResult
from backend.runtimes import LANGUAGES, Runtime

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 60.0  # a new session starts the service and probes its toolchains
OVERHEAD_S = 15.0  # session start-up, sandbox set-up and cleanup on top of the stages' own limits


class CustomContainerExecutor(PoolExecutor):
    name = "azure-custom-container"

    def __init__(self, settings: Settings, connection: PoolConnection | None = None) -> None:
        self.session_health: dict[str, Any] | None = None
        super().__init__(settings, connection or PoolConnection(settings, PoolType.CUSTOM_CONTAINER))

    def _probe(self) -> list[Runtime]:
        """A session's own /api/v2/runtimes (and its /health, for the sandbox mode it got)."""
        def ask(lease: Lease) -> list[Any]:
            try:
                listed = self.client().forward("GET", "api/v2/runtimes", lease.identifier,
                                               read_timeout=PROBE_TIMEOUT_S, fresh=lease.use())
            except SessionsPoolFullError as exc:
                self.connection.check_validation(exc)
                raise
            health = self.client().forward("GET", "health", lease.identifier, read_timeout=PROBE_TIMEOUT_S)
            self.session_health = health if isinstance(health, dict) else None
            if not isinstance(listed, list):
                raise UpstreamError("the session's /api/v2/runtimes is not a list")
            return listed

        listed = self.connection.round_trip(ask)
        found = [_runtime(item) for item in listed if isinstance(item, dict)]
        log.info("custom-container runtimes: %s", ", ".join(f"{r.language}-{r.version}" for r in found) or "none")
        return found

    @contextlib.contextmanager
    def open(self, program: Program, runtime: Runtime) -> Iterator[Box]:
        self.check_open()
        if runtime not in self.probed.get():
            raise ExecutorUnavailable(f"the session pool has no {runtime.language}-{runtime.version} runtime")
        box = ContainerBox(self.connection, self.connection.lease(), program, runtime)
        try:
            yield box
        finally:
            self.connection.finish(box.lease, keep=box.healthy)

    def health(self) -> dict[str, Any]:
        sandbox = (self.session_health or {}).get("sandbox") or {}
        return {
            "executor": self.name,
            "sessions": {
                **self.connection.health(),
                "runtimes_probed": self.probed.known,
                "probe_error": self.probed.failure,
                "session_role": (self.session_health or {}).get("role"),
                "session_sandbox_mode": sandbox.get("mode") if isinstance(sandbox, dict) else None,
            },
        }

    def _reachable(self, client: SessionsClient) -> str:
        status = client.ping()
        if status >= 500:
            raise ExecutorUnavailable(f"the session pool answered {status} at its endpoint")
        return f"session pool reachable (its endpoint answered {status})"

class ContainerBox(Box, Holder):
    def __init__(self, connection: PoolConnection, lease: Lease, program: Program, runtime: Runtime) -> None:
        Holder.__init__(self, lease)
        self.connection = connection
        self.program = program
        self.runtime = runtime

    def run_many(self, specs: Sequence[RunSpec]) -> list[StageResult]:
        results = []
        for spec in specs:
            body = {**self._program_body(spec.limits), "stdin": spec.stdin, "args": list(spec.args),
                    **_stage_limits("run", spec.limits)}
            answer = self._post("api/v2/execute", body, budget_ms=self.program.compile_limits.timeout_ms
                                + spec.limits.timeout_ms)
            try:
                if answer.get("compile") is not None:
                    self.compile = StageResult.from_json(answer["compile"])
                results.append(StageResult.from_json(answer["run"]))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise UpstreamError(f"the session's /api/v2/execute answer is malformed: {exc}") from exc
        return results

    def run_and_match(self, specs: Sequence[RunSpec], expected: Sequence[str], comparison: Comparison,
                      *, stop_on_first_failure: bool) -> list[tuple[StageResult, bool]]:
        """Matched (and judged) in the session; its verdicts are carried back as (stage, matched) for the backend's own."""
        if not specs:
            return []
        first = specs[0]
        body = {
            **self._program_body(first.limits), "args": list(first.args),
            **_stage_limits("run", first.limits), "output_max_size": first.limits.output_max_size,
            "compare": comparison.mode, "float_abs_tolerance": comparison.abs_tol,
            "float_rel_tolerance": comparison.rel_tol, "stop_on_first_failure": stop_on_first_failure,
            "testcases": [{"id": str(i), "stdin": s.stdin, "expected_output": e}
                          for i, (s, e) in enumerate(zip(specs, expected, strict=True))],
        }
        budget_ms = self.program.compile_limits.timeout_ms + sum(s.limits.timeout_ms for s in specs)
        answer = self._post("api/v2/judge", body, budget_ms=budget_ms)
        try:
            if answer.get("compile") is not None:
                self.compile = StageResult.from_json(answer["compile"])
            return [_matched_stage(case) for case in answer["testcases"] if case.get("verdict") != "SKIPPED"]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UpstreamError(f"the session's /api/v2/judge answer is malformed: {exc}") from exc

    def _program_body(self, run_limits: Limits) -> dict[str, Any]:
        files = []
        for f in self.program.files:
            if f.is_source:
                files.append({"name": f.name, "content": f.content.decode("utf-8", "surrogatepass")})
            else:
                files.append({"name": f.name, "content": base64.b64encode(f.content).decode(), "encoding": "base64"})
        return {"language": self.runtime.language, "version": self.runtime.version, "files": files,
                **_stage_limits("compile", self.program.compile_limits)}

    def _post(self, path: str, body: dict[str, Any], *, budget_ms: int) -> dict[str, Any]:
        def call(lease: Lease) -> dict[str, Any]:
            client = self.connection.client()
            fresh = lease.use()
            read_timeout = client.execute_read_timeout(int(budget_ms / 1000 + OVERHEAD_S))
            answer = client.forward("POST", path, lease.identifier, json=body, read_timeout=read_timeout,
                                    deadline=self.connection.queue_deadline(), fresh=fresh)
            if not isinstance(answer, dict):
                raise UpstreamError(f"the session's /{path} answer is not a JSON object")
            return answer

        return self.connection.round_trip(call, self)


def _stage_limits(stage: str, limits: Limits) -> dict[str, int]:
    # Spelled out, so the session applies exactly what this service validated (its defaults may differ).
    return {f"{stage}_timeout": limits.timeout_ms, f"{stage}_cpu_time": limits.cpu_time_ms,
            f"{stage}_memory_limit": limits.memory_bytes}


def _matched_stage(case: dict[str, Any]) -> tuple[StageResult, bool]:
    """The session's case as a stage: the verdicts agree because both sides run backend/judge.py on the
    same stage fields; only the memory-limit kill, which the case JSON reports as its verdict, is carried."""
    stage = StageResult.from_json({**case, "output": ""})
    stage.memory_exceeded = case.get("verdict") == "MLE"
    return stage, case.get("verdict") == "AC"


def _runtime(item: dict[str, Any]) -> Runtime:
    specs = {spec.language: spec for spec in LANGUAGES}
    language = str(item.get("language") or "")
    spec = specs.get(language)
    return Runtime(language=language, version=str(item.get("version") or ""),
                   aliases=tuple(str(a) for a in item.get("aliases") or ()),
                   provider=item.get("runtime") or None, compiled=bool(spec and spec.compiled))
