"""Microsoft's own contract for the sessions data plane, applied to every emulator response in the tests.

The contract is the Swagger 2.0 documents of Azure/azure-rest-api-specs
``specification/app/data-plane/Microsoft.App.DynamicSessions`` (MIT licence, see LICENCE_NOTE), one per
api-version. The documents are checked with openapi-spec-validator; response bodies with
openapi-schema-validator (``OAS30ReadValidator``: Swagger 2.0 schema objects are a subset of OpenAPI 3.0's,
and a response may carry readOnly properties) over the document's own definitions. The documents are not
kept in this repository; ``specs_root()`` says where they are looked for, and tests skip, saying so, when
they are absent.

Where the live service (or Microsoft's own material) is known to differ from the swagger, ``KNOWN_DIFFERENCES``
says how the check is adjusted and names the source.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker
from referencing import Registry
from referencing.jsonschema import DRAFT4

REPO = Path(__file__).resolve().parents[2]
SPECS_ENV = "DYNAMIC_SESSIONS_SPECS"
SPECS_FOLDER = "Microsoft.App.DynamicSessions"
LICENCE_NOTE = (
    "Azure/azure-rest-api-specs is licensed under the MIT License, Copyright (c) Microsoft Corporation; "
    "keep its LICENSE file next to any copy of the specification."
)
PROBLEM = "specs absent"


def specs_root() -> Path | None:
    """Where the spec folder is: $DYNAMIC_SESSIONS_SPECS, else shared/specs/ beside the repository (or beside
    the folder of its worktrees), else tests/data/ in it. The folder holds ``preview/<version>/DynamicSessions.json``
    (and ``stable/...``)."""
    candidates = [os.environ.get(SPECS_ENV, ""), REPO.parent / "shared" / "specs" / SPECS_FOLDER,
                  REPO.parent.parent / "shared" / "specs" / SPECS_FOLDER, REPO / "tests" / "data" / SPECS_FOLDER]
    for candidate in candidates:
        if candidate and any(Path(candidate).glob("*/*/DynamicSessions.json")):
            return Path(candidate)
    return None


def missing_reason() -> str:
    return (
        f"the {SPECS_FOLDER} swagger documents are not on this machine: set ${SPECS_ENV} to a copy of "
        f"azure-rest-api-specs/specification/app/data-plane/{SPECS_FOLDER} (or place it at "
        f"../shared/specs/{SPECS_FOLDER} beside the repository)"
    )


@dataclass(frozen=True)
class Difference:
    """A status the emulator answers that a document does not declare: checked as ``check_as`` instead.

    Applies only where the document lacks ``status``; a document that declares it is followed as written.
    """

    method: str
    route: str  # the swagger path template
    status: int
    check_as: int
    source: str


KNOWN_DIFFERENCES = (
    Difference(
        "POST",
        "/executions",
        202,
        200,
        "2025-02-02-preview and later declare only 200 for CodeExecution_Execute, but their own example "
        "CodeExecution_Execute_Async_Running answers an asynchronous execution with 202, Operation-Location "
        "and a Running SessionCodeExecutionResource.",
    ),
    Difference(
        "POST",
        "/executions",
        200,
        202,
        "2024-10-02-preview declares only 202 (Microsoft's BYOC samples, code-interpreter/"
        "2024-10-02-preview-and-after.md, show 202 even for a synchronous run); the emulator answers a "
        "synchronous run 200 on every api-version, as 2025-02-02-preview and later declare and live tests "
        "found the api-version not behaviourally significant (research note azure-sessions.md).",
    ),
)


class ContractError(AssertionError):
    pass


class Contract:
    """The documents found under ``root``, by api-version."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.documents: dict[str, dict[str, Any]] = {}
        for path in sorted(root.glob("*/*/DynamicSessions.json")):
            document = json.loads(path.read_text())
            self.documents[document["info"]["version"]] = document
        self.checked = 0  # responses validated, so a test can show that validation really ran
        self.unchecked: list[str] = []  # why the others were not

    @property
    def versions(self) -> list[str]:
        return sorted(self.documents)

    def route_of(self, version: str, path: str) -> str | None:
        """The swagger path template matching ``path`` (relative to the pool endpoint)."""
        for template in self.documents[version].get("paths", {}):
            pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
            if re.match(pattern, path):
                return template
        return None

    def _validator(self, version: str, schema: dict[str, Any]) -> OAS30ReadValidator:
        uri = f"urn:dynamic-sessions:{version}"
        registry = Registry().with_resource(uri, DRAFT4.create_resource(self.documents[version]))
        rooted = {"$ref": uri + schema["$ref"]} if "$ref" in schema else schema
        return OAS30ReadValidator(rooted, registry=registry, format_checker=oas30_format_checker)

    def check(
        self, *, method: str, url: str, pool_path: str, status: int, headers: Mapping[str, str], body: bytes
    ) -> str:
        """Validate one response; returns what was done ("checked", or why not) or raises ContractError."""
        outcome = self._check(method=method, url=url, pool_path=pool_path, status=status, headers=headers, body=body)
        if outcome != "checked":
            self.unchecked.append(outcome)
        return outcome

    def _check(
        self, *, method: str, url: str, pool_path: str, status: int, headers: Mapping[str, str], body: bytes
    ) -> str:
        parts = urlsplit(url)
        version = (parse_qs(parts.query).get("api-version") or [""])[0]
        if version not in self.documents:
            return f"no swagger for api-version {version or '(none)'}"
        if not parts.path.startswith(pool_path):
            return "not a data-plane call"
        path = parts.path[len(pool_path) :] or "/"
        route = self.route_of(version, path)
        if route is None:
            return f"{path} is no route of {version}"  # the 404s for unknown routes: nothing to hold them to
        operation = self.documents[version]["paths"][route].get(method.lower())
        if operation is None:
            return f"{method} {route} is not an operation of {version}"
        responses = operation.get("responses", {})
        for difference in KNOWN_DIFFERENCES:
            known = (difference.method, difference.route, difference.status) == (method.upper(), route, status)
            if known and str(status) not in responses:
                status = difference.check_as
        spec = responses.get(str(status)) or responses.get("default")
        where = f"{method} {route} -> {status} ({version})"
        if spec is None:
            raise ContractError(f"{where}: the swagger declares no such response")
        problems = self._header_problems(version, spec, headers) + self._body_problems(version, operation, spec, headers, body)
        if problems:
            raise ContractError(f"{where}: " + "; ".join(problems) + f"\nbody: {body[:1500]!r}")
        self.checked += 1
        return "checked"

    def _header_problems(self, version: str, spec: dict[str, Any], headers: Mapping[str, str]) -> list[str]:
        problems = []
        lowered = {k.lower(): v for k, v in headers.items()}
        for name, header_schema in (spec.get("headers") or {}).items():
            if name.lower() in lowered:
                validator = self._validator(version, header_schema)
                problems += [f"header {name}: {e.message}" for e in validator.iter_errors(lowered[name.lower()])]
        return problems

    def _body_problems(
        self, version: str, operation: dict[str, Any], spec: dict[str, Any], headers: Mapping[str, str], body: bytes
    ) -> list[str]:
        schema = spec.get("schema")
        if schema is None:
            return [f"the body should be empty, got {body[:200]!r}"] if body.strip() else []
        produces = operation.get("produces") or self.documents[version].get("produces") or ["application/json"]
        content_type = headers.get("Content-Type", "").split(";")[0].strip()
        if content_type not in produces:
            return [f"content type {content_type!r} is not in {produces}"]
        if schema.get("type") == "file":
            return []  # a download: any bytes
        try:
            value = json.loads(body)
        except ValueError as exc:
            return [f"the body is not JSON: {exc}"]
        errors = self._validator(version, schema).iter_errors(value)
        return [f"{'/'.join(map(str, e.absolute_path)) or 'body'}: {e.message}" for e in errors]


def for_document_validation(document: dict[str, Any]) -> dict[str, Any]:
    """The document as openapi-spec-validator can take it.

    Swagger 2.0 lets a Response Object's schema be ``{"type": "file"}`` (Swagger 2.0 specification, Response
    Object: "its root type value may also be 'file'"); the validator's meta-schema does not allow it, so
    those schemas are read as binary strings for that check only. ``x-ms-examples`` point at example files
    kept beside the document (documentation, not contract) and are left out.
    """
    copy = json.loads(json.dumps(document))
    for item in copy.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            operation.pop("x-ms-examples", None)
            for response in (operation.get("responses") or {}).values():
                if response.get("schema") == {"type": "file"}:
                    response["schema"] = {"type": "string", "format": "binary"}
    return copy


_contract: Contract | None = None


def contract() -> Contract | None:
    """The process-wide contract (loaded once), or None when the documents are not here."""
    global _contract
    if _contract is None:
        root = specs_root()
        if root is None:
            return None
        _contract = Contract(root)
    return _contract
