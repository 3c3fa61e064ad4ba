"""The dynamic-sessions emulator, driven as a real subprocess with real clients.

One module-scoped emulator serves most tests (kernel starts are the slow part); tests use unique
identifiers so they do not see each other's sessions, and tests that change counters or settings use
the ``clean`` fixture, which resets the emulator afterwards. A few tests start their own process to
exercise CLI flags and shutdown.
"""

from __future__ import annotations

import base64
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jwt
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError, ServiceRequestError
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.mgmt.appcontainers import ContainerAppsAPIClient

from emulator.settings import DEFAULT_CLIENT_ID, DEFAULT_PRINCIPAL_ID, UNAUTHORIZED_CLIENT_ID
from emulator.testing import EmulatorProcess
from tests.integration.emulator_helpers import (
    DATA_PLANE,
    LEGACY,
    NEW,
    Client,
    error_code,
    host_pids,
    ident,
    msi_token,
    pid_alive,
    wait_until,
)

ARM = "https://management.azure.com"


# -- fixtures and helpers ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(ready_sessions=2, max_sessions=60) as process:
        yield process


@pytest.fixture
def clean(emu: EmulatorProcess) -> Iterator[EmulatorProcess]:
    emu.reset()
    yield emu
    emu.reset()


@pytest.fixture(scope="module")
def token(emu: EmulatorProcess) -> str:
    return msi_token(emu).json()["access_token"]


@pytest.fixture(scope="module")
def dp(emu: EmulatorProcess, token: str) -> Client:
    return Client(emu, token)


# -- execution ---------------------------------------------------------------------------------------
def test_new_execute_returns_stdout_and_last_expression_and_keeps_globals(dp: Client) -> None:
    sid = ident()
    response = dp.execute(sid, "x = 6 * 7\nprint('hello')\nx")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "Succeeded" and body["identifier"] == sid and body["executionType"] == "Synchronous"
    assert body["result"]["stdout"] == "hello\n" and body["result"]["stderr"] == ""
    assert body["result"]["executionResult"] == 42
    assert isinstance(body["result"]["executionTimeInMilliseconds"], int)
    assert response.headers["operation-id"] == body["id"]
    guid = response.headers["X-Ms-Session-Guid"]
    again = dp.run(sid, "x + 1")
    assert again["result"]["executionResult"] == 43
    assert dp.execute(sid, "{'k': [1, 2]}").json()["result"]["executionResult"] == {"k": [1, 2]}
    assert dp.execute(sid, "None").headers["X-Ms-Session-Guid"] == guid


def test_identifiers_are_isolated_and_cwd_is_the_data_dir(dp: Client) -> None:
    a, b = ident(), ident()
    dp.run(a, "secret = 1\nopen('only-a.txt', 'w').write('a')")
    other = dp.run(b, "secret")
    assert other["status"] == "Failed" and "NameError" in other["result"]["stderr"]
    listing = dp.run(b, "import os\n(os.getcwd(), os.listdir('.'), os.listdir('/mnt/data'))")
    assert listing["result"]["executionResult"] == ["/mnt/data", [], []]
    seen_by_a = dp.run(a, "import os; (os.getcwd(), open('/mnt/data/only-a.txt').read())")
    assert seen_by_a["result"]["executionResult"] == ["/mnt/data", "a"]


def test_user_exception_is_http_200_failed_with_traceback(dp: Client) -> None:
    body = dp.run(ident(), "print('before')\nraise ValueError('boom')")
    assert body["status"] == "Failed"
    assert body["result"]["stdout"] == "before\n"
    stderr = body["result"]["stderr"]
    assert "Traceback" in stderr and "ValueError: boom" in stderr and "\x1b[" not in stderr


def test_input_is_not_supported(dp: Client) -> None:
    body = dp.run(ident(), "input('x')")
    assert body["status"] == "Failed" and "StdinNotImplementedError" in body["result"]["stderr"]


def test_legacy_code_execute_shape(dp: Client) -> None:
    sid = ident()
    response = dp.legacy(sid, "y = 5\nprint('legacy')\ny * 2")
    assert response.status_code == 200
    body = response.json()
    assert body["$id"] == "1" and body["properties"]["$id"] == "2"
    props = body["properties"]
    assert props["status"] == "Success" and props["stdout"] == "legacy\n" and props["result"] == 10
    failed = dp.legacy(sid, "y / 0").json()["properties"]
    assert failed["status"] == "Failure" and "ZeroDivisionError" in failed["stderr"]
    # same session behind both generations
    assert dp.run(sid, "y")["result"]["executionResult"] == 5


