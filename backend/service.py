"""The execute flow: admission, then compile once and run, on the chosen executor."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from backend.executors.base import Executor
from backend.executors.errors import ExecutorUnavailable, Overloaded, UpstreamError
from backend.interactive import InteractiveSession
from backend.judge import JudgeRequest, judge_response
from backend.models import ExecutionResult, RunSpec
from backend.runtimes import RuntimeRegistry
from backend.schema import ExecuteRequest

log = logging.getLogger(__name__)
T = TypeVar("T")


class Admission:
    """A bounded queue: at most ``capacity`` jobs admitted (running or waiting); the rest get 503 at once."""

    def __init__(self, running: int, queued: int) -> None:
        self.capacity = running + queued
        self._inflight = 0
        self._lock = threading.Lock()

    @property
    def inflight(self) -> int:
        return self._inflight

    @contextmanager
    def admit(self) -> Iterator[None]:
        with self._lock:
            if self._inflight >= self.capacity:
                raise Overloaded(f"the job queue is full ({self.capacity} jobs admitted); try again later")
            self._inflight += 1
        try:
            yield
        finally:
            with self._lock:
                self._inflight -= 1


class ExecutionService:
    def __init__(self, executor: Executor, admission: Admission, fallback: Executor | None = None,
                 *, display_bytes: int = 1024) -> None:
        self.executor = executor
        self.display_bytes = display_bytes
        self.fallback = fallback
        self.admission = admission
        self._registry: RuntimeRegistry | None = None

    @property
    def registry(self) -> RuntimeRegistry:
        """Built on first use: a session pool knows its runtimes only once its probe answered, and
        until then raises ExecutorUnavailable (503) rather than guess; asked again next time."""
        if self._registry is None:
            self._registry = RuntimeRegistry(self.executor.runtimes())
        return self._registry

    def execute(self, request: ExecuteRequest) -> ExecutionResult:
        result, note = self._with_fallback(self._execute_on, request)
        if note:
            result.notes.append(note)
        return result

    def interact(self, request: ExecuteRequest, session: InteractiveSession) -> ExecutionResult:
        """/api/v2/connect: the same admission as /execute; no fallback (it would change where code runs mid-protocol)."""
        with self.admission.admit():
            return self.executor.run_interactive(request.program, request.runtime, request.run, session)

    def judge(self, request: JudgeRequest) -> tuple[dict[str, Any], str | None]:
        """The judge answer (see backend/judge.py) and a fallback note, if any."""
        return self._with_fallback(self._judge_on, request)

    def _with_fallback(self, work: Callable[[Executor, Any], T], request: Any) -> tuple[T, str | None]:
        with self.admission.admit():
            try:
                return work(self.executor, request), None
            except (ExecutorUnavailable, UpstreamError) as exc:
                if self.fallback is None:
                    raise
                log.warning("executor %s failed (%s); running on the local fallback", self.executor.name, exc.message)
                note = f"ran on the local executor: {self.executor.name} failed: {exc.message}"
                return work(self.fallback, request), note

    def _judge_on(self, executor: Executor, request: JudgeRequest) -> dict[str, Any]:
        specs = [RunSpec(case.stdin, request.args, request.run_limits) for case in request.cases]
        with executor.open(request.program, request.runtime) as box:
            judged = box.run_and_match(specs, [case.expected for case in request.cases], request.comparison,
                                    stop_on_first_failure=request.stop_on_first_failure)
        return judge_response(request, box.compile, judged, self.display_bytes)

    @staticmethod
    def _execute_on(executor: Executor, request: ExecuteRequest) -> ExecutionResult:
        with executor.open(request.program, request.runtime) as box:
            # Piston: a failed compile is also reported as the run stage (run_many returns it).
            run = box.run(request.run)
        return ExecutionResult(request.runtime.language, request.runtime.version, run, box.compile)
