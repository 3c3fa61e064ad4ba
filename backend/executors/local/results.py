"""Derive a sandbox Outcome's status and Piston's stage fields: the rules of ``backend/runrules.py``."""

from __future__ import annotations

from backend import runrules
from backend.executors.local.sandbox import Outcome
from backend.models import Limits, StageResult, Status


def to_stage(outcome: Outcome, limits: Limits, *, peak_memory: int | None, oom_killed: bool) -> StageResult:
    fields = runrules.stage_fields(vars(outcome), limits.cpu_time_ms, peak_memory=peak_memory,
                                   oom_killed=oom_killed)
    fields["status"] = Status(fields["status"]) if fields["status"] else None
    return StageResult(**fields)
