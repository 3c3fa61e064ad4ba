"""GET /api/v2/packages in Piston's shape; installs and removals are refused with a JSON 405."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from backend import create_app
from backend.config import Settings
from backend.executors.base import Box, Executor
from backend.models import Program
from backend.runtimes import Runtime

RUNTIMES = [
    Runtime("python", "3.11.2", ("py",), None, False, {"python": "/usr/bin/python3"}),
    Runtime("c", "12.2.0", ("gcc",), "gcc", True, {"cc": "/usr/bin/gcc"}),
]


class ListingExecutor(Executor):
    """Only lists runtimes: /packages never runs anything."""

    name = "listing"

    def runtimes(self) -> list[Runtime]:
        return list(RUNTIMES)

    def open(self, program: Program, runtime: Runtime) -> AbstractContextManager[Box]:
        raise AssertionError("nothing runs here")


def client() -> Any:
    return create_app(Settings.from_env({}), executor=ListingExecutor()).test_client()


def test_packages_lists_every_runtime_as_installed() -> None:
    response = client().get("/api/v2/packages")
    assert response.status_code == 200
    assert response.get_json() == [
        {"language": "python", "language_version": "3.11.2", "installed": True},
        {"language": "c", "language_version": "12.2.0", "installed": True},
    ]


def test_installing_or_removing_a_package_is_a_clear_405() -> None:
    for method in ("post", "delete"):
        response = getattr(client(), method)("/api/v2/packages", json={"language": "python", "version": "3.11.2"})
        assert response.status_code == 405, response.data
        assert "runtimes come with the service's image" in response.get_json()["message"]


def test_package_changes_check_the_content_type_first_as_piston_does() -> None:
    response = client().post("/api/v2/packages", data="language=python", content_type="text/plain")
    assert response.status_code == 415
    assert response.get_json() == {"message": "requests must be of type application/json"}
