"""Judge a sandbox Outcome into Piston's stage fields (isolate's status rules)."""

from __future__ import annotations

import os
import signal

from backend.executors.local.sandbox import Outcome
from backend.models import Limits, StageResult, Status


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def to_stage(outcome: Outcome, limits: Limits, *, peak_memory: int | None, oom_killed: bool) -> StageResult:
    cpu_ms = outcome.cpu_us // 1000 if outcome.cpu_us is not None else None
    stage = StageResult(
        stdout=outcome.stdout.decode("utf-8", "replace"),
        stderr=outcome.stderr.decode("utf-8", "replace"),
        output=outcome.output.decode("utf-8", "replace"),
        memory=peak_memory if peak_memory is not None else (
            outcome.maxrss_kb * 1024 if outcome.maxrss_kb is not None else None
        ),
        cpu_time=cpu_ms,
        wall_time=outcome.wall_us // 1000 if outcome.wall_us is not None else None,
        memory_exceeded=oom_killed,
    )
    over_cpu = cpu_ms is not None and cpu_ms > limits.cpu_time_ms
    if outcome.overflow:
        _killed(stage, Status.STDOUT_LIMIT if outcome.overflow == "stdout" else Status.STDERR_LIMIT,
                f"{outcome.overflow} length exceeded")
    elif outcome.killed_by == "cpu":
        _killed(stage, Status.TIMEOUT, "Time limit exceeded")
    elif outcome.killed_by == "wall" or outcome.timed_out:
        _killed(stage, Status.TIMEOUT, "Time limit exceeded" if over_cpu else "Time limit exceeded (wall clock)")
    elif outcome.wait_status is None:
        stage.status = Status.INTERNAL
        stage.message = outcome.sandbox_error or "sandbox failure"
    elif os.WIFSIGNALED(outcome.wait_status):
        number = os.WTERMSIG(outcome.wait_status)
        if number == signal.SIGXCPU or (number == signal.SIGKILL and over_cpu and not oom_killed):
            _killed(stage, Status.TIMEOUT, "Time limit exceeded")
        else:
            stage.signal = signal_name(number)
            stage.status = Status.SIGNALED
            stage.message = f"Caught fatal signal {number}"
    else:
        code = os.WEXITSTATUS(outcome.wait_status)
        if over_cpu:
            _killed(stage, Status.TIMEOUT, "Time limit exceeded")
        else:
            stage.code = code
            if code != 0:
                stage.status = Status.RUNTIME_ERROR
                stage.message = f"Exited with error status {code}"
    return stage


def _killed(stage: StageResult, status: Status, message: str) -> None:
    # Piston forces SIGKILL on TO/OL/EL so that clients written before `status` keep working.
    stage.status = status
    stage.message = message
    stage.signal = "SIGKILL"
    stage.code = None
