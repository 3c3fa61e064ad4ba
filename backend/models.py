"""Plain data passed between the API, the service and the executors.

A failing submission is data (``StageResult.status``); a failing executor is an
exception from ``backend.errors``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """Piston's stage status letters (isolate's meta plus OL/EL)."""

    RUNTIME_ERROR = "RE"
    SIGNALED = "SG"
    TIMEOUT = "TO"
    STDOUT_LIMIT = "OL"
    STDERR_LIMIT = "EL"
    INTERNAL = "XX"


@dataclass(frozen=True)
class Limits:
    """Limits of one stage (compile or run). Times in ms, sizes in bytes, -1 = unlimited memory."""

    timeout_ms: int
    cpu_time_ms: int
    memory_bytes: int
    output_max_size: int
    max_processes: int
    max_open_files: int
    max_file_size: int


@dataclass(frozen=True)
class SourceFile:
    """One submitted file, already decoded. ``is_source`` is Piston's "utf8 encoded" flag."""

    name: str
    content: bytes
    is_source: bool = True


@dataclass(frozen=True)
class Program:
    """What is compiled once: the runtime, its files and the compile limits."""

    language: str
    version: str
    files: tuple[SourceFile, ...]
    compile_limits: Limits


@dataclass(frozen=True)
class RunSpec:
    """One run of a compiled program."""

    stdin: str
    args: tuple[str, ...]
    limits: Limits


@dataclass(frozen=True)
class Comparison:
    """How the judge compares output (see backend/compare.py)."""

    mode: str = "lines"
    abs_tol: float = 1e-6
    rel_tol: float = 1e-6

    def matches(self, got: str, want: str) -> bool:
        from backend.compare import outputs_match

        return outputs_match(got, want, self.mode, abs_tol=self.abs_tol, rel_tol=self.rel_tol)


@dataclass
class StageResult:
    """One stage's outcome, in Piston's field names.

    ``memory_exceeded`` is not part of Piston's answer: it lets the judge tell a
    memory-limit kill apart from other SIGKILLs.
    """

    stdout: str = ""
    stderr: str = ""
    output: str = ""
    code: int | None = None
    signal: str | None = None
    message: str | None = None
    status: Status | None = None
    memory: int | None = None
    cpu_time: int | None = None
    wall_time: int | None = None
    memory_exceeded: bool = False
    # A compile stage answered from the compile cache: the figures and output are those of the
    # compile that filled it. Sent as ``"cached": true`` only then (Piston has no such field).
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.status is None and self.code == 0

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "stdout": self.stdout,
            "stderr": self.stderr,
            "output": self.output,
            "code": self.code,
            "signal": self.signal,
            "message": self.message,
            "status": self.status.value if self.status else None,
            "memory": self.memory,
            "cpu_time": self.cpu_time,
            "wall_time": self.wall_time,
        }
        if self.cached:
            body["cached"] = True
        return body

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StageResult:
        status = data.get("status")
        return cls(
            stdout=data.get("stdout") or "",
            stderr=data.get("stderr") or "",
            output=data.get("output") or "",
            code=data.get("code"),
            signal=data.get("signal"),
            message=data.get("message"),
            status=Status(status) if status else None,
            memory=data.get("memory"),
            cpu_time=data.get("cpu_time"),
            wall_time=data.get("wall_time"),
            memory_exceeded=bool(data.get("memory_exceeded", False)),
            cached=data.get("cached") is True,
        )


@dataclass
class ExecutionResult:
    """Piston's /execute answer. ``run`` is ``compile`` when compilation failed."""

    language: str
    version: str
    run: StageResult
    compile: StageResult | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.compile is not None:
            body["compile"] = self.compile.to_json()
        body["run"] = self.run.to_json()
        body["language"] = self.language
        body["version"] = self.version
        return body
