"""The error channel: an executor failure is a JSON answer, never a traceback or an empty body."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import pytest

from backend import create_app
from backend.config import Settings
from backend.executors import errors
from backend.executors.base import Box, Executor
from backend.executors.errors import ExecutorError, UpstreamTimeout
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


@pytest.mark.parametrize(("error", "status"), [
    (errors.Overloaded("the job queue is full"), 503),
    (errors.ExecutorUnavailable("local sandbox unavailable"), 503),
    (errors.UpstreamError("the session pool answered 500"), 502),
    (errors.UpstreamTimeout("the session pool did not answer in time"), 504),
    (errors.InteractiveUnsupported("no interactive sessions here"), 501),
])
def test_executor_errors_map_to_http_at_the_edge(error: ExecutorError, status: int) -> None:
    assert not hasattr(error, "status_code")  # executors know nothing of HTTP
    response = client(error).post("/api/v2/execute", json=BODY)
    assert (response.status_code, response.get_json()) == (status, {"message": error.message})


def test_503s_are_counted_by_reason() -> None:
    app_client = client(errors.Overloaded("the job queue is full"))
    app_client.post("/api/v2/execute", json=BODY)
    assert b'piston_jobs_rejected_total{reason="Overloaded"} 1.0' in app_client.get("/metrics").data
