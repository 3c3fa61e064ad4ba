"""Shared fixtures: real gunicorn backends, on the local sandbox and on the session pool; test tiers.

``client`` is parametrized over both executors, so a suite written against it is one
conformance suite for both; ``local_client`` is for what only the local sandbox has.
One emulator and one gunicorn per executor serve the whole session. The in-process
fixtures (``app``, ``api_client``: the app factory with a fake executor) are in tests/unit/conftest.py.

Tiers: ``pytest -m "not slow"`` is the everyday one. Every test in tests/integration is marked
``slow`` here (they start gunicorn, the emulator, Jupyter kernels, sandboxes); tests that run
submissions in the local sandbox are marked ``sandbox`` (root and bubblewrap), which implies ``slow``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from backend.testing import ServerProcess
from emulator.testing import EmulatorProcess

SECRET = "s3cr3t-of-the-service-7f1c"
INTEGRATION = Path(__file__).resolve().parent / "integration"
# Fixtures that run submissions in the local sandbox.
SANDBOX_FIXTURES = {"local_server", "local_client"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if SANDBOX_FIXTURES & set(getattr(item, "fixturenames", ())) or params.get("client") == "local":
            item.add_marker(pytest.mark.sandbox)
        if INTEGRATION in Path(str(item.path)).resolve().parents or item.get_closest_marker("sandbox"):
            item.add_marker(pytest.mark.slow)


class Client:
    """A thin Piston client for tests: `client.execute(language, code, **fields)`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()

    def post(self, path: str, body: Any, **kwargs: Any) -> requests.Response:
        return self.http.post(self.url + path, json=body, timeout=120, **kwargs)

    def get(self, path: str) -> requests.Response:
        return self.http.get(self.url + path, timeout=30)

    def execute(self, language: str, code: str, *, name: str | None = None, version: str = "*",
                expect: int = 200, **fields: Any) -> dict[str, Any]:
        files = fields.pop("files", None) or [{"name": name, "content": code}]
        response = self.post("/api/v2/execute", {"language": language, "version": version, "files": files, **fields})
        assert response.status_code == expect, response.text[:2000]
        return response.json()


@pytest.fixture(scope="session")
def local_server() -> Iterator[ServerProcess]:
    # The secret lets hostile tests check that submissions cannot read the service's environment.
    env = {"MAX_CONCURRENT_JOBS": "4", "RUN_MEMORY_LIMIT": "-1", "PISTON_TEST_SECRET": SECRET}
    with ServerProcess(env) as server:
        yield server


@pytest.fixture(scope="session")
def local_client(local_server: ServerProcess) -> Client:
    return Client(local_server.url)


def _pool_server(emulator: EmulatorProcess) -> Iterator[ServerProcess]:
    env = {"USE_LOCAL_EXECUTOR": "false", "POOL_MANAGEMENT_ENDPOINT": emulator.pool_endpoint,
           **emulator.identity_env(), "MAX_CONCURRENT_JOBS": "4", "RUN_MEMORY_LIMIT": "-1"}
    with ServerProcess(env) as server:
        yield server


@pytest.fixture(scope="session")
def pool_emulator() -> Iterator[EmulatorProcess]:
    # The default profile, pythonlts: sessions look like a real PythonLTS pool (unprivileged kernel,
    # python/bash/perl only, no network; emulator/README.md "The pythonlts profile").
    with EmulatorProcess(max_sessions=40, ready_sessions=2) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def pool_server(pool_emulator: EmulatorProcess) -> Iterator[ServerProcess]:
    yield from _pool_server(pool_emulator)


@pytest.fixture(scope="session")
def pool_client(pool_server: ServerProcess) -> Client:
    return Client(pool_server.url)


@pytest.fixture(scope="session")
def pool_root_emulator() -> Iterator[EmulatorProcess]:
    """The same image with the kernel as root (test-only): the harness's root path (a fresh uid per run)."""
    with EmulatorProcess(max_sessions=40, ready_sessions=2, kernel_user="root") as emulator:
        yield emulator


@pytest.fixture(scope="session")
def pool_root_server(pool_root_emulator: EmulatorProcess) -> Iterator[ServerProcess]:
    yield from _pool_server(pool_root_emulator)


@pytest.fixture(scope="session")
def pool_root_client(pool_root_server: ServerProcess) -> Client:
    return Client(pool_root_server.url)


@pytest.fixture(scope="session", params=["pool", "pool_root"])
def pool_kernel_client(request: pytest.FixtureRequest) -> Client:
    """A pool suite against both session kernels: unprivileged (PythonLTS) and root."""
    return request.getfixturevalue(f"{request.param}_client")


@pytest.fixture(scope="session", params=["local", "pool"])
def client(request: pytest.FixtureRequest) -> Client:
    """The same suite against each executor."""
    return request.getfixturevalue(f"{request.param}_client")
