"""backend/service.py: admission (a bounded queue, 503 at once when full) and the local fallback.

In process: the real app factory and service, with fake executors (tests/unit/fakes.py).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from backend import create_app
from backend.config import Settings
from backend.errors import ValidationError
from backend.executors.errors import ExecutorUnavailable, Overloaded, UpstreamError, UpstreamTimeout
from backend.judge import parse_judge
from backend.service import Admission, ExecutionService
from tests.unit.fakes import FakeExecutor, exited

BODY = {"language": "python", "version": "*", "files": [{"content": "print(input())"}], "stdin": "hi"}
JUDGE = {**BODY, "testcases": [{"id": "a", "stdin": "1", "expected_output": "1"},
                               {"id": "b", "stdin": "2", "expected_output": "3"}]}


# ---------------------------------------------------------------- Admission

def test_admission_admits_up_to_its_capacity_then_refuses_at_once() -> None:
    admission = Admission(running=2, queued=1)
    with admission.admit(), admission.admit(), admission.admit():
        assert admission.inflight == 3
        with pytest.raises(Overloaded, match=r"queue is full \(3 jobs admitted\)"), admission.admit():
            pass
    assert admission.inflight == 0
    with admission.admit():  # room again once they are done
        assert admission.inflight == 1


def test_admission_releases_a_job_that_failed() -> None:
    admission = Admission(running=1, queued=0)
    with pytest.raises(RuntimeError), admission.admit():
        raise RuntimeError("the job failed")
    assert admission.inflight == 0


def test_a_full_queue_answers_503_while_the_admitted_job_runs() -> None:
    executor = FakeExecutor()
    executor.gate = threading.Event()
    app = create_app(Settings.from_env({"MAX_CONCURRENT_JOBS": "1", "MAX_QUEUED_JOBS": "0"}), executor=executor)
    answers: list[Any] = []
    first = threading.Thread(target=lambda: answers.append(app.test_client().post("/api/v2/execute", json=BODY)))
    first.start()
    try:
        assert executor.entered.acquire(timeout=30), "the first job never started"
        refused = app.test_client().post("/api/v2/execute", json=BODY)
        assert refused.status_code == 503 and "queue is full" in refused.get_json()["message"]
        assert app.test_client().get("/health").get_json()["inflight"] == 1
    finally:
        executor.gate.set()
        first.join(30)
    assert answers[0].status_code == 200 and answers[0].get_json()["run"]["stdout"] == "hi\n"
    assert b'piston_jobs_rejected_total{reason="Overloaded"} 1.0' in app.test_client().get("/metrics").data


# ---------------------------------------------------------------- fallback

def service(primary: FakeExecutor, fallback: FakeExecutor | None) -> ExecutionService:
    return ExecutionService(primary, Admission(2, 2), fallback=fallback)


@pytest.mark.parametrize("error", [ExecutorUnavailable("pool unreachable"), UpstreamError("bad gateway"),
                                   UpstreamTimeout("no answer in 240 s")])
def test_an_executor_failure_falls_back_to_local_with_a_note(error: Exception) -> None:
    primary = FakeExecutor(error=error)
    fallback = FakeExecutor()
    app = create_app(Settings.from_env({}), executor=primary)
    app.extensions["piston"].service.fallback = fallback
    response = app.test_client().post("/api/v2/execute", json=BODY)
    assert response.status_code == 200 and response.get_json()["run"]["stdout"] == "hi\n"
    assert response.headers["X-Piston-Notes"] == f"ran on the local executor: fake failed: {error}"
    assert (primary.opened, fallback.opened) == (1, 1)
    assert b"piston_fallbacks_total 1.0" in app.test_client().get("/metrics").data


def test_judge_falls_back_too() -> None:
    fallback = FakeExecutor()
    body, note = _judge(service(FakeExecutor(error=ExecutorUnavailable("down")), fallback))
    assert note == "ran on the local executor: fake failed: down" and fallback.opened == 1
    assert [c["verdict"] for c in body["testcases"]] == ["AC", "WA"]


def test_without_a_fallback_the_failure_is_the_answer() -> None:
    app = create_app(Settings.from_env({}), executor=FakeExecutor(error=UpstreamTimeout("no answer in 240 s")))
    response = app.test_client().post("/api/v2/execute", json=BODY)
    assert (response.status_code, response.get_json()) == (504, {"message": "no answer in 240 s"})
    assert "X-Piston-Notes" not in response.headers


@pytest.mark.parametrize("error", [RuntimeError("a bug"), ValidationError("bad input")])
def test_other_errors_do_not_fall_back(error: Exception) -> None:
    """Only executor failures are retried locally: a bug or a bad request would fail there too."""
    fallback = FakeExecutor()
    svc = service(FakeExecutor(error=error), fallback)
    with pytest.raises(type(error)):
        _judge(svc)
    assert fallback.opened == 0 and svc.admission.inflight == 0


def test_a_failing_submission_is_data_not_a_fallback() -> None:
    fallback = FakeExecutor()
    primary = FakeExecutor(run=lambda program, spec: exited(3, stderr="boom\n"))
    body, note = _judge(service(primary, fallback))
    assert note is None and fallback.opened == 0
    assert body["verdict"] == "RE" and body["testcases"][0]["code"] == 3


def test_the_registry_is_the_primary_executors_runtimes() -> None:
    svc = service(FakeExecutor(), None)
    assert [rt.language for rt in svc.registry] == ["python", "c"]
    assert svc.registry.find("py", "3.x") is not None and svc.registry.find("c", "13") is None


def _judge(svc: ExecutionService) -> tuple[dict[str, Any], str | None]:
    return svc.judge(parse_judge(JUDGE, svc.registry, Settings.from_env({})))
