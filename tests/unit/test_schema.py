"""Request validation: Piston's messages verbatim, in Piston's order, plus our clear 400s."""

from __future__ import annotations

from typing import Any

import pytest

from backend.config import Settings
from backend.errors import ValidationError
from backend.runtimes import Runtime, RuntimeRegistry
from backend.schema import parse_execute

REGISTRY = RuntimeRegistry([
    Runtime("python", "3.11.2", ("py", "py3", "python3"), None, False, {"python": "/usr/bin/python3"}),
    Runtime("python", "3.9.1", ("py",), None, False, {"python": "/usr/bin/python3.9"}),
    Runtime("c++", "12.2.0", ("cpp", "g++"), "gcc", True, {"cxx": "/usr/bin/g++"}),
])
SETTINGS = Settings.from_env({})
OK = {"language": "python", "version": "*", "files": [{"content": "print(1)"}]}


def body(**changes: Any) -> dict[str, Any]:
    merged = {**OK, **changes}
    return {k: v for k, v in merged.items() if v is not ...}


@pytest.mark.parametrize(("request_body", "message"), [
    ({}, "language is required as a string"),
    ([], "language is required as a string"),
    (body(language=...), "language is required as a string"),
    (body(language=""), "language is required as a string"),
    (body(language=3), "language is required as a string"),
    (body(version=...), "version is required as a string"),
    (body(version=3), "version is required as a string"),
    (body(files=...), "files is required as an array"),
    (body(files="print(1)"), "files is required as an array"),
    (body(files={"content": "x"}), "files is required as an array"),
    (body(files=[{"name": "a.py"}]), "files[0].content is required as a string"),
    (body(files=[{"content": "x"}, {"content": 5}]), "files[1].content is required as a string"),
    (body(files=["print(1)"]), "files[0].content is required as a string"),
    (body(language="python", version="3.99"), "python-3.99 runtime is unknown"),
    (body(language="Python"), "Python-* runtime is unknown"),
    (body(language="gcc"), "gcc-* runtime is unknown"),
    (body(version="latest"), "python-latest runtime is unknown"),
    (body(files=[]), "files must include at least one utf8 encoded file"),
    (body(files=[{"content": "AA==", "encoding": "base64"}]), "files must include at least one utf8 encoded file"),
    (body(run_timeout="3000"), "If specified, run_timeout must be a number"),
    (body(compile_memory_limit=True), "If specified, compile_memory_limit must be a number"),
    (body(run_timeout=3001), "run_timeout cannot exceed the configured limit of 3000"),
    (body(compile_timeout=10001), "compile_timeout cannot exceed the configured limit of 10000"),
    (body(run_cpu_time=99999), "run_cpu_time cannot exceed the configured limit of 3000"),
    (body(run_timeout=-5), "run_timeout must be non-negative"),
    (body(run_memory_limit=-2), "run_memory_limit must be non-negative"),
    # Clear 400s where Piston would answer 500 or misbehave:
    (body(files=[{"name": "../x.py", "content": "x"}]), "files[0].name must be a relative path inside the submission"),
    (body(files=[{"name": "/etc/passwd", "content": "x"}]), "files[0].name must be a relative path inside the submission"),
    (body(files=[{"content": "x", "encoding": "utf-16"}]), "files[0].encoding must be one of utf8, base64, hex"),
    (body(files=[{"content": "%%%", "encoding": "base64"}]), "files[0].content is not valid base64"),
    (body(files=[{"content": "zz", "encoding": "hex"}]), "files[0].content is not valid hex"),
    (body(files=[{"name": "a.py", "content": "1"}, {"name": "a.py", "content": "2"}]),
     "files[1].name 'a.py' is used twice"),
    (body(stdin=5), "If specified, stdin must be a string"),
    (body(args="1 2 3"), "If specified, args must be an array of strings"),
    (body(args=[{"a": 1}]), "If specified, args must be an array of strings"),
])
def test_rejections_have_pistons_message(request_body: Any, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_execute(request_body, REGISTRY, SETTINGS)
    assert info.value.message == message
    assert info.value.status_code == 400


def test_defaults_match_piston() -> None:
    req = parse_execute(OK, REGISTRY, SETTINGS)
    assert req.runtime.version == "3.11.2"  # highest matching "*"
    assert req.program.files[0].name == "file0.code"
    assert req.run.stdin == "\n"  # Piston appends a newline to stdin lacking one
    assert req.run.args == ()
    assert (req.run.limits.timeout_ms, req.run.limits.cpu_time_ms) == (3000, 3000)
    # Not Piston's "none": the default cap applies (RUN_MEMORY_LIMIT, COMPILE_MEMORY_LIMIT).
    assert (req.run.limits.memory_bytes, req.program.compile_limits.memory_bytes) == (2**30, 2**30)
    compile_limits = req.program.compile_limits
    assert (compile_limits.timeout_ms, compile_limits.cpu_time_ms) == (10000, 10000)
    assert req.run.limits.max_processes == 64 and req.run.limits.max_file_size == 10_000_000


@pytest.mark.parametrize(("language", "version", "expected"), [
    ("py", "*", "3.11.2"), ("python3", "3", "3.11.2"), ("py", "3.9", "3.9.1"), ("python", "3.x", "3.11.2"),
    ("python", ">=3.9 <3.10", "3.9.1"), ("python", "3.11.2", "3.11.2"), ("cpp", "12", "12.2.0"),
])
def test_language_aliases_and_semver_ranges(language: str, version: str, expected: str) -> None:
    req = parse_execute(body(language=language, version=version), REGISTRY, SETTINGS)
    assert req.runtime.version == expected


def test_lenient_where_clients_need_it() -> None:
    req = parse_execute(body(
        files=[{"name": None, "content": "a"}, {"name": "", "content": "b"}, {"name": "lib/m.py", "content": "c"}],
        run_memory_limit=-1, compile_memory_limit=-1, run_timeout=0, args=["1", 2, "3"], stdin="x\n",
        timeout=5,  # pistonapi sends this unknown field
    ), REGISTRY, SETTINGS)
    assert [f.name for f in req.program.files] == ["file0.code", "file1.code", "lib/m.py"]
    assert req.run.limits.memory_bytes == 2**30 and req.run.limits.timeout_ms == 3000  # -1: the default cap
    assert req.run.args == ("1", "2", "3") and req.run.stdin == "x\n"


def test_memory_limit_minus_one_accepted_even_when_configured() -> None:
    settings = Settings.from_env({"RUN_MEMORY_LIMIT": "268435456"})
    assert parse_execute(body(run_memory_limit=-1), REGISTRY, settings).run.limits.memory_bytes == 268435456
    with pytest.raises(ValidationError, match="cannot exceed the configured limit of 268435456"):
        parse_execute(body(run_memory_limit=268435457), REGISTRY, settings)
    assert parse_execute(body(run_memory_limit=1 << 20), REGISTRY, settings).run.limits.memory_bytes == 1 << 20


def test_configured_minus_one_means_no_per_run_cap() -> None:
    settings = Settings.from_env({"RUN_MEMORY_LIMIT": "-1"})
    assert parse_execute(body(), REGISTRY, settings).run.limits.memory_bytes == -1
    assert parse_execute(body(run_memory_limit=-1), REGISTRY, settings).run.limits.memory_bytes == -1
    assert parse_execute(body(run_memory_limit=8 * 2**30), REGISTRY, settings).run.limits.memory_bytes == 8 * 2**30


def test_encodings_decode() -> None:
    req = parse_execute(body(files=[
        {"content": "print(1)"}, {"name": "b.bin", "content": "AAEC", "encoding": "base64"},
        {"name": "h.bin", "content": "ff00", "encoding": "hex"},
    ]), REGISTRY, SETTINGS)
    assert [f.content for f in req.program.files] == [b"print(1)", b"\x00\x01\x02", b"\xff\x00"]
    assert [f.is_source for f in req.program.files] == [True, False, False]
