"""backend/judge.py's verdict: every row of the README's verdict table, in its order (first match wins)."""

from __future__ import annotations

import math

import pytest

from backend.judge import OUT_OF_MEMORY_MARKERS, JudgeCase, JudgeRequest, judge_response, verdict
from backend.models import Comparison, Limits, Program, StageResult, Status
from tests.unit.fakes import PYTHON

MIB = 1 << 20
LIMITED = Limits(timeout_ms=3000, cpu_time_ms=3000, memory_bytes=64 * MIB, output_max_size=1024,
                 max_processes=64, max_open_files=64, max_file_size=1 << 20)
UNLIMITED = Limits(timeout_ms=3000, cpu_time_ms=3000, memory_bytes=-1, output_max_size=1024,
                   max_processes=64, max_open_files=64, max_file_size=1 << 20)

OK = StageResult(stdout="3\n", code=0, memory=8 * MIB)
EXIT_1 = StageResult(code=1, status=Status.RUNTIME_ERROR, message="Exited with error status 1", memory=8 * MIB)
SEGV = StageResult(signal="SIGSEGV", status=Status.SIGNALED, message="Caught fatal signal 11", memory=8 * MIB)
KILLED_AT_LIMIT = StageResult(signal="SIGKILL", status=Status.SIGNALED, memory=64 * MIB, memory_exceeded=True)
CPU_LIMIT = StageResult(signal="SIGKILL", status=Status.TIMEOUT, message="Time limit exceeded")
WALL_LIMIT = StageResult(signal="SIGKILL", status=Status.TIMEOUT, message="Time limit exceeded (wall clock)")
STDOUT_LIMIT = StageResult(signal="SIGKILL", status=Status.STDOUT_LIMIT, message="stdout length exceeded")
STDERR_LIMIT = StageResult(signal="SIGKILL", status=Status.STDERR_LIMIT, message="stderr length exceeded")
SANDBOX_FAILED = StageResult(status=Status.INTERNAL, message="the sandbox could not start")


def near(fraction: float, base: StageResult = SEGV) -> StageResult:
    return StageResult(signal=base.signal, status=base.status, code=base.code,
                       memory=math.ceil(fraction * LIMITED.memory_bytes))


def said(stderr: str) -> StageResult:
    return StageResult(code=1, status=Status.RUNTIME_ERROR, stderr=stderr, memory=8 * MIB)


@pytest.mark.parametrize(("result", "matched", "limits", "compile_failed", "expected"), [
    # CE: the compile stage failed, whatever the run says
    pytest.param(OK, True, LIMITED, True, "CE", id="CE"),
    pytest.param(SANDBOX_FAILED, False, LIMITED, True, "CE", id="CE-before-IE"),
    # IE: the sandbox or session failed
    pytest.param(SANDBOX_FAILED, False, LIMITED, False, "IE", id="IE"),
    # TLE: status TO, CPU time or wall clock
    pytest.param(CPU_LIMIT, False, LIMITED, False, "TLE", id="TLE-cpu"),
    pytest.param(WALL_LIMIT, False, LIMITED, False, "TLE", id="TLE-wall"),
    pytest.param(StageResult(signal="SIGKILL", status=Status.TIMEOUT, memory_exceeded=True), False, LIMITED, False,
                 "TLE", id="TLE-before-MLE"),
    # MLE: the cgroup's OOM kill ...
    pytest.param(KILLED_AT_LIMIT, False, LIMITED, False, "MLE", id="MLE-oom-kill"),
    # ... a crash (SG or RE) under a memory limit with peak >= 95% of it ...
    pytest.param(near(0.95), False, LIMITED, False, "MLE", id="MLE-SG-near-limit"),
    pytest.param(near(1.0, EXIT_1), False, LIMITED, False, "MLE", id="MLE-RE-near-limit"),
    pytest.param(near(0.94), False, LIMITED, False, "RE", id="RE-below-95pct"),
    pytest.param(StageResult(signal="SIGSEGV", status=Status.SIGNALED, memory=10**12), False, UNLIMITED, False, "RE",
                 id="RE-no-limit-no-MLE"),
    # ... or stderr reporting a failed allocation (under a memory limit)
    # (the README names these; the code may know more)
    *[pytest.param(said(f"boom: {marker}\n"), False, LIMITED, False, "MLE", id=f"MLE-says-{marker}")
      for marker in sorted({"MemoryError", "OutOfMemoryError", "std::bad_alloc", *OUT_OF_MEMORY_MARKERS})],
    pytest.param(said("MemoryError\n"), False, UNLIMITED, False, "RE", id="RE-says-oom-without-limit"),
    # OLE: stdout or stderr over the cap
    pytest.param(STDOUT_LIMIT, False, LIMITED, False, "OLE", id="OLE-stdout"),
    pytest.param(STDERR_LIMIT, False, LIMITED, False, "OLE", id="OLE-stderr"),
    # RE: any other non-zero exit or fatal signal
    pytest.param(EXIT_1, False, LIMITED, False, "RE", id="RE-exit"),
    pytest.param(SEGV, False, LIMITED, False, "RE", id="RE-signal"),
    pytest.param(StageResult(stdout="3\n", code=3), True, LIMITED, False, "RE", id="RE-right-output-bad-exit"),
    # AC / WA: exit 0, the output matches or not
    pytest.param(OK, True, LIMITED, False, "AC", id="AC"),
    pytest.param(OK, False, LIMITED, False, "WA", id="WA"),
])
def test_verdict_table(result: StageResult, matched: bool, limits: Limits, compile_failed: bool, expected: str) -> None:
    assert verdict(result, matched, limits, compile_failed=compile_failed) == expected


def _request(case_count: int) -> JudgeRequest:
    cases = tuple(JudgeCase(f"t{i}", "", "3\n") for i in range(case_count))
    program = Program("python", "3.11.2", (), LIMITED)
    return JudgeRequest(PYTHON, program, LIMITED, (), cases, Comparison(), stop_on_first_failure=True)


def test_cases_not_run_are_skipped_and_the_summary_is_the_first_failure() -> None:
    """SKIPPED: stop_on_first_failure and an earlier case failed; the summary is the first non-AC case."""
    body = judge_response(_request(4), None, [(OK, True), (EXIT_1, False), (CPU_LIMIT, False)], display=100)
    assert [c["verdict"] for c in body["testcases"]] == ["AC", "RE", "TLE", "SKIPPED"]
    assert body["verdict"] == "RE" and body["passed"] == 1 and body["total"] == 4


def test_all_accepted_is_ac() -> None:
    body = judge_response(_request(2), None, [(OK, True), (OK, True)], display=100)
    assert body["verdict"] == "AC" and body["passed"] == 2 and body["max_memory"] == 8 * MIB


def test_a_failed_compile_is_ce_for_every_case() -> None:
    failed = StageResult(stderr="error: x", code=1, status=Status.RUNTIME_ERROR)
    body = judge_response(_request(3), failed, [(failed, False)] * 3, display=100)
    assert [c["verdict"] for c in body["testcases"]] == ["CE"] * 3 and body["compile"]["code"] == 1
