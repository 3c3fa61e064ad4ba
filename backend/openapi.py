"""The OpenAPI 3.1 document of this service, served at ``/api/v2/openapi.json``.

Written here as data, with the enumerations taken from the code that enforces them
(statuses, encodings, comparison modes, signals, close codes), so the two cannot drift
apart. tests/unit/test_openapi.py checks it against the app's routes and validates it,
and tests/integration/test_openapi_fuzz.py runs schemathesis against the real gunicorn.
"""

from __future__ import annotations

from typing import Any

from backend.compare import MODES
from backend.interactive import SIGNALS
from backend.models import Status
from backend.schema import ENCODINGS, MAX_FILES

VERDICTS = ("AC", "WA", "CE", "RE", "TLE", "MLE", "OLE", "IE", "SKIPPED")
LIMIT_FIELDS = ("compile_timeout", "run_timeout", "compile_cpu_time", "run_cpu_time",
                "compile_memory_limit", "run_memory_limit")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


# Every route may answer these (API keys, an unexpected failure).
COMMON_ERRORS = {"401": _error("`API_KEYS` is set and the key is missing or wrong"),
                 "500": _error("unexpected failure; never a traceback")}
BODY_ERRORS = {
    "400": _error("invalid request: Piston's validation message, verbatim"),
    "413": _error("the body is over `MAX_REQUEST_BYTES`"),
    "415": _error("the body is not `application/json`"),
    "502": _error("the session pool answered wrongly"),
    "503": _error("the job queue is full, no slot freed up in time, or the executor is unavailable"),
    "504": _error("the session pool did not answer in time"),
}

