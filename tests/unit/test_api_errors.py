"""The error channel: an executor failure is a JSON answer, never a traceback or an empty body."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from backend import create_app
from backend.config import Settings
from backend.errors import UpstreamTimeout
from backend.executors.base import Box, Executor
from backend.models import Program
from backend.runtimes import Runtime

PYTHON = Runtime("python", "3.11.2", ("py",), None, False, {"python": "/usr/bin/python3"})
BODY = {"language": "python", "version": "*", "files": [{"content": "print(1)"}]}


class FailingExecutor(Executor):
    """An executor whose open() raises what it is given: the edge we need to control here."""

    name = "failing"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def runtimes(self) -> list[Runtime]:
        return [PYTHON]

    def open(self, program: Program, runtime: Runtime) -> AbstractContextManager[Box]:
        raise self.error


def client(error: Exception) -> Any:
    return create_app(Settings.from_env({}), executor=FailingExecutor(error)).test_client()


def test_unexpected_error_is_a_json_500() -> None:
    response = client(RuntimeError("secret detail /etc/x")).post("/api/v2/execute", json=BODY)
    assert response.status_code == 500 and response.get_json() == {"message": "internal error"}
    assert b"Traceback" not in response.data and b"secret detail" not in response.data


def test_typed_executor_errors_keep_their_status_and_message() -> None:
    response = client(UpstreamTimeout("the session pool did not answer in 240 s")).post("/api/v2/execute", json=BODY)
    assert (response.status_code, response.get_json()) == (504, {"message": "the session pool did not answer in 240 s"})
    judge = client(UpstreamTimeout("slow")).post("/api/v2/judge", json={**BODY, "testcases": [{"expected_output": "1"}]})
    assert judge.status_code == 504 and judge.get_json() == {"message": "slow"}