def test_base64_code_and_lowercase_enums(dp: Client) -> None:
    code = base64.b64encode(b"print(3 * 3)").decode()
    body = dp.run(ident(), code, codeInputType="inlinebase64", executionType="synchronous")
    assert body["result"]["stdout"] == "9\n"


def test_output_streams_are_truncated_to_4096_by_default(dp: Client) -> None:
    sid = ident()
    code = "import sys\nprint('a' * 10000)\nprint('e' * 9000, file=sys.stderr)"
    result = dp.run(sid, code)["result"]
    assert result["stdout"] == "a" * 4096 and result["stderr"] == "e" * 4096
    bigger = dp.run(sid, "print('b' * 10000)", outputStreamsMaxLength=20000)["result"]
    assert bigger["stdout"] == "b" * 10000 + "\n"
    legacy = dp.legacy(sid, "print('c' * 5000)").json()["properties"]
    assert len(legacy["stdout"]) == 4096


def test_timeout_interrupts_and_the_session_survives(dp: Client) -> None:
    sid = ident()
    dp.run(sid, "kept = 'yes'")
    started = time.monotonic()
    body = dp.run(sid, "import time\ntime.sleep(30)", timeoutInSeconds=1)
    assert time.monotonic() - started < 30  # interrupted, not run to its end (no speed bound: bench/)
    assert body["status"] == "Failed" and "KeyboardInterrupt" in body["result"]["stderr"]
    assert body["error"]["code"] == "ExecutionTimedOut"
    assert dp.run(sid, "kept")["result"]["executionResult"] == "yes"


def test_executions_in_one_session_are_serialised(dp: Client) -> None:
    sid = ident()
    dp.run(sid, "import time")
    code = "t0 = time.time(); time.sleep(0.6); (t0, time.time())"
    with ThreadPoolExecutor(3) as pool:
        spans = sorted(pool.map(lambda _: tuple(dp.run(sid, code)["result"]["executionResult"]), range(3)))
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.01


def test_async_execution_and_get_execution(dp: Client) -> None:
    sid = ident()
    response = dp.execute(sid, "import time; time.sleep(0.3); 7", executionType="Asynchronous")
    assert response.status_code == 202
    assert response.json()["status"] == "Running"
    location = response.headers["Operation-Location"]
    assert response.json()["id"] in location and f"identifier={sid}" in location
    deadline = time.monotonic() + 10
    while True:
        polled = requests.get(location, headers=dp.headers, timeout=10).json()
        if polled["status"] not in ("NotStarted", "Running") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert polled["status"] == "Succeeded" and polled["result"]["executionResult"] == 7
    missing = dp.call("GET", "/executions/nope", identifier=sid)
    assert missing.status_code == 404 and error_code(missing) == "ExecutionNotFound"


def test_client_chosen_operation_id(dp: Client) -> None:
    sid, op = ident(), str(uuid.uuid4())
    response = dp.call("POST", "/executions", identifier=sid, json={"code": "1"}, headers={"operation-id": op})
    assert response.headers["operation-id"] == op and response.json()["id"] == op
    assert dp.call("GET", f"/executions/{op}", identifier=sid).json()["result"]["executionResult"] == 1


# -- files -------------------------------------------------------------------------------------------
def test_files_roundtrip_new_api(dp: Client) -> None:
    sid = ident()
    payload = os.urandom(50_000)
    up = dp.call("POST", "/files", identifier=sid, files={"file": ("input.bin", payload)})
    assert up.status_code == 200
    assert up.json()["name"] == "input.bin" and up.json()["sizeInBytes"] == 50_000 and up.json()["type"] == "File"
    assert dp.run(sid, "len(open('input.bin', 'rb').read())")["result"]["executionResult"] == 50_000
    # large output goes to a file, then comes back through the files API (the inline cap is 4096)
    dp.run(sid, "open('out.txt', 'w').write('z' * 100_000)")
    names = {f["name"]: f for f in dp.call("GET", "/files", identifier=sid).json()["value"]}
    assert set(names) == {"input.bin", "out.txt"} and names["out.txt"]["sizeInBytes"] == 100_000
    content = dp.call("GET", "/files/out.txt/content", identifier=sid)
    assert content.status_code == 200 and content.content == b"z" * 100_000
    assert content.headers["Content-Type"] == "application/octet-stream"
    assert dp.call("GET", "/files/input.bin", identifier=sid).json()["sizeInBytes"] == 50_000
    assert dp.call("DELETE", "/files/input.bin", identifier=sid).status_code == 204
    gone = dp.call("GET", "/files/input.bin", identifier=sid)
    assert gone.status_code == 404 and error_code(gone) == "FileNotFound"
    # another session cannot see the file
    assert dp.call("GET", "/files/out.txt/content", identifier=ident()).status_code == 404


