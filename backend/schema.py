"""Validation of Piston v2 request bodies into typed requests.

Checks run in Piston's order and fail with Piston's exact messages (api/src/api/v2.js,
``get_job``). Where Piston answers with a 500 or silently misbehaves (a path that
escapes the box, an unknown encoding, a non-string stdin), this answers 400 with a
message that says what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import math
import posixpath
from dataclasses import dataclass
from typing import Any

from backend.config import Settings
from backend.errors import ValidationError
from backend.models import Limits, Program, RunSpec, SourceFile
from backend.runtimes import Runtime, RuntimeRegistry

ENCODINGS = ("utf8", "base64", "hex")
MAX_FILES = 64


@dataclass(frozen=True)
class ExecuteRequest:
    runtime: Runtime
    program: Program
    run: RunSpec


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _configured(settings: Settings, stage: str, constraint: str) -> int:
    return int(getattr(settings, f"{stage}_{constraint}"))


def parse_limits(body: dict[str, Any], settings: Settings) -> dict[str, dict[str, int]]:
    """Check `{compile,run}_{memory_limit,timeout,cpu_time}` as Piston does; return the effective values."""
    chosen: dict[str, dict[str, int]] = {"compile": {}, "run": {}}
    for constraint in ("memory_limit", "timeout", "cpu_time"):
        for stage in ("compile", "run"):
            name = f"{stage}_{constraint}"
            value = body.get(name)
            configured = _configured(settings, stage, constraint)
            chosen[stage][constraint] = configured
            # Piston skips falsy values (absent, null, 0) and then applies the default.
            if value is None or value is False or value == 0:
                continue
            if not _is_number(value):
                raise ValidationError(f"If specified, {name} must be a number")
            if constraint == "memory_limit" and value == -1:
                continue  # "no limit of my own": what most Piston clients send by default
            if configured <= 0:
                if value < 0:
                    raise ValidationError(f"{name} must be non-negative")
                chosen[stage][constraint] = int(value)
                continue
            if value > configured:
                raise ValidationError(f"{name} cannot exceed the configured limit of {configured}")
            if value < 0:
                raise ValidationError(f"{name} must be non-negative")
            chosen[stage][constraint] = int(value)
    return chosen


def make_limits(values: dict[str, int], settings: Settings, *, output_max_size: int | None = None) -> Limits:
    return Limits(
        timeout_ms=values["timeout"],
        cpu_time_ms=values["cpu_time"],
        memory_bytes=values["memory_limit"],
        output_max_size=output_max_size or settings.output_max_size,
        max_processes=settings.max_process_count,
        max_open_files=settings.max_open_files,
        max_file_size=settings.max_file_size,
    )


def _decode(index: int, content: str, encoding: str) -> bytes:
    try:
        if encoding == "base64":
            return base64.b64decode(content, validate=True)
        if encoding == "hex":
            return bytes.fromhex(content)
    except (binascii.Error, ValueError):
        raise ValidationError(f"files[{index}].content is not valid {encoding}") from None
    return content.encode("utf-8", "surrogatepass")


def _safe_name(index: int, name: str) -> str:
    normalized = posixpath.normpath(name)
    if name.startswith("/") or normalized.startswith("..") or normalized in (".", "") or "\0" in name:
        raise ValidationError(f"files[{index}].name must be a relative path inside the submission")
    if normalized.startswith((".io/", ".launch")):
        raise ValidationError(f"files[{index}].name is reserved")
    return normalized


def parse_files(files: list[Any], language: str) -> tuple[SourceFile, ...]:
    parsed: list[SourceFile] = []
    seen: set[str] = set()
    for index, file in enumerate(files):
        encoding = (file.get("encoding") or "utf8") if isinstance(file, dict) else "utf8"
        if encoding not in ENCODINGS:
            raise ValidationError(f"files[{index}].encoding must be one of {', '.join(ENCODINGS)}")
        raw_name = file.get("name")
        if raw_name is not None and not isinstance(raw_name, str):
            raise ValidationError(f"files[{index}].name must be a string")
        name = _safe_name(index, raw_name or f"file{index}.code")
        if name in seen:
            raise ValidationError(f"files[{index}].name {name!r} is used twice")
        seen.add(name)
        parsed.append(SourceFile(name, _decode(index, file["content"], encoding), encoding == "utf8"))
    if language != "file" and not any(f.is_source for f in parsed):
        raise ValidationError("files must include at least one utf8 encoded file")
    return tuple(parsed)


def require_common(body: Any) -> dict[str, Any]:
    """The checks before the runtime lookup, in Piston's order."""
    if not isinstance(body, dict):
        body = {}
    if not body.get("language") or not isinstance(body["language"], str):
        raise ValidationError("language is required as a string")
    if not body.get("version") or not isinstance(body["version"], str):
        raise ValidationError("version is required as a string")
    files = body.get("files")
    if not isinstance(files, list):
        raise ValidationError("files is required as an array")
    for index, file in enumerate(files):
        if not isinstance(file, dict) or not isinstance(file.get("content"), str):
            raise ValidationError(f"files[{index}].content is required as a string")
    if len(files) > MAX_FILES:
        raise ValidationError(f"files cannot contain more than {MAX_FILES} files")
    return body


def resolve_runtime(body: dict[str, Any], registry: RuntimeRegistry) -> Runtime:
    runtime = registry.find(body["language"], body["version"])
    if runtime is None:
        raise ValidationError(f"{body['language']}-{body['version']} runtime is unknown")
    return runtime


def parse_stdin_args(body: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    stdin = body.get("stdin")
    if stdin is None:
        stdin = ""
    if not isinstance(stdin, str):
        raise ValidationError("If specified, stdin must be a string")
    # Piston appends a newline to stdin that lacks one (engineer-man/piston#474).
    if not stdin.endswith("\n"):
        stdin += "\n"
    args = body.get("args")
    if args is None:
        args = []
    if not isinstance(args, list) or not all(_is_number(a) or isinstance(a, str) for a in args):
        raise ValidationError("If specified, args must be an array of strings")
    return stdin, tuple(a if isinstance(a, str) else str(a) for a in args)


def parse_execute(body: Any, registry: RuntimeRegistry, settings: Settings) -> ExecuteRequest:
    body = require_common(body)
    runtime = resolve_runtime(body, registry)
    files = parse_files(body["files"], runtime.language)
    limits = parse_limits(body, settings)
    stdin, args = parse_stdin_args(body)
    program = Program(runtime.language, runtime.version, files, make_limits(limits["compile"], settings))
    return ExecuteRequest(runtime, program, RunSpec(stdin, args, make_limits(limits["run"], settings)))
