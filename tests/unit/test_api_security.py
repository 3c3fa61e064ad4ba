"""API keys and CORS through the app factory, in process (moved from the gunicorn suite: no server needed)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from backend import create_app
from backend.config import Settings
from tests.unit.fakes import FakeExecutor

BODY = {"language": "python", "version": "*", "files": [{"content": "print(1)"}]}


@pytest.fixture
def keyed_client() -> FlaskClient:
    env = {"API_KEYS": "key-one,key-two", "CORS_ORIGINS": "https://judge.example"}
    return create_app(Settings.from_env(env), executor=FakeExecutor()).test_client()


@pytest.mark.parametrize("headers", [{}, {"Authorization": "wrong"}, {"X-API-Key": "key-one-and-more"},
                                     {"Authorization": "Bearer"}, {"X-API-Key": ""}])
def test_a_missing_or_wrong_key_is_401(keyed_client: FlaskClient, headers: dict[str, str]) -> None:
    denied = keyed_client.post("/api/v2/execute", json=BODY, headers=headers)
    assert denied.status_code == 401 and "API key" in denied.get_json()["message"]


@pytest.mark.parametrize("headers", [{"Authorization": "key-one"}, {"Authorization": "Bearer key-two"},
                                     {"X-API-Key": "key-two"}])
def test_each_accepted_form_of_the_key(keyed_client: FlaskClient, headers: dict[str, str]) -> None:
    response = keyed_client.post("/api/v2/execute", json=BODY, headers=headers)
    assert response.status_code == 200 and response.get_json()["run"]["stdout"] == "1\n"


def test_every_route_but_the_probes_needs_the_key(keyed_client: FlaskClient) -> None:
    assert keyed_client.get("/api/v2/runtimes").status_code == 401
    assert keyed_client.get("/metrics").status_code == 401
    assert keyed_client.get("/health").status_code == 200  # probes need no key
    assert keyed_client.get("/ready").status_code == 200


def test_cors_allows_only_the_configured_origin(keyed_client: FlaskClient) -> None:
    preflight = keyed_client.options("/api/v2/execute", headers={
        "Origin": "https://judge.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,authorization"})
    assert preflight.headers.get("Access-Control-Allow-Origin") == "https://judge.example"
    other = keyed_client.get("/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_no_keys_configured_means_open(api_client: FlaskClient) -> None:
    assert api_client.post("/api/v2/execute", json=BODY).status_code == 200