def test_files_subdirectory_and_recursive_listing(dp: Client) -> None:
    sid = ident()
    dp.call("POST", "/files", identifier=sid, params={"path": "sub"}, files={"file": ("a.csv", b"1,2\n")})
    assert dp.run(sid, "open('sub/a.csv').read()")["result"]["executionResult"] == "1,2\n"
    flat = dp.call("GET", "/files", identifier=sid).json()["value"]
    assert [(f["name"], f["type"]) for f in flat] == [("sub", "Directory")]
    deep = dp.call("GET", "/files", identifier=sid, params={"recursive": "true"}).json()["value"]
    assert {(f["name"], f["directory"]) for f in deep} == {("sub", ""), ("a.csv", "sub")}
    bad = dp.call("GET", "/files", identifier=sid, params={"path": "../etc"})
    assert bad.status_code == 400


def test_files_roundtrip_legacy_api(dp: Client) -> None:
    sid = ident()
    up = dp.call("POST", "/files/upload", api=LEGACY, identifier=sid, files={"file": ("data.txt", b"legacy data")})
    assert up.status_code == 200
    props = up.json()["value"][0]["properties"]
    assert props["filename"] == "data.txt" and props["size"] == 11
    listing = dp.call("GET", "/files", api=LEGACY, identifier=sid).json()
    assert listing["$id"] == "1" and [v["properties"]["filename"] for v in listing["value"]] == ["data.txt"]
    content = dp.call("GET", "/files/content/data.txt", api=LEGACY, identifier=sid)
    assert content.content == b"legacy data"
    assert dp.legacy(sid, "open('data.txt').read()").json()["properties"]["result"] == "legacy data"


# -- identity and auth -------------------------------------------------------------------------------
def _isolate_identity_env(monkeypatch: pytest.MonkeyPatch, emu: EmulatorProcess, **extra: str) -> None:
    for name in list(os.environ):
        if name.startswith(("AZURE_", "MSI_", "IDENTITY_")):
            monkeypatch.delenv(name)
    for name, value in {**emu.identity_env(), **extra}.items():
        monkeypatch.setenv(name, value)


