"""The emulator against Microsoft's swagger for each data-plane api-version (tests/integration/spec_contract.py).

Every response in the emulator test modules is checked through the ``spec_checked`` fixture; this module
also walks every operation of every api-version the documents describe, so each version is exercised even
where the other tests use only the newest, and shows that the check can fail.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from emulator.settings import KNOWN_API_VERSIONS
from emulator.testing import EmulatorProcess
from tests.integration import spec_contract
from tests.integration.emulator_helpers import Client, ident

pytestmark = [
    pytest.mark.usefixtures("spec_checked"),
    pytest.mark.skipif(spec_contract.contract() is None, reason=spec_contract.missing_reason()),
]


@pytest.fixture(scope="module")
def contract() -> spec_contract.Contract:
    found = spec_contract.contract()
    assert found is not None
    return found


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(ready_sessions=1, max_sessions=20) as process:
        yield process


def test_the_documents_are_valid_swagger(contract: spec_contract.Contract) -> None:
    assert contract.versions
    for version, document in contract.documents.items():
        assert document["swagger"] == "2.0", version
        validate(spec_contract.for_document_validation(document))  # openapi-spec-validator: raises if invalid


def test_the_check_can_fail(contract: spec_contract.Contract, emu: EmulatorProcess) -> None:
    version = contract.versions[-1]
    pool_path = emu.pool_endpoint.split(emu.base_url, 1)[1]
    url = f"{emu.pool_endpoint}/session?api-version={version}&identifier=abcd"
    wrong = b'{"identifier": "abcd", "createdAt": "yesterday"}'  # fields missing, a date that is none
    with pytest.raises(spec_contract.ContractError):
        contract.check(method="GET", url=url, pool_path=pool_path, status=200,
                       headers={"Content-Type": "application/json"}, body=wrong)
    with pytest.raises(OpenAPIValidationError):
        validate({"swagger": "2.0", "info": {"title": "x"}, "paths": {}})  # no version: invalid


@pytest.mark.parametrize("version", [v for v in KNOWN_API_VERSIONS if v >= "2024-10-02-preview"])
def test_every_operation_of_each_api_version(contract: spec_contract.Contract, dp: Client, version: str) -> None:
    if version not in contract.documents:
        pytest.skip(f"no swagger for {version} among {contract.versions}")
    before, unchecked_before = contract.checked, len(contract.unchecked)
    sid = ident()

    def call(method: str, path: str, **kwargs: object) -> object:
        return dp.call(method, path, api=version, **kwargs)

    assert call("POST", "/executions", identifier=sid, json={"code": "print(1)\n6 * 7"}).status_code == 200
    assert call("POST", "/executions", identifier=sid, json={"code": "None"}).status_code == 200
    assert call("POST", "/executions", identifier=sid, json={"code": "1/0"}).status_code == 200
    timed_out = call("POST", "/executions", identifier=sid, json={"code": "import time; time.sleep(5)", "timeoutInSeconds": 1})
    assert timed_out.json()["status"] == "Failed"
    started = call("POST", "/executions", identifier=sid, json={"code": "7", "executionType": "Asynchronous"})
    assert started.status_code == 202
    polls = 0
    while polls < 50:
        polls += 1
        if call("GET", f"/executions/{started.json()['id']}", identifier=sid).json()["status"] in ("Succeeded", "Failed"):
            break
        time.sleep(0.1)
    assert call("GET", "/executions/missing", identifier=sid).status_code == 404
    assert call("POST", "/files", identifier=sid, files={"file": ("a.txt", b"abc")}).status_code == 200
    assert call("POST", "/files", identifier=sid, params={"path": "sub"}, files={"file": ("b.txt", b"b")}).status_code == 200
    assert call("GET", "/files", identifier=sid).status_code == 200
    assert call("GET", "/files", identifier=sid, params={"recursive": "true"}).status_code == 200
    assert call("GET", "/files/a.txt", identifier=sid).status_code == 200
    assert call("GET", "/files/a.txt/content", identifier=sid).content == b"abc"
    assert call("DELETE", "/files/a.txt", identifier=sid).status_code == 204
    assert call("GET", "/files/a.txt", identifier=sid).status_code == 404
    assert call("GET", "/session", identifier=sid).status_code == 200
    assert call("GET", "/listSessions").status_code == 200
    assert call("GET", "/metadata").status_code == 200
    assert call("POST", "/executions", identifier="bad id", json={"code": "1"}).status_code == 400
    assert call("DELETE", "/session", identifier=sid).status_code == 204
    assert call("GET", "/session", identifier=sid).status_code == 404
    # Every response above was held to the swagger, except for routes this version's document lacks.
    skipped = contract.unchecked[unchecked_before:]
    assert all(" is no route of " in why or " is not an operation of " in why for why in skipped), skipped
    assert contract.checked - before + len(skipped) == 20 + polls and contract.checked - before >= 14
