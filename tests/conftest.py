"""Shared fixtures: real gunicorn backends, on the local sandbox and on the session pools.

``client`` is parametrized over three paths: the local sandbox, a PythonLTS pool and a
custom-container pool (each session this project's own service in SERVICE_ROLE=session),
both pools through the emulator, so a suite written against it is one conformance suite for
all; ``local_client`` is for what only the local sandbox has.
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
REPO = Path(__file__).resolve().parent.parent


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


@pytest.fixture(scope="session")
def pool_emulator() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(max_sessions=40, ready_sessions=2) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def pool_server(pool_emulator: EmulatorProcess) -> Iterator[ServerProcess]:
    env = {"USE_LOCAL_EXECUTOR": "false", "POOL_MANAGEMENT_ENDPOINT": pool_emulator.pool_endpoint,
           **pool_emulator.identity_env(), "MAX_CONCURRENT_JOBS": "4", "RUN_MEMORY_LIMIT": "-1"}
    with ServerProcess(env) as server:
        yield server


@pytest.fixture(scope="session")
def pool_client(pool_server: ServerProcess) -> Client:
    return Client(pool_server.url)


@pytest.fixture(scope="session")
def cc_emulator() -> Iterator[EmulatorProcess]:
    """A custom-container pool: each session a process of this checkout's service in session mode."""
    with EmulatorProcess(pool_type="CustomContainer", session_app_dir=str(REPO), max_sessions=12,
                         ready_sessions=1, kernel_start_timeout=90) as emulator:
        yield emulator


def cc_backend_env(emulator: EmulatorProcess, **extra: str) -> dict[str, str]:
    return {"USE_LOCAL_EXECUTOR": "false", "POOL_MANAGEMENT_ENDPOINT": emulator.pool_endpoint,
            "SESSION_POOL_TYPE": "CustomContainer", **emulator.identity_env(), "MAX_CONCURRENT_JOBS": "4",
            "RUN_MEMORY_LIMIT": "-1", "PISTON_TEST_SECRET": SECRET, **extra}


@pytest.fixture(scope="session")
def cc_server(cc_emulator: EmulatorProcess) -> Iterator[ServerProcess]:
    with ServerProcess(cc_backend_env(cc_emulator)) as server:
        yield server


@pytest.fixture(scope="session")
def cc_client(cc_server: ServerProcess) -> Client:
    return Client(cc_server.url)


@pytest.fixture(scope="session", params=["local", "pool", "cc"])
def client(request: pytest.FixtureRequest) -> Client:
    """The same suite against each executor path."""
    return request.getfixturevalue(f"{request.param}_client")
