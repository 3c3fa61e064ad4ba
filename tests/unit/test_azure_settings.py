"""SERVICE_ROLE, SESSION_POOL_TYPE and SESSION_STRATEGY, the pool kind's resolution, and the
runtimes answer of an executor that could not probe its pool (in-process, no network)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import pytest

from backend import create_app
from backend.config import PoolType, ServiceRole, SessionStrategy, Settings, SettingsError
from backend.executors.azure.endpoint import resolve_pool
from backend.executors.azure.harness import isolation_from_probe
from backend.executors.base import Box, Executor
from backend.executors.errors import ExecutorUnavailable
from backend.models import Program
from backend.runtimes import Runtime


def test_session_role_forces_the_local_executor_and_drops_keys_and_fallback() -> None:
    s = Settings.from_env({"SERVICE_ROLE": "session", "USE_LOCAL_EXECUTOR": "false", "FALLBACK_TO_LOCAL": "true",
                           "API_KEYS": "k1,k2", "OUTPUT_MAX_SIZE": "4096", "POOL_MANAGEMENT_ENDPOINT": "http://x"})
    assert s.service_role is ServiceRole.SESSION
    assert (s.use_local_executor, s.fallback_to_local, s.api_keys) == (True, False, ())
    assert s.judge_display_bytes == 4096  # the calling backend truncates for display itself


def test_api_role_is_the_default_and_keeps_its_settings() -> None:
    s = Settings.from_env({"API_KEYS": "k1", "JUDGE_DISPLAY_BYTES": "10"})
    assert s.service_role is ServiceRole.API and s.api_keys == ("k1",) and s.judge_display_bytes == 10


@pytest.mark.parametrize(("raw", "member"), [
    ("auto", SessionStrategy.AUTO), ("REUSE", SessionStrategy.REUSE), (" fresh ", SessionStrategy.FRESH),
])
def test_strategy_is_an_enum(raw: str, member: SessionStrategy) -> None:
    assert Settings.from_env({"SESSION_STRATEGY": raw}).session_strategy is member
    assert Settings.from_env({}).session_strategy is SessionStrategy.AUTO


def test_pool_type_names_are_azures() -> None:
    assert Settings.from_env({"SESSION_POOL_TYPE": "customcontainer"}).session_pool_type is PoolType.CUSTOM_CONTAINER
    with pytest.raises(SettingsError, match="SESSION_POOL_TYPE='NodeLTS' is invalid: expected one of auto, "
                                            "PythonLTS, CustomContainer"):
        Settings.from_env({"SESSION_POOL_TYPE": "NodeLTS"})
    with pytest.raises(SettingsError, match="SERVICE_ROLE"):
        Settings.from_env({"SERVICE_ROLE": "worker"})


@pytest.mark.parametrize(("endpoint", "setting", "kind"), [
    ("https://westus2.dynamicsessions.io/subscriptions/s/resourceGroups/g/sessionPools/p", "auto", "PythonLTS"),
    ("https://judge.happyhill-1a2b.westus2.azurecontainerapps.io", "auto", "CustomContainer"),
    ("http://127.0.0.1:9/anything", "CustomContainer", "CustomContainer"),
    ("https://judge.happyhill-1a2b.westus2.azurecontainerapps.io/", "PythonLTS", "PythonLTS"),
])
def test_pool_kind_from_the_setting_or_the_documented_endpoint_form(endpoint: str, setting: str, kind: str) -> None:
    s = Settings.from_env({"USE_LOCAL_EXECUTOR": "false", "POOL_MANAGEMENT_ENDPOINT": endpoint,
                           "SESSION_POOL_TYPE": setting})
    target = resolve_pool(s, credential=None)  # type: ignore[arg-type] - no ARM call with an endpoint
    assert target.pool_type.value == kind and not target.endpoint.endswith("/")


@pytest.mark.parametrize(("info", "isolation"), [
    ({"isolation": "userns", "euid": 1000}, "userns"),
    ({"isolation": "none", "euid": 0}, "none"),
    # Fail-safe: an answer without a known isolation is never reused, even from a root kernel.
    ({"euid": 0}, "none"),
    ({"isolation": "chroot", "euid": 0}, "none"),
    ({}, "none"),
])
def test_isolation_read_from_the_probe(info: dict[str, Any], isolation: str) -> None:
    assert isolation_from_probe({"info": info}) == isolation


class UnprobedExecutor(Executor):
    """A pool executor whose probe failed: what /api/v2/runtimes must say then."""

    name = "unprobed"

    def __init__(self) -> None:
        self.calls = 0

    def runtimes(self) -> list[Runtime]:
        self.calls += 1
        if self.calls == 1:
            raise ExecutorUnavailable("the session pool's runtimes are not known yet; try again in a few seconds")
        return [Runtime("python", "3.12.1", ("py",), None, False)]

    def open(self, program: Program, runtime: Runtime) -> AbstractContextManager[Box]:
        raise AssertionError("not reached")


def test_runtimes_answer_503_until_the_pool_is_probed_then_only_what_it_found() -> None:
    client = create_app(Settings.from_env({}), executor=UnprobedExecutor()).test_client()
    first = client.get("/api/v2/runtimes")
    assert first.status_code == 503 and "not known yet" in first.get_json()["message"]
    second = client.get("/api/v2/runtimes")
    assert second.status_code == 200
    assert second.get_json() == [{"language": "python", "version": "3.12.1", "aliases": ["py"]}]


def test_health_shows_the_role() -> None:
    app = create_app(Settings.from_env({}), executor=UnprobedExecutor())
    assert app.test_client().get("/health").get_json()["role"] == "api"


@pytest.mark.parametrize(("pool_type", "setting", "isolation", "strategy"), [
    ("PythonLTS", "auto", None, "fresh"),  # before the probe answered: the safe choice
    ("PythonLTS", "auto", "none", "fresh"),
    ("PythonLTS", "auto", "uid", "reuse"),
    ("PythonLTS", "auto", "userns", "reuse"),
    ("PythonLTS", "reuse", "none", "reuse"),  # an explicit choice stays (its risk is in the README)
    ("PythonLTS", "fresh", "uid", "fresh"),
    ("CustomContainer", "auto", None, "reuse"),  # a fresh sandbox per run inside the session
    ("CustomContainer", "fresh", None, "fresh"),
])
def test_auto_strategy_follows_the_sessions_isolation(pool_type: str, setting: str, isolation: str | None,
                                                      strategy: str) -> None:
    from backend.executors.azure.connection import PoolConnection

    s = Settings.from_env({"USE_LOCAL_EXECUTOR": "false", "POOL_MANAGEMENT_ENDPOINT": "http://127.0.0.1:9/p",
                           "SESSION_STRATEGY": setting, "IDENTITY_ENDPOINT": "http://127.0.0.1:9/msi"})
    connection = PoolConnection(s, PoolType(pool_type))
    try:
        if isolation is not None:
            connection.set_isolation(isolation)
        assert connection.leases.strategy == strategy
    finally:
        connection.close()
