"""The executor-neutral session of /connect: message shapes, stdin kept until the run, bounded backlogs."""

from __future__ import annotations

from typing import Any

import pytest

from backend.errors import ValidationError
from backend.interactive import MAX_STDIN_BACKLOG_BYTES, SIGNALS, InteractiveSession, StageProcess
from backend.models import StageResult


class Recorder(StageProcess):
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.signals: list[int] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def signal(self, number: int) -> None:
        self.signals.append(number)


def test_stdin_before_the_run_is_kept_and_written_first() -> None:
    session = InteractiveSession(lambda message: None)
    session.feed("one\n")
    session.signal("SIGINT")  # nothing runs yet: ignored
    process = Recorder()
    session.attach(process)
    session.feed("two\n")
    assert process.written == [b"one\n", b"two\n"] and process.signals == []
    session.signal("SIGINT")
    session.detach()
    session.signal("SIGTERM")
    assert process.signals == [2]


def test_output_split_inside_a_character_arrives_whole() -> None:
    sent: list[dict[str, Any]] = []
    session = InteractiveSession(sent.append)
    session.stage("run")
    data = "héllo €".encode()
    for i in range(len(data)):
        session.output("stdout", data[i:i + 1])
    session.exit("run", StageResult(code=None, signal="SIGKILL"))
    assert "".join(m["data"] for m in sent if m["type"] == "data") == "héllo €"
    assert sent[-1] == {"type": "exit", "stage": "run", "code": None, "signal": "SIGKILL"}


def test_the_backlog_before_the_run_is_bounded() -> None:
    session = InteractiveSession(lambda message: None)
    session.feed("x" * MAX_STDIN_BACKLOG_BYTES)
    with pytest.raises(ValidationError, match="stdin backlog"):
        session.feed("x")


def test_cancel_kills_what_runs_and_what_starts_later() -> None:
    session = InteractiveSession(lambda message: None)
    session.cancel()
    process = Recorder()
    session.attach(process)
    assert process.signals == [SIGNALS["SIGKILL"]]


def test_pistons_signal_table() -> None:
    assert (SIGNALS["SIGHUP"], SIGNALS["SIGKILL"], SIGNALS["SIGSYS"]) == (1, 9, 31)
    assert (SIGNALS["SIGRTMIN"], SIGNALS["SIGRTMIN+15"], SIGNALS["SIGRTMAX-14"], SIGNALS["SIGRTMAX"]) == (34, 49, 50, 64)
    assert len(SIGNALS) == 62 and "SIGCLD" not in SIGNALS