_LIMIT = {"anyOf": [{"type": "number"}, {"type": "null"}],
          "description": "ms for timeouts and cpu_time, bytes for memory_limit; absent, 0 or null: the default"}

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}},
    "File": {
        "type": "object", "required": ["content"],
        "properties": {
            "name": {**_nullable({"type": "string"}), "description": "relative path; default file<i>.code"},
            "content": {"type": "string"},
            "encoding": _nullable({"type": "string", "enum": list(ENCODINGS)}),
        },
    },
    "ExecuteRequest": {
        "type": "object", "required": ["language", "version", "files"],
        "properties": {
            "language": {"type": "string", "minLength": 1, "description": "a name or an alias"},
            "version": {"type": "string", "minLength": 1, "description": "a semver range; the highest match wins"},
            "files": {"type": "array", "items": _ref("File"), "minItems": 1, "maxItems": MAX_FILES,
                      "description": "the first is the main file; at least one utf8 one"},
            "stdin": {**_nullable({"type": "string"}), "description": "a trailing newline is added if missing"},
            "args": _nullable({"type": "array", "items": {"type": ["string", "number"]}}),
            **{name: _LIMIT for name in LIMIT_FIELDS},
        },
    },
    "Stage": {
        "type": "object",
        "required": ["stdout", "stderr", "output", "code", "signal", "message", "status", "memory", "cpu_time",
                     "wall_time"],
        "properties": {
            "stdout": {"type": "string"}, "stderr": {"type": "string"},
            "output": {"type": "string", "description": "stdout and stderr in arrival order"},
            "code": _nullable({"type": "integer"}),
            "signal": _nullable({"type": "string"}),
            "message": _nullable({"type": "string"}),
            "status": _nullable({"type": "string", "enum": [s.value for s in Status]}),
            "memory": {**_nullable({"type": "integer"}), "description": "peak, bytes"},
            "cpu_time": {**_nullable({"type": "integer"}), "description": "ms"},
            "wall_time": {**_nullable({"type": "integer"}), "description": "ms"},
        },
    },
    "ExecuteResponse": {
        "type": "object", "required": ["run", "language", "version"],
        "properties": {"compile": _ref("Stage"), "run": _ref("Stage"),
                       "language": {"type": "string"}, "version": {"type": "string"}},
    },
    "Runtime": {
        "type": "object", "required": ["language", "version", "aliases"],
        "properties": {"language": {"type": "string"}, "version": {"type": "string"},
                       "aliases": {"type": "array", "items": {"type": "string"}},
                       "runtime": {"type": "string", "description": "the toolchain, when it provides several languages"}},
    },
    "Package": {
        "type": "object", "required": ["language", "language_version", "installed"],
        "properties": {"language": {"type": "string"}, "language_version": {"type": "string"},
                       "installed": {"type": "boolean"}},
    },
    "JudgeRequest": {
        "allOf": [_ref("ExecuteRequest"), {
            "type": "object", "required": ["testcases"],
            "properties": {
                "testcases": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["expected_output"],
                    "properties": {"id": {"type": ["string", "integer"]}, "stdin": {"type": "string"},
                                   "expected_output": {"type": "string"}},
                }},
                "compare": {"type": "string", "enum": list(MODES)},
                "stop_on_first_failure": {"type": "boolean"},
                "output_max_size": {"type": "integer", "minimum": 1},
                "float_abs_tolerance": {"type": "number", "minimum": 0},
                "float_rel_tolerance": {"type": "number", "minimum": 0},
            },
        }],
    },
    "JudgeCase": {
        "type": "object", "required": ["id", "verdict"],
        "properties": {
            "id": {"type": "string"}, "verdict": {"type": "string", "enum": list(VERDICTS)},
            "cpu_time": _nullable({"type": "integer"}), "wall_time": _nullable({"type": "integer"}),
            "memory": _nullable({"type": "integer"}), "code": _nullable({"type": "integer"}),
            "signal": _nullable({"type": "string"}),
            "status": _nullable({"type": "string", "enum": [s.value for s in Status]}),
            "message": _nullable({"type": "string"}), "stdout": {"type": "string"}, "stderr": {"type": "string"},
            "stdout_truncated": {"type": "boolean"},
        },
    },
    "JudgeResponse": {
        "type": "object",
        "required": ["language", "version", "compile", "verdict", "passed", "total", "max_cpu_time", "max_memory",
                     "testcases"],
        "properties": {
            "language": {"type": "string"}, "version": {"type": "string"},
            "compile": _nullable(_ref("Stage")), "verdict": {"type": "string", "enum": list(VERDICTS)},
            "passed": {"type": "integer"}, "total": {"type": "integer"},
            "max_cpu_time": {"type": "integer"}, "max_memory": {"type": "integer"},
            "testcases": {"type": "array", "items": _ref("JudgeCase")},
        },
    },
    "Health": {
        "type": "object", "required": ["status", "executor", "inflight"],
        "properties": {"status": {"type": "string", "const": "ok"}, "executor": {"type": "string"},
                       "inflight": {"type": "integer"}},
    },
    "Ready": {
        "type": "object", "required": ["status", "detail"],
        "properties": {"status": {"type": "string", "enum": ["ready", "unavailable"]}, "detail": {"type": "string"}},
    },
    # /api/v2/connect messages (WebSocket text frames): documented here, not exchanged over HTTP.
    "ConnectClientMessage": {
        "oneOf": [
            {"allOf": [{"type": "object", "required": ["type"], "properties": {"type": {"const": "init"}}},
                       _ref("ExecuteRequest")]},
            {"type": "object", "required": ["type", "stream", "data"],
             "properties": {"type": {"const": "data"}, "stream": {"const": "stdin"}, "data": {"type": "string"}}},
            {"type": "object", "required": ["type", "signal"],
             "properties": {"type": {"const": "signal"}, "signal": {"type": "string", "enum": list(SIGNALS)}}},
        ],
    },
    "ConnectServerMessage": {
        "oneOf": [
            {"type": "object", "required": ["type", "language", "version"],
             "properties": {"type": {"const": "runtime"}, "language": {"type": "string"},
                            "version": {"type": "string"}}},
            {"type": "object", "required": ["type", "stage"],
             "properties": {"type": {"const": "stage"}, "stage": {"enum": ["compile", "run"]}}},
            {"type": "object", "required": ["type", "stream", "data"],
             "properties": {"type": {"const": "data"}, "stream": {"enum": ["stdout", "stderr"]},
                            "data": {"type": "string"}}},
            {"type": "object", "required": ["type", "stage", "code", "signal"],
             "properties": {"type": {"const": "exit"}, "stage": {"enum": ["compile", "run"]},
                            "code": _nullable({"type": "integer"}), "signal": _nullable({"type": "string"})}},
            {"type": "object", "required": ["type", "message"],
             "properties": {"type": {"const": "error"}, "message": {"type": "string"}}},
        ],
    },
}


