"""The backend's half of the harness protocol: build requests, render the code sent, parse results.

Request (JSON; all sizes in bytes, times in ms)::

    {"v": 1, "nonce": "<hex>", "inline_max": 3000,
     "files": [{"name": "main.py", "content": "<base64>"}],
     "renames": [["Main.txt", "Main.java"]],
     "compile": {"argv": [...], "limits": LIMITS} | null,
     "runs": [{"argv": [...], "stdin": "...", "limits": LIMITS, "expected"?: "..."}, ...],
     "match": {"mode", "abs_tol", "rel_tol", "stop_on_first_failure"} | null,
     "last_use"?: true}   no later submission will run in this session (isolation "none" then
                          skips the snapshot of the kernel's dirs, a walk of its site-packages)
    LIMITS = {"timeout_ms", "cpu_time_ms", "memory_bytes", "output_max_size",
              "max_processes", "max_open_files", "max_file_size"}

or ``{"v": 1, "nonce", "probe": [{"language", "binaries": {role: [paths]}, "version_cmd": [...]}]}``.
A request over ``INLINE_INPUT_MAX`` is uploaded as ``piston-in-<nonce>.json`` and the code
names it (``{"nonce", "input_file"}``). Result, printed as ``__PISTON__<nonce> <json>`` or
``__PISTON__<nonce> @piston-out-<nonce>.json`` (then fetched through the files API)::

    {"v": 1, "compile": STAGE | null, "runs": [STAGE, ...], "isolation", "isolation_detail",
     "cleanup": {"killed", "removed", "restored", "tainted"}, "elapsed_ms"}
    STAGE = Piston's stage fields + "memory_exceeded" (+ "matched" when matched; with
            stop_on_first_failure "runs" ends at the first case that did not match)
    {"v": 1, "error": "...", "trace": "..."}          the harness itself failed
    {"v": 1, "probe": [{"language", "binaries", "returncode", "output"}], "info": {...}}
    info = {"python", "executable", "euid", "can_drop", "subreaper", "data_dir",
            "isolation": "uid" | "userns" | "none", "isolation_detail": why not stronger | null}

``isolation`` is the strongest per-run separation the session's kernel allows (see
harness_session.py); a session with ``none`` must not be reused for another submission.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from backend.models import Comparison, Limits, Program, RunSpec, StageResult
from backend.runtimes import LANGUAGES, Runtime, build_commands, probed_runtime

HERE = Path(__file__).resolve().parent
SESSION_SOURCE = (HERE / "harness_session.py").read_text()
REAPER_SOURCE = (HERE / "reaper_session.py").read_text()
COMPARE_SOURCE = (HERE.parent.parent / "compare.py").read_text()  # the output match, stdlib only
RULES_SOURCE = (HERE.parent.parent / "runrules.py").read_text()  # the run rules, shared with the local executor
MODULE_NAME = "__piston_harness_" + hashlib.sha256(
    (SESSION_SOURCE + REAPER_SOURCE + COMPARE_SOURCE + RULES_SOURCE).encode()).hexdigest()[:12]
MARK = "__PISTON__"
KERNEL_PYTHON = "@kernel-python"  # probe candidate standing for the session kernel's sys.executable
PROTOCOL = 1
ISOLATIONS = ("uid", "userns", "none")  # the harness's per-run separation, strongest first
INLINE_INPUT_MAX = 64 * 1024  # larger requests go up through the files API
INLINE_RESULT_MAX = 3000  # below the session's 4096-character stdout cap (outputStreamsMaxLength)
STAGE_OVERHEAD_MS = 500  # reaper start, cleanup and matching per stage
EXECUTION_OVERHEAD_S = 3  # harness start, box set-up and final cleanup per execution


class HarnessError(Exception):
    """The session did not return a usable harness result."""


@dataclass(frozen=True)
class Reply:
    """Where the result is: inline JSON, or the name of a result file in the data dir."""

    result: dict[str, Any] | None
    result_file: str | None


def new_nonce() -> str:
    return secrets.token_hex(8)


def _limits(limits: Limits) -> dict[str, int]:
    return asdict(limits)


def build_request(program: Program, runtime: Runtime, specs: Sequence[RunSpec], *,
                  expected: Sequence[str] | None = None, comparison: Comparison | None = None,
                  stop_on_first_failure: bool = False, last_use: bool = False) -> dict[str, Any]:
    """The request for compiling ``program`` once and running it on each spec.

    With ``expected`` and ``comparison`` the session also matches each run's output (``matched``) and,
    on request, stops at the first case that fails. ``last_use``: the session serves no later
    submission (a fresh identifier per execution), so the harness need not guard it for one.
    """
    commands = build_commands(runtime, program.files, program.compile_limits)
    runs = []
    for spec in specs:
        # Run commands depend on the run's limits (JVM -Xmx, V8 heap); the program's files do not change.
        run = build_commands(runtime, program.files, spec.limits).run
        runs.append({"argv": [*run, *spec.args], "stdin": spec.stdin, "limits": _limits(spec.limits)})
    match = None
    if expected is not None and comparison is not None:
        for run, want in zip(runs, expected, strict=True):
            run["expected"] = want
        match = {"mode": comparison.mode, "abs_tol": comparison.abs_tol, "rel_tol": comparison.rel_tol,
                 "stop_on_first_failure": stop_on_first_failure}
    return {
        "v": PROTOCOL,
        "nonce": new_nonce(),
        **({"last_use": True} if last_use else {}),
        "inline_max": INLINE_RESULT_MAX,
        "match": match,
        "files": [{"name": f.name, "content": base64.b64encode(f.content).decode()} for f in program.files],
        "renames": [list(pair) for pair in commands.renames],
        "compile": None if commands.compile is None else {
            "argv": list(commands.compile), "limits": _limits(program.compile_limits),
        },
        "runs": runs,
    }


def budget_s(request: dict[str, Any]) -> float:
    """Worst-case seconds the request takes in the session (every stage hitting its wall limit)."""
    stages = ([request["compile"]] if request.get("compile") else []) + list(request.get("runs", []))
    total_ms = sum(stage["limits"]["timeout_ms"] + STAGE_OVERHEAD_MS for stage in stages)
    return total_ms / 1000 + EXECUTION_OVERHEAD_S


def probe_request() -> dict[str, Any]:
    languages = []
    for spec in LANGUAGES:
        binaries = {role: list(paths) for role, paths in spec.binaries.items()}
        if spec.language == "python":
            # Last resort: the kernel's own interpreter, when the image has no system python3.
            binaries["python"].append(KERNEL_PYTHON)
        languages.append({"language": spec.language, "binaries": binaries, "version_cmd": list(spec.version_cmd)})
    return {"v": PROTOCOL, "nonce": new_nonce(), "inline_max": INLINE_RESULT_MAX, "probe": languages}


def encode(request: dict[str, Any]) -> str:
    return json.dumps(request, separators=(",", ":"))


def render_code(request_json: str) -> str:
    """The Python cell sent to the session: load the harness in a private namespace and call it.

    Each line is plain Python with no leading ``%``/``!`` and no trailing ``?``, so IPython's
    input transformers leave it alone; the sources travel as one-line string literals.
    """
    # Compiled once per kernel and kept as a module (compiling it costs ~20 ms per call); the
    # name carries the sources' hash, so a new backend version never runs an old harness.
    return (
        f"_piston = __import__('sys').modules.get({MODULE_NAME!r})\n"
        "if _piston is None:\n"
        f"    _piston = __import__('types').ModuleType({MODULE_NAME!r})\n"
        f"    _piston.REAPER_SOURCE = {REAPER_SOURCE!r}\n"
        f"    _piston.COMPARE_SOURCE = {COMPARE_SOURCE!r}\n"
        f"    _piston.RULES_SOURCE = {RULES_SOURCE!r}\n"
        f"    exec(compile({SESSION_SOURCE!r}, 'piston_harness_session.py', 'exec'), _piston.__dict__)\n"
        "    __import__('sys').modules[_piston.__name__] = _piston\n"
        f"_piston.entry({request_json!r})\n"
        "del _piston\n"
    )


def parse_reply(stdout: str, nonce: str) -> Reply:
    """Find our result line in the execution's stdout."""
    prefix = f"{MARK}{nonce} "
    for line in reversed(stdout.splitlines()):
        if not line.startswith(prefix):
            continue
        payload = line[len(prefix):]
        if payload.startswith("@"):
            name = payload[1:].strip()
            if not re.fullmatch(r"piston-out-[0-9a-f]+\.json", name):
                raise HarnessError(f"unexpected result file name {name!r}")
            return Reply(None, name)
        if payload.startswith("z:"):
            try:
                payload = zlib.decompress(base64.b64decode(payload[2:], validate=True)).decode()
            except (ValueError, zlib.error) as exc:
                raise HarnessError(f"the compressed harness result is corrupt: {exc}") from exc
        return Reply(decode_result(payload), None)
    raise HarnessError("the session returned no harness result")


