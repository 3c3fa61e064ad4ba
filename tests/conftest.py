"""Shared fixtures: a real gunicorn backend on the local executor."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from backend.testing import ServerProcess

SECRET = "s3cr3t-of-the-service-7f1c"


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
def client(local_server: ServerProcess) -> Client:
    return Client(local_server.url)
