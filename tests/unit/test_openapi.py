"""The OpenAPI document and the code hold together: routes, shapes, enumerations, and validity."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

import backend.judge
from backend import create_app
from backend.config import Settings
from backend.connect import CLOSE_CODES
from backend.interactive import InteractiveSession
from backend.judge import JudgeCase, case_json
from backend.models import ExecutionResult, StageResult, Status
from backend.openapi import VERDICTS, document
from tests.unit.test_packages import RUNTIMES, ListingExecutor

REPO = Path(__file__).resolve().parents[2]
DOC = document()


def conforms(value: Any, schema_name: str) -> list[str]:
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": DOC["components"]}
    return [error.message for error in OAS31Validator(schema).iter_errors(value)]


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOC["openapi"].startswith("3.1")
    validate(DOC)


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    app = create_app(Settings.from_env({}), executor=ListingExecutor())
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        routes.setdefault(rule.rule, set()).update(m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    documented = {path: set(item) for path, item in DOC["paths"].items()}
    assert routes == documented


def test_every_operation_documents_its_errors() -> None:
    for path, item in DOC["paths"].items():
        for method, operation in item.items():
            assert {"401", "500"} <= set(operation["responses"]), (method, path)
            if "requestBody" in operation and operation["requestBody"].get("required"):
                assert {"400", "413", "415", "503"} <= set(operation["responses"]), (method, path)
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")) and (path, status) != ("/ready", "503"):  # /ready: its own shape
                    assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_the_service_serves_the_document() -> None:
    client = create_app(Settings.from_env({}), executor=ListingExecutor()).test_client()
    response = client.get("/api/v2/openapi.json")
    assert response.status_code == 200 and response.get_json() == DOC


def test_stage_and_execute_answers_match_the_schema() -> None:
    stage = StageResult(stdout="a", stderr="", output="a", code=None, signal="SIGKILL", message="Time limit exceeded",
                        status=Status.TIMEOUT, memory=1, cpu_time=2, wall_time=3)
    assert set(stage.to_json()) == set(DOC["components"]["schemas"]["Stage"]["required"])
    assert conforms(stage.to_json(), "Stage") == []
    assert conforms(ExecutionResult("c", "12.2.0", stage, StageResult(code=0)).to_json(), "ExecuteResponse") == []
    assert conforms({**stage.to_json(), "status": "ZZ"}, "Stage")  # the schema can fail


def test_runtimes_packages_and_judge_cases_match_the_schema() -> None:
    for runtime in RUNTIMES:
        assert conforms(runtime.to_json(), "Runtime") == []
    client = create_app(Settings.from_env({}), executor=ListingExecutor()).test_client()
    for package in client.get("/api/v2/packages").get_json():
        assert conforms(package, "Package") == []
    case = case_json(JudgeCase("t1", "\n", "1"), StageResult(stdout="1", code=0), "AC", 1024)
    assert set(case) == set(DOC["components"]["schemas"]["JudgeCase"]["properties"])
    assert conforms(case, "JudgeCase") == []


def test_verdicts_are_the_judges() -> None:
    documented = set(re.findall(r"^  ([A-Z]{2,3}) ", backend.judge.__doc__ or "", re.M)) | {"SKIPPED"}
    assert set(VERDICTS) == documented


def test_connect_messages_match_the_schema() -> None:
    sent: list[dict[str, Any]] = []
    session = InteractiveSession(sent.append)
    session.runtime("python", "3.11.2")
    session.stage("run")
    session.output("stdout", "é".encode())
    session.exit("run", StageResult(code=0))
    assert [m["type"] for m in sent] == ["runtime", "stage", "data", "exit"]
    for message in [*sent, {"type": "error", "message": "x"}]:
        assert conforms(message, "ConnectServerMessage") == [], message
    for message in ({"type": "data", "stream": "stdin", "data": "1\n"}, {"type": "signal", "signal": "SIGINT"},
                    {"type": "init", "language": "python", "version": "*", "files": [{"content": "1"}]}):
        assert conforms(message, "ConnectClientMessage") == [], message
    assert conforms({"type": "signal", "signal": "SIGFOO"}, "ConnectClientMessage")
    description = DOC["paths"]["/api/v2/connect"]["get"]["description"]
    assert all(f"{code} {reason}" in description for code, reason in CLOSE_CODES)


@pytest.mark.parametrize("name", ["ExecuteRequest", "JudgeRequest"])
def test_request_examples_conform(name: str) -> None:
    path = "/api/v2/execute" if name == "ExecuteRequest" else "/api/v2/judge"
    example = DOC["paths"][path]["post"]["requestBody"]["content"]["application/json"]["example"]
    assert conforms(example, name) == []


def test_readme_links_the_document() -> None:
    assert "/api/v2/openapi.json" in (REPO / "README.md").read_text()
