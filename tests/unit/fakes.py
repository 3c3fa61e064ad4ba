"""A fake executor for in-process tests: the app factory runs unchanged, only the executor is replaced.

``FakeExecutor`` answers each run with what its ``run`` function returns. ``host_python`` is such a
function: it runs the submitted Python on this machine without a sandbox, so it is only for trusted
test programs. The sandboxes themselves are tested in tests/integration (marked slow).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from backend.executors.base import Box, Executor
from backend.models import Program, RunSpec, StageResult, Status
from backend.runtimes import Runtime

PYTHON = Runtime("python", "3.11.2", ("py", "py3", "python3"), None, False, {"python": sys.executable})
GCC = Runtime("c", "12.2.0", ("gcc",), "gcc", True, {"cc": "/usr/bin/gcc"})

RunFunction = Callable[[Program, RunSpec], StageResult]


def exited(code: int, stdout: str = "", stderr: str = "") -> StageResult:
    """A finished stage in Piston's shape: status RE and its message for a non-zero exit."""
    return StageResult(stdout=stdout, stderr=stderr, output=stdout + stderr, code=code,
                       status=Status.RUNTIME_ERROR if code else None,
                       message=f"Exited with error status {code}" if code else None,
                       memory=1_000_000, cpu_time=10, wall_time=12)


def host_python(program: Program, spec: RunSpec) -> StageResult:
    """Run the program's main file with this interpreter, unsandboxed (trusted test code only)."""
    with tempfile.TemporaryDirectory() as box:
        for source in program.files:
            (Path(box) / source.name).write_bytes(source.content)
        try:
            done = subprocess.run([sys.executable, "-I", program.files[0].name, *spec.args], cwd=box,
                                  input=spec.stdin, capture_output=True, text=True,
                                  timeout=spec.limits.timeout_ms / 1000)
        except subprocess.TimeoutExpired:
            return StageResult(signal="SIGKILL", status=Status.TIMEOUT, message="Time limit exceeded (wall clock)")
    return exited(done.returncode, done.stdout, done.stderr)


class FakeBox(Box):
    def __init__(self, executor: FakeExecutor, program: Program, runtime: Runtime) -> None:
        self.executor = executor
        self.program = program
        if runtime.compiled:
            self.compile = executor.compile_result

    def run_many(self, specs: Sequence[RunSpec]) -> list[StageResult]:
        if not self.compiled_ok:
            assert self.compile is not None
            return [self.compile for _ in specs]
        return [self.executor.run(self.program, spec) for spec in specs]


class FakeExecutor(Executor):
    """Runs nothing itself: ``run`` gives each result. Counts opens; ``gate`` holds runs while it is set."""

    name = "fake"

    def __init__(self, run: RunFunction = host_python, runtimes: Sequence[Runtime] = (PYTHON, GCC),
                 compile_result: StageResult | None = None, error: Exception | None = None) -> None:
        self.run_function = run
        self._runtimes = list(runtimes)
        self.compile_result = compile_result or exited(0)
        self.error = error
        self.opened = 0
        self.gate: threading.Event | None = None
        self.entered = threading.Semaphore(0)

    def runtimes(self) -> list[Runtime]:
        return list(self._runtimes)

    def run(self, program: Program, spec: RunSpec) -> StageResult:
        self.entered.release()
        if self.gate is not None:
            self.gate.wait(30)
        return self.run_function(program, spec)

    @contextmanager
    def open(self, program: Program, runtime: Runtime) -> Iterator[Box]:
        self.opened += 1
        if self.error is not None:
            raise self.error
        yield FakeBox(self, program, runtime)
