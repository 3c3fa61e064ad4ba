"""The executor interface shared by the local sandbox and the Azure session pool.

Its verbs follow isolate's: ``open`` a box for a program (write its files and
compile it once), ``run`` it any number of times, and close the box (idempotent
cleanup). ``run_many`` lets an executor run many cases in one round trip.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from backend.models import Program, RunSpec, StageResult
from backend.runtimes import Runtime


class Box(ABC):
    """A compiled program ready to run. ``compile`` is None for interpreted languages."""

    compile: StageResult | None = None

    @property
    def compiled_ok(self) -> bool:
        return self.compile is None or self.compile.ok

    @abstractmethod
    def run(self, spec: RunSpec) -> StageResult: ...

    def run_many(self, specs: Sequence[RunSpec]) -> list[StageResult]:
        return [self.run(spec) for spec in specs]


class Executor(ABC):
    """Runs programs. Built once per worker from the settings; thread-safe."""

    name: str = "executor"

    @abstractmethod
    def runtimes(self) -> list[Runtime]:
        """The runtimes really usable through this executor."""

    @abstractmethod
    def open(self, program: Program, runtime: Runtime) -> AbstractContextManager[Box]:
        """Write the program's files, compile it, and yield a box; clean up on exit."""

    def health(self) -> dict[str, Any]:
        return {"executor": self.name}

    def ready(self) -> tuple[bool, str]:
        return True, "ok"

    def close(self) -> None:
        """Release everything the executor holds (sessions, slots)."""
