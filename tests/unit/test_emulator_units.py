"""Emulator pieces that need no kernel: parsing, tokens, faults, outputs, and the app's checks.

The app tests use Flask's test client with ``ready_sessions=0``, so no kernel process is ever started
(every request here is answered before a session would be allocated).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import jwt
import pytest
from flask.testing import FlaskClient

from emulator import Settings, close_app, create_app
from emulator.__main__ import build_parser, settings_from_args
from emulator.auth import TokenService
from emulator.checks import IDENTIFIER_RE, IDENTIFIER_RULES
from emulator.errors import EmulatorError
from emulator.executions import parse_execute_body
from emulator.faults import FaultStore, parse_rule
from emulator.files import check_name
from emulator.outputs import OutputCollector, result_value, strip_ansi
from emulator.settings import (
    DEFAULT_IDENTITIES,
    DEFAULT_PRINCIPAL_ID,
    UNAUTHORIZED_CLIENT_ID,
    Identity,
)

NEW = "2025-10-02-preview"


# -- outputs -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", 42),
        ("'abc'", "abc"),
        ("{'a': [1, 2.5, None, True]}", {"a": [1, 2.5, None, True]}),
        ("(1, 2)", [1, 2]),
        ("{1, 2}", "{1, 2}"),  # not JSON: stays the repr
        ("nan", "nan"),
        ("<object at 0x1>", "<object at 0x1>"),
        ("{1: 2}", "{1: 2}"),
    ],
)
def test_result_value_from_text_repr(text: str, expected: object) -> None:
    assert result_value({"text/plain": text}) == expected


def test_result_value_prefers_images_and_json() -> None:
    assert result_value({"image/png": "AAA", "text/plain": "<Figure>"}) == {
        "type": "image",
        "format": "png",
        "base64_data": "AAA",
    }
    assert result_value({"application/json": {"x": 1}, "text/plain": "..."}) == {"x": 1}


def test_collector_caps_each_stream_and_cleans_tracebacks() -> None:
    collector = OutputCollector(limit=5)
    collector.feed("stream", {"name": "stdout", "text": "abc"})
    collector.feed("stream", {"name": "stdout", "text": "defgh"})
    collector.feed("error", {"ename": "E", "evalue": "v", "traceback": ["\x1b[31mE\x1b[39m: v"]})
    assert collector.stdout == "abcde"
    assert collector.stderr == "E: v\n" and collector.error_name == "E"
    assert strip_ansi("\x1b[1;32mok\x1b[0m") == "ok"


# -- execute bodies ------------------------------------------------------------------------------------
def test_execute_body_shapes() -> None:
    flat, wrapped = {"code": "1"}, {"properties": {"code": "1"}}
    assert parse_execute_body(flat, "flat", max_execution_s=220).code == "1"
    assert parse_execute_body(wrapped, "wrapped", max_execution_s=220).code == "1"
    assert parse_execute_body(wrapped, "any", max_execution_s=220).code == "1"
    assert parse_execute_body(flat, "any", max_execution_s=220).code == "1"
    for body, shape in ((wrapped, "flat"), (flat, "wrapped"), ({}, "any")):
        with pytest.raises(EmulatorError) as err:
            parse_execute_body(body, shape, max_execution_s=220)
        assert (err.value.status, err.value.code) == (400, "SessionPropertiesMissing")


def test_execute_body_fields() -> None:
    encoded = base64.b64encode(b"print(1)").decode()
    req = parse_execute_body(
        {"code": encoded, "codeInputType": "InlineBase64", "executionType": "asynchronous", "timeoutInSeconds": 999},
        "flat",
        max_execution_s=220,
    )
    assert (req.code, req.asynchronous, req.timeout_s, req.output_limit) == ("print(1)", True, 220.0, 4096)
    assert parse_execute_body({"code": "1"}, "flat", max_execution_s=220).timeout_s == 220.0
    bad_bodies = [
        {"code": 1},
        {"code": "1", "codeInputType": "file"},
        {"code": "!!", "codeInputType": "InlineBase64"},
        {"code": "1", "executionType": "later"},
        {"code": "1", "timeoutInSeconds": 0},
        {"code": "1", "timeoutInSeconds": True},
        {"code": "1", "outputStreamsMaxLength": -1},
        ["code"],
    ]
    for body in bad_bodies:
        with pytest.raises(EmulatorError) as err:
            parse_execute_body(body, "flat", max_execution_s=220)
        assert err.value.code == "SessionRequestValidationFailed", body


# -- names -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["abcd", "u-0123456789abcdef", "ABCD-1234", "x" * 128])
def test_identifier_accepted(value: str) -> None:
    assert IDENTIFIER_RE.match(value)


@pytest.mark.parametrize(
    "value", ["abc", "x" * 129, "has space", "sl/ash", "dot.ted", "é-accent", "u_0123", "a|b&c^d%e$f#g(h){i}[j];k<l>m"]
)
def test_identifier_rejected(value: str) -> None:
    assert not IDENTIFIER_RE.match(value)


@pytest.mark.parametrize("value", ["a|b&c^d%e$f#g(h){i}[j];k<l>m_n", "sl/ash", "dot.ted", "u_0123"])
def test_identifier_union_rule_accepts_what_some_source_allows(value: str) -> None:
    assert IDENTIFIER_RULES["union"].match(value) and not IDENTIFIER_RULES["common"].match(value)


def test_file_names() -> None:
    assert check_name("report (1) @v2.csv") == "report (1) @v2.csv"
    assert check_name("données.txt") == "données.txt"
    for bad in ("..", ".", "a/b", "a\\b", "", "x" * 256, "star*.txt"):
        with pytest.raises(EmulatorError):
            check_name(bad)


# -- tokens ----------------------------------------------------------------------------------------------
def test_token_roundtrip_and_rejections() -> None:
    service = TokenService("secret" * 6)
    identity = DEFAULT_IDENTITIES[0]
    token, expires_on = service.issue(audience="https://dynamicsessions.io", identity=identity, lifetime_s=600)
    assert 590 < expires_on - time.time() <= 600
    claims = service.validate(token, ["https://dynamicsessions.io"])
    assert claims["oid"] == identity.principal_id and claims["appid"] == identity.client_id
    cases = {
        "ExpiredAuthenticationToken": service.issue(audience="https://dynamicsessions.io", identity=identity, lifetime_s=-5)[0],
        "InvalidAuthenticationTokenAudience": service.issue(
            audience="https://vault.azure.net", identity=identity, lifetime_s=600
        )[0],
        "InvalidAuthenticationToken": TokenService("other" * 8).issue(
            audience="https://dynamicsessions.io", identity=identity, lifetime_s=600
        )[0],
    }
    for code, bad in cases.items():
        with pytest.raises(EmulatorError) as err:
            service.validate(bad, ["https://dynamicsessions.io"])
        assert (err.value.status, err.value.code) == (401, code)


# -- faults ----------------------------------------------------------------------------------------------
def test_fault_rule_parsing() -> None:
    rule = parse_rule({"operation": "execute", "status": 429, "retry_after": 2, "count": 2})
    assert (rule.status, rule.retry_after, rule.count) == (429, 2.0, 2)
    assert parse_rule({"hang": True}).hang == 600.0
    for bad in ({"status": 429, "colour": "red"}, {"operation": "x", "status": 500}, {"count": 1}, {"status": "500"}):
        with pytest.raises(ValueError):
            parse_rule(bad)


def test_fault_matching_count_and_probability() -> None:
    store = FaultStore()
    store.add(parse_rule({"operation": "dataplane", "status": 503, "count": 2, "identifier": "abcd"}))
    store.add(parse_rule({"operation": "token", "status": 500, "probability": 0.0}))
    assert store.match("token", None, "GET") is None
    assert store.match("files", "other", "GET") is None
    assert store.match("arm", "abcd", "GET") is None
    assert store.match("files", "abcd", "GET") is not None
    assert store.match("execute", "abcd", "POST") is not None
    assert store.match("execute", "abcd", "POST") is None  # count exhausted, rule removed
    assert len(store.list()) == 1 and store.fired_total == 2


# -- settings and CLI ------------------------------------------------------------------------------------
def test_settings_validation() -> None:
    for bad in ({"max_sessions": 0}, {"max_sessions": 601}, {"executions_body": "xml"}, {"cooldown_s": 0}):
        with pytest.raises(ValueError):
            Settings(**bad)  # type: ignore[arg-type]


def test_cli_flags_map_to_settings() -> None:
    args = build_parser().parse_args(
        [
            "--port",
            "0",
            "--max-sessions",
            "3",
            "--cooldown",
            "2.5",
            "--reject-flat-executions",
            "--strict-audience",
            "--allowed-principals",
            "a",
            "b",
            "--user-identity",
            "cid:pid:name",
            "--identity-header",
            "hdr",
        ]
    )
    settings = settings_from_args(args)
    assert (settings.max_sessions, settings.cooldown_s, settings.executions_body) == (3, 2.5, "wrapped")
    assert settings.allowed_principals == ("a", "b") and not settings.accept_legacy_audience
    assert settings.identities[-1] == Identity("cid", "pid", "name") and settings.identity_header == "hdr"


# -- the app, in process, without kernels ----------------------------------------------------------------
@pytest.fixture
def app_client() -> Iterator[tuple[FlaskClient, Settings]]:
    settings = Settings(ready_sessions=0, identity_header="hdr")
    app = create_app(settings)
    try:
        yield app.test_client(), settings
    finally:
        close_app(app)


def _token(client: FlaskClient, **params: str) -> str:
    query = {"api-version": "2019-08-01", "resource": "https://dynamicsessions.io", **params}
    response = client.get("/msi/token", query_string=query, headers={"X-IDENTITY-HEADER": "hdr"})
    assert response.status_code == 200, response.json
    return response.json["access_token"]


def test_app_token_endpoint_and_auth_checks(app_client: tuple[FlaskClient, Settings]) -> None:
    client, settings = app_client
    good = _token(client)
    assert jwt.decode(good, options={"verify_signature": False})["oid"] == DEFAULT_PRINCIPAL_ID
    url = settings.pool_path + "/executions"

    def post(token: str | None, query: dict[str, str]) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = client.post(url, query_string=query, headers=headers, json={"code": "1"})
        return response.status_code, response.headers.get("x-ms-error-code", "")

    query = {"api-version": NEW, "identifier": "abcd"}
    assert post(None, query) == (401, "AuthenticationFailed")
    assert post(_token(client, client_id=UNAUTHORIZED_CLIENT_ID), query) == (403, "AuthorizationFailed")
    assert post(good, {"identifier": "abcd"}) == (400, "MissingApiVersionParameter")
    assert post(good, {"api-version": NEW, "identifier": "a"}) == (400, "InvalidSessionIdentifier")
    wrapped = client.post(
        url, query_string=query, headers={"Authorization": f"Bearer {good}"}, json={"properties": {"code": "1"}}
    )
    assert wrapped.status_code == 400 and wrapped.json["error"]["code"] == "SessionPropertiesMissing"
    state = client.get("/_emulator/state").json
    assert state["calls"]["execute"] == 5 and state["tokens_issued"] == 2 and state["sessions"] == []


def test_app_fault_and_config_control(app_client: tuple[FlaskClient, Settings]) -> None:
    client, _ = app_client
    added = client.post("/_emulator/faults", json={"operation": "token", "status": 503, "retry_after": 1.2})
    assert added.status_code == 201
    failed = client.get("/msi/token", query_string={"api-version": "2019-08-01", "resource": "https://x.io"})
    assert failed.status_code == 503 and failed.headers["Retry-After"] == "2"
    assert failed.json["statusCode"] == 503  # the identity endpoint's own error shape
    rule_id = added.json["faults"][0]["id"]
    assert client.delete(f"/_emulator/faults/{rule_id}").status_code == 204
    assert client.delete(f"/_emulator/faults/{rule_id}").status_code == 404
    assert client.post("/_emulator/config", json={"max_sessions": 5}).json["max_sessions"] == 5
    assert client.post("/_emulator/config", json={"pool_name": "x"}).status_code == 400
    assert client.post("/_emulator/reset").status_code == 204
    assert client.get("/_emulator/config").json["max_sessions"] == 20