def test_default_azure_credential_gets_token_and_calls_data_plane(
    clean: EmulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    _isolate_identity_env(monkeypatch, clean)
    credential = DefaultAzureCredential()
    access = credential.get_token("https://dynamicsessions.io/.default")
    claims = jwt.decode(access.token, options={"verify_signature": False})
    assert claims["aud"] == DATA_PLANE and claims["oid"] == DEFAULT_PRINCIPAL_ID and claims["appid"] == DEFAULT_CLIENT_ID
    assert 3500 < access.expires_on - time.time() <= 3600
    assert credential.get_token("https://dynamicsessions.io/.default").token == access.token  # cached
    body = Client(clean, access.token).run(ident(), "'via azure-identity'")
    assert body["result"]["executionResult"] == "via azure-identity"
    state = clean.state()
    assert state["tokens_issued"] == 1 and state["calls"]["token"] == 1


def test_short_token_lifetime_makes_the_credential_refetch(clean: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    # MSAL treats a cached token with < 5 minutes left as expired, so a 2-minute token is refetched.
    clean.configure(token_lifetime_s=120)
    _isolate_identity_env(monkeypatch, clean)
    credential = ManagedIdentityCredential()
    first = credential.get_token("https://dynamicsessions.io/.default")
    credential.get_token("https://dynamicsessions.io/.default")
    assert 100 < first.expires_on - time.time() <= 120
    assert clean.state()["tokens_issued"] == 2


def test_user_assigned_identity_via_azure_client_id(clean: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    _isolate_identity_env(monkeypatch, clean, AZURE_CLIENT_ID=UNAUTHORIZED_CLIENT_ID)
    access = DefaultAzureCredential().get_token("https://dynamicsessions.io/.default")
    assert jwt.decode(access.token, options={"verify_signature": False})["appid"] == UNAUTHORIZED_CLIENT_ID
    assert clean.state()["tokens"][0]["client_id"] == UNAUTHORIZED_CLIENT_ID


def test_token_endpoint_contract(emu: EmulatorProcess) -> None:
    ok = msi_token(emu).json()
    assert set(ok) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert isinstance(ok["expires_on"], str) and ok["token_type"] == "Bearer" and ok["resource"] == DATA_PLANE
    url, params = emu.env["IDENTITY_ENDPOINT"], {"api-version": "2019-08-01", "resource": DATA_PLANE}
    missing = requests.get(url, params=params, timeout=10)
    assert missing.status_code == 400 and missing.json()["statusCode"] == 400
    wrong = requests.get(url, params=params, headers={"X-IDENTITY-HEADER": "nope"}, timeout=10)
    assert wrong.status_code == 401 and "message" in wrong.json()
    assert msi_token(emu, **{"api-version": "2017-09-01"}).status_code == 400
    assert msi_token(emu, client_id=str(uuid.uuid4())).status_code == 400
    assert msi_token(emu, client_id=UNAUTHORIZED_CLIENT_ID).json()["client_id"] == UNAUTHORIZED_CLIENT_ID


def test_401_for_missing_bad_expired_and_wrong_audience_tokens(emu: EmulatorProcess, dp: Client) -> None:
    sid = ident()
    tokens = {
        "missing": None,
        "bad-signature": jwt.encode(
            {"aud": DATA_PLANE, "oid": DEFAULT_PRINCIPAL_ID, "exp": int(time.time()) + 600}, "x" * 32, algorithm="HS256"
        ),
        "expired": emu.token(lifetime_s=-60),
        "wrong-audience": msi_token(emu, resource=ARM).json()["access_token"],
    }
    codes = {}
    for name, value in tokens.items():
        headers = {} if value is None else {"Authorization": f"Bearer {value}"}
        response = requests.post(
            dp.endpoint + "/executions",
            params={"api-version": NEW, "identifier": sid},
            headers=headers,
            json={"code": "1"},
            timeout=10,
        )
        assert response.status_code == 401, name
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        codes[name] = error_code(response)
    assert codes["expired"] == "ExpiredAuthenticationToken"
    assert codes["wrong-audience"] == "InvalidAuthenticationTokenAudience"
    assert codes["bad-signature"] == "InvalidAuthenticationToken"
    # the legacy SK audience is accepted by default
    assert Client(emu, emu.token("https://acasessions.io")).execute(sid, "1").status_code == 200


def test_403_for_a_principal_without_the_role(emu: EmulatorProcess) -> None:
    other = msi_token(emu, client_id=UNAUTHORIZED_CLIENT_ID).json()["access_token"]
    response = Client(emu, other).execute(ident(), "1")
    assert response.status_code == 403 and error_code(response) == "AuthorizationFailed"


def test_allow_list_can_change_at_run_time(clean: EmulatorProcess) -> None:
    other = Client(clean, msi_token(clean, client_id=UNAUTHORIZED_CLIENT_ID).json()["access_token"])
    assert other.execute(ident(), "1").status_code == 403
    clean.configure(allowed_principals=[DEFAULT_PRINCIPAL_ID, other_principal(other)])
    assert other.execute(ident(), "1").status_code == 200


def other_principal(client: Client) -> str:
    token = client.headers["Authorization"].split()[1]
    return jwt.decode(token, options={"verify_signature": False})["oid"]


# -- request validation ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"identifier": "abcd1"}, "MissingApiVersionParameter"),
        ({"api-version": "2023-01-01", "identifier": "abcd1"}, "UnsupportedApiVersion"),
        ({"api-version": NEW}, "MissingIdentifier"),
        ({"api-version": NEW, "identifier": "abc"}, "InvalidSessionIdentifier"),
        ({"api-version": NEW, "identifier": "x" * 129}, "InvalidSessionIdentifier"),
        ({"api-version": NEW, "identifier": "bad/slash"}, "InvalidSessionIdentifier"),
    ],
)
def test_400_for_api_version_and_identifier(dp: Client, params: dict[str, str], code: str) -> None:
    response = requests.post(dp.endpoint + "/executions", params=params, headers=dp.headers, json={"code": "1"}, timeout=10)
    assert response.status_code == 400 and error_code(response) == code


def test_identifiers_must_satisfy_every_documented_rule(clean: EmulatorProcess, dp: Client) -> None:
    assert dp.execute(str(uuid.uuid4()), "1").status_code == 200
    assert dp.execute("pst-" + "0123456789abcdef" * 2, "1").status_code == 200
    for only_some_rules_allow in ("u_0123456789", "a|b-c&d^e%f$g#h(i){j}[k];<l>", "sl/ash"):
        refused = dp.execute(only_some_rules_allow, "1")
        assert refused.status_code == 400 and error_code(refused) == "InvalidSessionIdentifier"
        assert "every documented rule" in refused.json()["error"]["message"]
    clean.configure(identifier_rule="union")  # what any source accepts
    assert dp.execute("a|b-c&d^e%f$g#h(i){j}[k];<l>_m", "1").status_code == 200
    assert dp.execute("has space", "1").status_code == 400


def test_session_properties_missing_for_the_wrong_body_shape(clean: EmulatorProcess, dp: Client) -> None:
    sid = ident()
    wrapped = {"properties": {"code": "1"}}
    on_new = dp.call("POST", "/executions", identifier=sid, json=wrapped)
    assert on_new.status_code == 400 and error_code(on_new) == "SessionPropertiesMissing"
    on_legacy = dp.call("POST", "/code/execute", api=LEGACY, identifier=sid, json={"code": "1"})
    assert on_legacy.status_code == 400 and error_code(on_legacy) == "SessionPropertiesMissing"
    # a client testing its fallback flips the accepted shape at run time
    clean.configure(executions_body="wrapped")
    flat = dp.call("POST", "/executions", identifier=sid, json={"code": "1"})
    assert flat.status_code == 400 and error_code(flat) == "SessionPropertiesMissing"
    assert dp.call("POST", "/executions", identifier=sid, json=wrapped).json()["status"] == "Succeeded"
    bad = dp.call("POST", "/executions", identifier=sid, json=wrapped | {"properties": {"code": 5}})
    assert bad.status_code == 400 and error_code(bad) == "SessionRequestValidationFailed"


def test_unknown_pool_is_404(dp: Client) -> None:
    url = dp.endpoint.replace("emulatorpool", "otherpool") + "/executions"
    response = requests.post(url, params={"api-version": NEW, "identifier": "abcd1"}, json={"code": "1"}, timeout=10)
    assert response.status_code == 404 and error_code(response) == "SessionPoolNotFound"
    wrong_route = dp.call("POST", "/python/execute", identifier="abcd1", json={"code": "1"})
    assert wrong_route.status_code == 404 and error_code(wrong_route) == "RouteNotFound"
    assert "/python/execute" in wrong_route.json()["error"]["message"]
    wrong_pool_and_route = requests.get(url.replace("/executions", "/nothing"), timeout=10)
    assert wrong_pool_and_route.status_code == 404 and error_code(wrong_pool_and_route) == "SessionPoolNotFound"
    outside = requests.get(dp.endpoint.split("/subscriptions/")[0] + "/nothing/here", timeout=10)
    assert outside.status_code == 404 and error_code(outside) == "NotFound"


def test_wrong_region_is_404(dp: Client) -> None:
    """The region is the host name (https://<region>.dynamicsessions.io); the pool is in --location only."""
    right = dp.call("POST", "/executions", identifier=ident(), json={"code": "1"}, headers={"Host": "westus2.dynamicsessions.io"})
    assert right.status_code == 200
    wrong = dp.call("POST", "/executions", identifier=ident(), json={"code": "1"}, headers={"Host": "eastus.dynamicsessions.io"})
    assert wrong.status_code == 404 and error_code(wrong) == "SessionPoolNotFound"
    assert "region 'eastus'" in wrong.json()["error"]["message"]


# -- session lifecycle -------------------------------------------------------------------------------
def test_max_concurrent_sessions_gives_404(clean: EmulatorProcess, dp: Client) -> None:
    clean.configure(max_sessions=2)
    first, second = ident(), ident()
    dp.run(first, "1")
    dp.run(second, "1")
    full = dp.execute(ident(), "1")
    assert full.status_code == 404 and error_code(full) == "MaxConcurrentSessionsReached"
    assert dp.execute(first, "2").status_code == 200  # existing sessions keep working
    assert dp.call("DELETE", "/session", identifier=first).status_code == 204
    assert dp.execute(ident(), "3").status_code == 200  # room again


def test_session_get_list_and_delete(dp: Client) -> None:
    sid = ident()
    guid = dp.execute(sid, "z = 1").headers["X-Ms-Session-Guid"]
    info = dp.call("GET", "/session", identifier=sid).json()
    assert info["identifier"] == sid and {"expireAt", "createdAt", "lastAccessedAt", "etag"} <= set(info)
    listed = dp.call("GET", "/listSessions").json()
    assert sid in [s["identifier"] for s in listed["sessions"]] and listed["nextLink"] is None
    assert dp.call("DELETE", "/session", identifier=sid).status_code == 204
    gone = dp.call("GET", "/session", identifier=sid)
    assert gone.status_code == 404 and error_code(gone) == "SessionWithIdentifierNotFound"
    fresh = dp.execute(sid, "z")
    assert fresh.json()["status"] == "Failed" and fresh.headers["X-Ms-Session-Guid"] != guid


def test_cooldown_removes_idle_sessions_and_calls_reset_the_timer(clean: EmulatorProcess, dp: Client) -> None:
    clean.configure(cooldown_s=1.5)
    idle, busy = ident(), ident()
    dp.run(idle, "v = 1")
    dp.run(busy, "v = 2")
    pid = next(s["kernel_pid"] for s in clean.state()["sessions"] if s["identifier"] == idle)
    for _ in range(8):  # 2.4 s of calls at 0.3 s intervals keep `busy` alive
        assert dp.call("GET", "/files", identifier=busy).status_code == 200
        time.sleep(0.3)
    remaining = {s["identifier"] for s in clean.state()["sessions"]}
    assert idle not in remaining and busy in remaining
    assert clean.state()["sessions_expired"] >= 1
    assert wait_until(lambda: not pid_alive(pid), 5)
    assert dp.run(busy, "v")["result"]["executionResult"] == 2
    assert dp.run(idle, "v")["status"] == "Failed"  # a fresh session on reuse


def test_metadata(dp: Client) -> None:
    body = dp.call("GET", "/metadata").json()
    assert body["runtimes"][0]["name"] == "python" and body["jupyterKernel"]["name"] == "python3"
    assert any(p["name"].lower() == "ipykernel" for p in body["preInstalledPackages"])


# -- faults ------------------------------------------------------------------------------------------
def test_fault_429_with_retry_after_then_recovers(clean: EmulatorProcess, dp: Client) -> None:
    clean.set_fault(operation="execute", status=429, retry_after=1, count=1)
    sid = ident()
    throttled = dp.execute(sid, "1")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1"
    assert error_code(throttled) == "TooManyRequests"
    assert dp.execute(sid, "1").status_code == 200
    state = clean.state()
    assert state["faults_fired"] == 1 and state["faults"] == [] and state["calls"]["execute"] == 2


def test_fault_5xx_identifier_filter_and_probability(clean: EmulatorProcess, dp: Client) -> None:
    target = ident()
    clean.set_fault(operation="dataplane", status=503, identifier=target)
    clean.set_fault(operation="execute", status=500, probability=0.0)
    failed = dp.execute(target, "1")
    assert failed.status_code == 503 and error_code(failed) == "ServiceUnavailable"
    assert dp.call("GET", "/files", identifier=target).status_code == 503
    assert dp.execute(ident(), "1").status_code == 200
    clean.clear_faults()
    assert dp.execute(target, "1").status_code == 200


def test_fault_latency_and_global_latency(clean: EmulatorProcess, dp: Client) -> None:
    clean.set_fault(operation="metadata", latency_ms=400)
    started = time.monotonic()
    assert dp.call("GET", "/metadata").status_code == 200
    assert time.monotonic() - started >= 0.4
    clean.clear_faults()
    clean.configure(latency_ms=300)
    started = time.monotonic()
    assert msi_token(clean).status_code == 200
    assert time.monotonic() - started >= 0.3
    # The control API is never slowed down: with 120 s of latency on every other route, it still
    # answers within its client's 60 s timeout (no speed bound here: speed is bench/'s).
    clean.configure(latency_ms=120_000)
    assert clean.state()["calls"] is not None
    clean.configure(latency_ms=0)


def test_fault_hang_until_client_timeout_and_timed_hang(clean: EmulatorProcess, dp: Client) -> None:
    clean.set_fault(operation="metadata", hang=True, count=1)
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        requests.get(dp.endpoint + "/metadata", params={"api-version": NEW}, headers=dp.headers, timeout=0.5)
    clean.set_fault(operation="metadata", hang=0.5, count=1)
    started = time.monotonic()
    with pytest.raises(requests.ConnectionError):
        dp.call("GET", "/metadata")
    assert time.monotonic() - started >= 0.5
    assert dp.call("GET", "/metadata").status_code == 200


def test_fault_drop_closes_the_connection(clean: EmulatorProcess, dp: Client) -> None:
    clean.set_fault(operation="execute", drop=True, count=1)
    with pytest.raises(requests.ConnectionError):
        dp.execute(ident(), "1")
    assert dp.execute(ident(), "1").status_code == 200


def test_token_endpoint_faults_seen_by_azure_identity(clean: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    _isolate_identity_env(monkeypatch, clean)
    # one throttled answer: azure-core's retry policy honours Retry-After and the credential succeeds
    clean.set_fault(operation="token", status=429, retry_after=1, count=1)
    started = time.monotonic()
    ManagedIdentityCredential().get_token("https://dynamicsessions.io/.default")
    assert time.monotonic() - started >= 1
    assert clean.state()["calls"]["token"] == 2
    # a hard failure surfaces as an authentication error
    clean.set_fault(operation="token", status=400, message="identity broken")
    with pytest.raises(ClientAuthenticationError, match="identity broken"):
        ManagedIdentityCredential().get_token("https://dynamicsessions.io/.default")
    clean.clear_faults()
    # a body that is not JSON: MSAL re-raises the decode error
    clean.set_fault(operation="token", status=200, body="<html>gateway</html>", count=1)
    with pytest.raises(ValueError):
        ManagedIdentityCredential().get_token("https://dynamicsessions.io/.default")


def test_fault_rules_are_validated(emu: EmulatorProcess) -> None:
    response = requests.post(f"{emu.base_url}/_emulator/faults", json={"operation": "nope", "status": 500}, timeout=5)
    assert response.status_code == 400
    response = requests.post(f"{emu.base_url}/_emulator/faults", json={"operation": "execute"}, timeout=5)
    assert response.status_code == 400


# -- ARM -----------------------------------------------------------------------------------------------
def test_arm_resolves_the_pool_with_the_real_mgmt_client(emu: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    _isolate_identity_env(monkeypatch, emu)
    credential = DefaultAzureCredential()
    client = ContainerAppsAPIClient(credential, emu.env["AZURE_SUBSCRIPTION_ID"], base_url=emu.base_url)
    pools = client.container_apps_session_pools
    with pytest.raises(ServiceRequestError, match="non-TLS"):
        # azure-core refuses bearer tokens over http (retry_total=0 skips its connect-error backoff)
        pools.get(emu.env["AZURE_RESOURCE_GROUP"], emu.env["SESSION_POOL_NAME"], retry_total=0)
    pool = pools.get(emu.env["AZURE_RESOURCE_GROUP"], emu.env["SESSION_POOL_NAME"], enforce_https=False)
    assert pool.properties.pool_management_endpoint == emu.pool_endpoint
    assert pool.properties.container_type == "PythonLTS" and pool.type == "Microsoft.App/sessionPools"
    assert pool.properties.scale_configuration.max_concurrent_sessions == 60
    with pytest.raises(ResourceNotFoundError) as missing:
        pools.get(emu.env["AZURE_RESOURCE_GROUP"], "nosuchpool", enforce_https=False)
    assert missing.value.status_code == 404 and missing.value.error.code == "ResourceNotFound"
    listed = list(pools.list_by_resource_group(emu.env["AZURE_RESOURCE_GROUP"], enforce_https=False))
    assert [p.name for p in listed] == [emu.env["SESSION_POOL_NAME"]]
    # the resolved endpoint works with a data-plane token from the same credential
    data_token = credential.get_token("https://dynamicsessions.io/.default").token
    assert Client(emu, data_token).execute(ident(), "1").status_code == 200


def test_arm_wants_a_management_token(emu: EmulatorProcess, token: str) -> None:
    url = f"{emu.base_url}/subscriptions/{emu.env['AZURE_SUBSCRIPTION_ID']}/resourceGroups/emulator-rg"
    url += "/providers/Microsoft.App/sessionPools/emulatorpool"
    wrong = requests.get(url, params={"api-version": "2025-07-01"}, headers={"Authorization": f"Bearer {token}"})
    assert wrong.status_code == 401 and error_code(wrong) == "InvalidAuthenticationTokenAudience"
    arm_headers = {"Authorization": f"Bearer {msi_token(emu, resource=ARM).json()['access_token']}"}
    preview = requests.get(url, params={"api-version": "2024-08-02-preview"}, headers=arm_headers, timeout=10).json()
    assert preview["properties"]["dynamicPoolConfiguration"]["executionType"] == "Timed"
    no_version = requests.get(url, headers=arm_headers, timeout=10)
    assert no_version.status_code == 400 and error_code(no_version) == "MissingApiVersionParameter"


# -- load ----------------------------------------------------------------------------------------------
def test_handles_250_concurrent_requests(emu: EmulatorProcess, dp: Client) -> None:
    sids = [ident() for _ in range(4)]

    def one(i: int) -> int:
        if i % 10 == 0:
            return dp.execute(sids[i % 4], f"{i}").status_code
        if i % 2:
            return msi_token(emu).status_code
        return dp.call("GET", "/metadata").status_code

    barrier = threading.Barrier(50)

    def burst(i: int) -> int:
        if i < 50:
            barrier.wait(timeout=30)
        return one(i)

    with ThreadPoolExecutor(250) as pool:
        statuses = list(pool.map(burst, range(250)))
    assert statuses == [200] * 250


# -- processes: CLI flags and shutdown -----------------------------------------------------------------
def test_cli_flags_body_shape_capacity_audience_and_time_cap() -> None:
    with EmulatorProcess(
        ready_sessions=0, reject_flat_executions=True, max_sessions=1, strict_audience=True, max_execution_seconds=1
    ) as emu:
        client = Client(emu, msi_token(emu).json()["access_token"])
        sid = ident()
        flat = client.call("POST", "/executions", identifier=sid, json={"code": "1"})
        assert flat.status_code == 400 and error_code(flat) == "SessionPropertiesMissing"
        started = time.monotonic()
        capped = client.call(
            "POST",
            "/executions",
            identifier=sid,
            json={"properties": {"code": "import time; time.sleep(20)", "timeoutInSeconds": 100}},
        )
        assert capped.json()["status"] == "Failed" and time.monotonic() - started < 20  # cut short, not slept out
        full = client.call("POST", "/executions", identifier=ident(), json={"properties": {"code": "1"}})
        assert full.status_code == 404
        legacy_aud = Client(emu, emu.token("https://acasessions.io")).execute(sid, "1")
        assert legacy_aud.status_code == 401


def test_sigterm_stops_every_kernel() -> None:
    emu = EmulatorProcess(ready_sessions=1).start()
    try:
        client = Client(emu, msi_token(emu).json()["access_token"])
        marker = f"0.{uuid.uuid4().int % 10**12:012d}"  # `sleep 300 0.<digits>`: findable on the host
        for _ in range(2):
            client.run(ident(), f"import subprocess\nsubprocess.Popen(['sleep', '300', '{marker}']).pid")
        children = host_pids(marker)
        assert len(children) == 2
        assert wait_until(lambda: len(emu.state()["kernels"]["pids"]) == 3, 10)  # 2 sessions + 1 ready
        pids = emu.state()["kernels"]["pids"]
        assert all(pid_alive(p) for p in pids + children)
    finally:
        assert emu.stop() == 0
    # SIGKILLed grandchildren take a moment to die on a loaded machine
    assert children and wait_until(lambda: not any(pid_alive(p) for p in pids + children), 5)


def test_kernels_exit_even_if_the_emulator_is_killed(tmp_path: Path) -> None:
    emu = EmulatorProcess(ready_sessions=1, data_root=tmp_path).start()  # SIGKILL: no temp-dir cleanup
    try:
        assert wait_until(lambda: len(emu.state()["kernels"]["pids"]) == 1, 10)
        pids = emu.state()["kernels"]["pids"]
        assert emu.pid is not None
        os.kill(emu.pid, signal.SIGKILL)  # no cleanup runs: bwrap's --die-with-parent must notice
        assert wait_until(lambda: not any(pid_alive(p) for p in pids), 10)
    finally:
        emu.stop()
        Path(emu.log_path).unlink(missing_ok=True)


def test_emulator_stops_when_its_launcher_dies() -> None:
    launcher_code = (
        "import sys, time\n"
        "from emulator.testing import EmulatorProcess\n"
        "emu = EmulatorProcess(ready_sessions=1).start()\n"
        "print(emu.pid, emu.base_url, emu.log_path, flush=True)\n"
        "time.sleep(600)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    launcher = subprocess.Popen([sys.executable, "-c", launcher_code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert launcher.stdout is not None
        pid_text, base_url, log_path = launcher.stdout.readline().split()
        state_url = f"{base_url}/_emulator/state"
        assert wait_until(lambda: len(requests.get(state_url, timeout=5).json()["kernels"]["pids"]) == 1, 10)
        kernels = requests.get(state_url, timeout=5).json()["kernels"]["pids"]
    finally:
        launcher.kill()  # like a test runner killed with SIGKILL: nobody calls stop()
        launcher.wait()
        if launcher.stdout is not None:
            launcher.stdout.close()
    assert wait_until(lambda: not pid_alive(int(pid_text)), 10)
    assert wait_until(lambda: not any(pid_alive(p) for p in kernels), 5)
    Path(log_path).unlink(missing_ok=True)