def decode_result(text: str | bytes) -> dict[str, Any]:
    try:
        result = json.loads(text)
    except ValueError as exc:
        raise HarnessError(f"the harness result is not valid JSON: {exc}") from exc
    if not isinstance(result, dict) or result.get("v") != PROTOCOL:
        raise HarnessError("the harness result has an unknown format")
    if result.get("error"):
        raise HarnessError(f"the harness failed in the session: {result['error']}")
    return result


def stages(result: dict[str, Any], expected_runs: int, *, at_most: bool = False,
           ) -> tuple[StageResult | None, list[StageResult]]:
    """The compile stage and the run stages; ``at_most``: a matched run may have stopped early."""
    runs = result.get("runs")
    if not isinstance(runs, list) or len(runs) > expected_runs or (len(runs) != expected_runs and not at_most):
        raise HarnessError(f"the harness returned {len(runs) if isinstance(runs, list) else 'no'} runs, "
                           f"expected {expected_runs}")
    compile_stage = StageResult.from_json(result["compile"]) if result.get("compile") else None
    return compile_stage, [StageResult.from_json(run) for run in runs]


def isolation_from_probe(result: dict[str, Any]) -> str:
    """``info.isolation`` of a probe result: "uid", "userns" or "none" (also for an answer without it,
    so that a session of unknown isolation is never reused)."""
    info = result.get("info")
    value = info.get("isolation") if isinstance(info, dict) else None
    return value if value in ISOLATIONS else "none"


def runtimes_from_probe(result: dict[str, Any]) -> list[Runtime]:
    """Runtimes whose binaries exist in the session and whose version command answered."""
    specs = {spec.language: spec for spec in LANGUAGES}
    found = []
    for item in result.get("probe") or []:
        spec = specs.get(item.get("language"))
        runtime = probed_runtime(spec, item) if spec is not None else None
        if runtime is not None:
            found.append(runtime)
    return found
