"""Shared fixtures: real gunicorn backends, on the local sandbox and on the session pools; test tiers.

``client`` is parametrized over three paths: the local sandbox, a PythonLTS pool and a
custom-container pool (each session this project's own service in SERVICE_ROLE=session),
both pools through the emulator, so a suite written against it is one conformance suite for
all; ``local_client`` is for what only the local sandbox has. One emulator and one gunicorn
per path serve the whole session. The in-process fixtures (``app``, ``api_client``: the app
factory with a fake executor) are in tests/unit/conftest.py.

Tiers: ``pytest -m "not slow"`` is the everyday one. Every test in tests/integration is marked
``slow`` here (they start gunicorn, the emulator, Jupyter kernels, sandboxes); tests that run
submissions in the local sandbox are marked ``sandbox`` (root and bubblewrap), which implies ``slow``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from backend.testing import ServerProcess
from emulator.testing import EmulatorProcess

SECRET = "s3cr3t-of-the-service-7f1c"
REPO = Path(__file__).resolve().parent.parent
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


# The emulator's default: only identifiers every documented rule allows ([A-Za-z0-9-]), so the pool
# suites check the backend's identifiers too.
POOL_IDENTIFIER_RULE = "common"


@contextmanager
def pool_backend(emulator: EmulatorProcess) -> Iterator[ServerProcess]:
    """The backend (gunicorn) against ``emulator``'s pool."""
    env = {"USE_LOCAL_EXECUTOR": "false", "POOL_MANAGEMENT_ENDPOINT": emulator.pool_endpoint,
           **emulator.identity_env(), "MAX_CONCURRENT_JOBS": "4", "RUN_MEMORY_LIMIT": "-1"}
    with ServerProcess(env) as server:
        yield server


# The default profile, pythonlts: sessions look like a real PythonLTS pool (unprivileged kernel,
# python/bash/perl only, no network; emulator/README.md "The pythonlts profile").
POOL_OPTIONS = {"max_sessions": 40, "ready_sessions": 2, "identifier_rule": POOL_IDENTIFIER_RULE}


@pytest.fixture(scope="session")
def pool_emulator() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(**POOL_OPTIONS) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def pool_server(pool_emulator: EmulatorProcess) -> Iterator[ServerProcess]:
    with pool_backend(pool_emulator) as server:
        yield server


@pytest.fixture(scope="session")
def pool_client(pool_server: ServerProcess) -> Client:
    return Client(pool_server.url)


# The kinds of session kernel a pool suite can run against: unprivileged without user namespaces (the
# default, as PythonLTS is presumed), unprivileged with them, and root (test-only).
KERNEL_VARIANTS: dict[str, dict[str, str] | None] = {
    "unprivileged": None,  # the pool_client above
    "userns": {"kernel_userns": "allow"},
    "root": {"kernel_user": "root"},
}


@pytest.fixture(scope="session", params=list(KERNEL_VARIANTS))
def pool_kernel_client(request: pytest.FixtureRequest) -> Iterator[Client]:
    """A pool suite against each kind of session kernel (the harness's none, userns and uid paths)."""
    options = KERNEL_VARIANTS[request.param]
    if options is None:
        yield request.getfixturevalue("pool_client")
        return
    with EmulatorProcess(**POOL_OPTIONS, **options) as emulator, pool_backend(emulator) as server:
        yield Client(server.url)


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