EXAMPLES = {
    "ExecuteRequest": {"language": "python", "version": "*", "files": [{"name": "main.py", "content": "print(input())"}],
                       "stdin": "hi", "run_timeout": 3000},
    "JudgeRequest": {"language": "python", "version": "*", "files": [{"content": "print(int(input()) * 2)"}],
                     "testcases": [{"id": "t1", "stdin": "2", "expected_output": "4"},
                                   {"stdin": "5", "expected_output": "11"}]},
}


def _op(summary: str, responses: dict[str, Any], *, body: str | None = None, **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**responses, **COMMON_ERRORS}, **extra}
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": _ref(body), "example": EXAMPLES[body]}}}
    return op


def _connect_description() -> str:
    from backend.connect import CLOSE_CODES

    codes = "; ".join(f"{code} {reason}" for code, reason in CLOSE_CODES)
    return ("Piston's interactive WebSocket protocol. Client messages: ConnectClientMessage; server messages: "
            f"ConnectServerMessage. Close codes: {codes}.")


def document() -> dict[str, Any]:
    packages_change = _op(
        "Refused: runtimes come with the service's image",
        {"405": _error("packages cannot be installed or removed here"),
         "415": _error("the body is not `application/json` (checked first, as in Piston)")},
        requestBody={"required": False, "content": {"application/json": {"schema": {
            "type": "object", "properties": {"language": {"type": "string"}, "version": {"type": "string"}}}}}},
    )
    return {
        "openapi": "3.1.0",
        "info": {"title": "piston-sessions-backend", "version": "2",
                 "description": "The Piston v2 API, plus /api/v2/judge. See the README for the deviations."},
        "paths": {
            "/": {"get": _op("Service banner", {"200": _json(
                {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}},
                "a `message`")})},
            "/api/v2/runtimes": {"get": _op("The runtimes usable here", {
                "200": _json({"type": "array", "items": _ref("Runtime")}, "runtimes")})},
            "/api/v2/packages": {
                "get": _op("Piston's package list: every runtime, installed", {
                    "200": _json({"type": "array", "items": _ref("Package")}, "packages")}),
                "post": packages_change,
                "delete": packages_change,
            },
            "/api/v2/execute": {"post": _op("Compile and run a program once", {
                "200": _json(_ref("ExecuteResponse"), "the stages; `run` is `compile` when compilation failed"),
                **BODY_ERRORS}, body="ExecuteRequest")},
            "/api/v2/judge": {"post": _op("Compile once and judge every test case (extension)", {
                "200": _json(_ref("JudgeResponse"), "a verdict per case"), **BODY_ERRORS}, body="JudgeRequest")},
            "/api/v2/connect": {"get": _op("Interactive run over WebSocket (Piston's protocol)", {
                "101": {"description": "switching to WebSocket"},
                "426": _error("not a WebSocket upgrade request")}, description=_connect_description())},
            "/api/v2/openapi.json": {"get": _op("This document", {
                "200": _json({"type": "object"}, "OpenAPI 3.1")})},
            "/health": {"get": _op("Liveness and the executor's configuration", {
                "200": _json(_ref("Health"), "up")})},
            "/ready": {"get": _op("Readiness: can work run now", {
                "200": _json(_ref("Ready"), "ready"), "503": _json(_ref("Ready"), "unavailable")})},
            "/metrics": {"get": _op("Prometheus metrics", {
                "200": {"description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}}}})},
        },
        "components": {"schemas": SCHEMAS},
    }
