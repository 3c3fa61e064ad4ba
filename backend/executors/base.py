"""The executor interface shared by the local sandbox and the Azure session pool.

Its verbs follow isolate's: ``open`` a box for a program, ``run_many`` it on any
number of inputs, and leave the context to clean up (idempotent). The program is
compiled once per box, before its first run; an executor may do the compile and
all runs in one round trip (the session pool does). When the compile fails, every
run's result is the compile result, as Piston reports it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from backend.executors.errors import ExecutorUnavailable, InteractiveUnsupported
from backend.models import Comparison, ExecutionResult, Program, RunSpec, StageResult
from backend.runtimes import Runtime

if TYPE_CHECKING:
    from backend.interactive import InteractiveSession


class Box(ABC):
    """A program in its box. ``compile`` is None for interpreted languages or before the first run."""

    compile: StageResult | None = None

    @property
    def compiled_ok(self) -> bool:
        return self.compile is None or self.compile.ok

    @abstractmethod
    def run_many(self, specs: Sequence[RunSpec]) -> list[StageResult]:
        """Compile if not done yet, then run each spec; one result per spec."""

    def run(self, spec: RunSpec) -> StageResult:
        return self.run_many([spec])[0]

    def run_and_match(self, specs: Sequence[RunSpec], expected: Sequence[str], comparison: Comparison,
                      *, stop_on_first_failure: bool) -> list[tuple[StageResult, bool]]:
        """Run and compare each case: (result, output matched). Stops early on request.

        Executors that can compare where the program ran (the session pool) override this
        so that only compact results travel back.
        """
        if not stop_on_first_failure:
            results = self.run_many(specs)
            return [(r, r.ok and comparison.matches(r.stdout, e)) for r, e in zip(results, expected, strict=True)]
        matched_runs: list[tuple[StageResult, bool]] = []
        for spec, want in zip(specs, expected, strict=True):
            result = self.run(spec)
            matched = result.ok and comparison.matches(result.stdout, want)
            matched_runs.append((result, matched))
            if not matched:
                break
        return matched_runs


class Executor(ABC):
    """Runs programs. Built once per worker from the settings; thread-safe."""

    name: str = "executor"

    @abstractmethod
    def runtimes(self) -> list[Runtime]:
        """The runtimes really usable through this executor."""

    @abstractmethod
    def open(self, program: Program, runtime: Runtime) -> AbstractContextManager[Box]:
        """Reserve capacity (a sandbox slot, a session) for the program; release it on exit."""

    def run_interactive(self, program: Program, runtime: Runtime, spec: RunSpec,
                        session: InteractiveSession) -> ExecutionResult:
        """/api/v2/connect: run with stdin streamed in and output streamed out through ``session``."""
        raise InteractiveUnsupported(
            f"interactive sessions (/api/v2/connect) are not available on the {self.name} executor; "
            "use POST /api/v2/execute"
        )

    def health(self) -> dict[str, Any]:
        return {"executor": self.name}

    def ready(self) -> tuple[bool, str]:
        return True, "ok"

    def stats(self) -> dict[str, Any]:
        """Figures for /metrics (``piston_executor_<name>``): a number, or {label: number}."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release everything the executor holds (sessions, slots)."""


class Fallback(Executor):
    """The local executor standing in for a session pool (FALLBACK_TO_LOCAL).

    Requests are validated against the pool's runtimes, whose binaries are the session's (or
    none, for a custom container): each run here uses this machine's runtime of the same
    language, the same version when it has it.
    """

    def __init__(self, local: Executor) -> None:
        self.local = local
        self.name = local.name

    def runtimes(self) -> list[Runtime]:
        return self.local.runtimes()

    def open(self, program: Program, runtime: Runtime) -> AbstractContextManager[Box]:
        return self.local.open(program, self._here(runtime))

    def _here(self, runtime: Runtime) -> Runtime:
        same = [rt for rt in self.local.runtimes() if rt.language == runtime.language]
        exact = [rt for rt in same if rt.version == runtime.version]
        if not (exact or same):
            raise ExecutorUnavailable(f"the local fallback has no {runtime.language} runtime")
        return (exact or same)[0]

    def health(self) -> dict[str, Any]:
        return self.local.health()

    def ready(self) -> tuple[bool, str]:
        return self.local.ready()

    def stats(self) -> dict[str, Any]:
        return self.local.stats()

    def close(self) -> None:
        self.local.close()
