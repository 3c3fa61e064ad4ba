"""The judge endpoint: one compile, many test cases, a verdict per case.

Verdict rules, first match wins (documented in the README):
  CE  the compile stage failed (every case)
  IE  the sandbox or session failed (status XX)
  TLE status TO (CPU time or wall clock)
  MLE killed at the memory limit: the cgroup's OOM event, or a crash (SG/RE) under a
      memory limit whose peak reached 95% of it or whose stderr reports a failed allocation
  OLE status OL or EL (stdout/stderr over the output cap)
  RE  any other non-zero exit or fatal signal
  AC  exit 0 and the output matches the expected output under the chosen comparison
  WA  exit 0 and it does not
The summary verdict is the first case (in request order) that is not AC, else AC.
With stop_on_first_failure, cases after the first failure are not run: SKIPPED.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from backend.compare import MODES
from backend.config import Settings
from backend.errors import ValidationError
from backend.models import Comparison, Limits, Program, StageResult, Status
from backend.runtimes import Runtime, RuntimeRegistry
from backend.schema import (
    make_limits,
    parse_files,
    parse_limits,
    parse_stdin_args,
    require_common,
    resolve_runtime,
)

MLE_FRACTION = 0.95
# What runtimes print when an allocation fails under an rlimit (no cgroup OOM event then).
OUT_OF_MEMORY_MARKERS = ("MemoryError", "OutOfMemoryError", "std::bad_alloc", "heap out of memory",
                         "Cannot allocate memory", "failed to map segment")


@dataclass(frozen=True)
class JudgeCase:
    id: str
    stdin: str
    expected: str


@dataclass(frozen=True)
class JudgeRequest:
    runtime: Runtime
    program: Program
    run_limits: Limits
    args: tuple[str, ...]
    cases: tuple[JudgeCase, ...]
    comparison: Comparison
    stop_on_first_failure: bool


def _number(body: dict[str, Any], name: str, default: float) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValidationError(f"If specified, {name} must be a non-negative number")
    return float(value)


def _parse_cases(body: dict[str, Any], settings: Settings) -> tuple[JudgeCase, ...]:
    cases = body.get("testcases")
    if not isinstance(cases, list) or not cases:
        raise ValidationError("testcases is required as a non-empty array")
    if len(cases) > settings.judge_max_cases:
        raise ValidationError(f"testcases cannot contain more than {settings.judge_max_cases} cases")
    parsed: list[JudgeCase] = []
    total = 0
    for index, case in enumerate(cases):
        if not isinstance(case, dict):
            raise ValidationError(f"testcases[{index}] must be an object")
        stdin = case.get("stdin", "")
        if not isinstance(stdin, str):
            raise ValidationError(f"testcases[{index}].stdin must be a string")
        expected = case.get("expected_output")
        if not isinstance(expected, str):
            raise ValidationError(f"testcases[{index}].expected_output is required as a string")
        case_id = case.get("id", index)
        if not isinstance(case_id, str | int) or isinstance(case_id, bool):
            raise ValidationError(f"testcases[{index}].id must be a string or an integer")
        total += len(stdin) + len(expected)
        if total > settings.judge_max_input_bytes:
            raise ValidationError(
                f"testcases exceed the total input size limit of {settings.judge_max_input_bytes} bytes"
            )
        # Piston's stdin rule applies to each case as to /execute.
        parsed.append(JudgeCase(str(case_id), stdin if stdin.endswith("\n") else stdin + "\n", expected))
    return tuple(parsed)


def parse_judge(body: Any, registry: RuntimeRegistry, settings: Settings) -> JudgeRequest:
    body = require_common(body)
    runtime = resolve_runtime(body, registry)
    files = parse_files(body["files"], runtime.language)
    limits = parse_limits(body, settings)
    _, args = parse_stdin_args({"args": body.get("args")})
    output_max = body.get("output_max_size")
    if output_max is not None:
        if isinstance(output_max, bool) or not isinstance(output_max, int) or output_max <= 0:
            raise ValidationError("If specified, output_max_size must be a positive integer")
        if output_max > settings.output_max_size:
            raise ValidationError(f"output_max_size cannot exceed the configured limit of {settings.output_max_size}")
    mode = body.get("compare", "lines")
    if mode not in MODES:
        raise ValidationError(f"compare must be one of {', '.join(MODES)}")
    comparison = Comparison(mode, _number(body, "float_abs_tolerance", 1e-6), _number(body, "float_rel_tolerance", 1e-6))
    stop = body.get("stop_on_first_failure", False)
    if not isinstance(stop, bool):
        raise ValidationError("If specified, stop_on_first_failure must be a boolean")
    cases = _parse_cases(body, settings)
    program = Program(runtime.language, runtime.version, files, make_limits(limits["compile"], settings))
    run_limits = make_limits(limits["run"], settings, output_max_size=output_max)
    return JudgeRequest(runtime, program, run_limits, args, cases, comparison, stop)


def verdict(result: StageResult, matched: bool, limits: Limits, *, compile_failed: bool) -> str:
    if compile_failed:
        return "CE"
    if result.status is Status.INTERNAL:
        return "IE"
    if result.status is Status.TIMEOUT:
        return "TLE"
    crashed = result.status in (Status.SIGNALED, Status.RUNTIME_ERROR)
    limited = limits.memory_bytes > 0
    near_limit = limited and (result.memory or 0) >= MLE_FRACTION * limits.memory_bytes
    said_oom = limited and any(marker in result.stderr for marker in OUT_OF_MEMORY_MARKERS)
    if result.memory_exceeded or (crashed and (near_limit or said_oom)):
        return "MLE"
    if result.status in (Status.STDOUT_LIMIT, Status.STDERR_LIMIT):
        return "OLE"
    if crashed or result.code != 0:
        return "RE"
    return "AC" if matched else "WA"


def case_json(case: JudgeCase, result: StageResult, verdict_: str, display: int) -> dict[str, Any]:
    return {
        "id": case.id,
        "verdict": verdict_,
        "cpu_time": result.cpu_time,
        "wall_time": result.wall_time,
        "memory": result.memory,
        "code": result.code,
        "signal": result.signal,
        "status": result.status.value if result.status else None,
        "message": result.message,
        "stdout": result.stdout[:display],
        "stderr": result.stderr[:display],
        "stdout_truncated": len(result.stdout) > display,
    }


def judge_response(request: JudgeRequest, compile_stage: StageResult | None,
                   judged: list[tuple[StageResult, bool]], display: int) -> dict[str, Any]:
    compile_failed = compile_stage is not None and not compile_stage.ok
    cases: list[dict[str, Any]] = []
    for index, case in enumerate(request.cases):
        if index < len(judged):
            result, matched = judged[index]
            cases.append(case_json(case, result, verdict(result, matched, request.run_limits,
                                                         compile_failed=compile_failed), display))
        else:
            cases.append({"id": case.id, "verdict": "SKIPPED"})
    summary = next((c["verdict"] for c in cases if c["verdict"] != "AC"), "AC")
    ran = [c for c in cases if c["verdict"] != "SKIPPED"]
    return {
        "language": request.runtime.language,
        "version": request.runtime.version,
        "compile": compile_stage.to_json() if compile_stage else None,
        "verdict": summary,
        "passed": sum(c["verdict"] == "AC" for c in cases),
        "total": len(cases),
        "max_cpu_time": max((c["cpu_time"] or 0 for c in ran), default=0),
        "max_memory": max((c["memory"] or 0 for c in ran), default=0),
        "testcases": cases,
    }
