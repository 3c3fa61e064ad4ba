"""The execute flow: admission, then compile once and run, on the chosen executor."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from backend.errors import ExecutorUnavailable, Overloaded, UpstreamError
from backend.executors.base import Executor
from backend.models import ExecutionResult
from backend.runtimes import RuntimeRegistry
from backend.schema import ExecuteRequest

log = logging.getLogger(__name__)


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
    def __init__(self, executor: Executor, admission: Admission, fallback: Executor | None = None) -> None:
        self.executor = executor
        self.fallback = fallback
        self.admission = admission
        self.registry = RuntimeRegistry(executor.runtimes())

    def execute(self, request: ExecuteRequest) -> ExecutionResult:
        with self.admission.admit():
            try:
                return self._execute_on(self.executor, request)
            except (ExecutorUnavailable, UpstreamError) as exc:
                if self.fallback is None:
                    raise
                log.warning("executor %s failed (%s); running on the local fallback", self.executor.name, exc.message)
                result = self._execute_on(self.fallback, request)
                result.notes.append(f"ran on the local executor: {self.executor.name} failed: {exc.message}")
                return result

    @staticmethod
    def _execute_on(executor: Executor, request: ExecuteRequest) -> ExecutionResult:
        with executor.open(request.program, request.runtime) as box:
            # Piston: a failed compile is also reported as the run stage (run_many returns it).
            run = box.run(request.run)
        return ExecutionResult(request.runtime.language, request.runtime.version, run, box.compile)
