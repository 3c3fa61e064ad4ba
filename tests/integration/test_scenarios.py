"""The operator's check end to end: test_session_pool.py starts the real backend and must pass.

Runs `test_session_pool.py` as a subprocess without --endpoint, so it starts gunicorn itself
(on the project's .venv) on a free port, runs the default phases and stops it. The script runs on
Debian's own /usr/bin/python3 with -S (no site-packages), as an operator without a venv would.
The plan's speed criteria are reported but not applied (--no-speed-criteria): speed is bench/'s.

The pool run checks the session's shared backend on the emulator with --endpoint.
Extra environment for the backend the script starts: SESSION_POOL_TEST_ENV="K1=V1 K2=V2".
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from backend.testing import ServerProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "test_session_pool.py"
PLAIN_PYTHON = ["/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable, "-S"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (REPO_ROOT / "app.py").exists() or not (REPO_ROOT / "gunicorn.conf.py").exists(),
                       reason="the backend (app.py, gunicorn.conf.py) does not exist yet"),
]


def _env_args(items: list[str]) -> list[str]:
    extra = os.environ.get("SESSION_POOL_TEST_ENV", "").split()
    return [arg for item in [*items, *extra] for arg in ("--env", item)]


def _gone(pid: int, port: int) -> bool:
    """The backend's process group is empty and its port refuses connections."""
    try:
        os.killpg(pid, 0)
        return False
    except ProcessLookupError:
        pass
    except PermissionError:
        return False
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _wait_gone(pid: int, port: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _gone(pid, port):
            return True
        time.sleep(0.2)
    return False


def _run(args: list[str], tmp_path: Path) -> dict[str, Any]:
    """Run the script with the operator's plain interpreter; it must pass every check."""
    report_path = tmp_path / "report.json"
    done = subprocess.run(
        [*PLAIN_PYTHON, str(SCRIPT), *args, "--json", str(report_path), "--no-progress", "--no-speed-criteria"],
        cwd=tmp_path, capture_output=True, text=True, timeout=280,
    )
    assert done.returncode == 0, f"{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
    assert "RESULT: PASS" in done.stdout
    report: dict[str, Any] = json.loads(report_path.read_text())
    assert report["ok"] is True and report["summary"]["fail"] == 0 and report["runtimes"]
    ids = {c["id"] for c in report["checks"]}
    plan = {"1.1", "1.2", "1.3", "2.1", "2.2", "2.3", "3.1", "3.2", "3.3", "4.1", "4.2", "4.3", "5.1", "5.2"}
    assert plan <= ids
    assert {"0.3", "L.1", "L.2", "L.3", "P.1", "P.3", "P.4", "P.5"} <= ids
    assert report["figures"]["warm_latency"]["p50_ms"] > 0
    _languages_are_reported(report)
    return report


@pytest.mark.sandbox
def test_default_run_starts_its_own_backend(tmp_path: Path) -> None:
    """The operator's command: no --endpoint, so the script starts gunicorn from the project's .venv."""
    report = _run(_env_args(["USE_LOCAL_EXECUTOR=true"]), tmp_path)
    started = report["started_backend"]
    assert started["pid"] and started["command"].startswith(str(REPO_ROOT / ".venv" / "bin" / "python"))
    assert report["executor"] == "local"
    assert _wait_gone(started["pid"], started["port"]), "backend left running"


def test_default_run_against_the_pool(pool_server: ServerProcess, tmp_path: Path) -> None:
    """--endpoint: the session's shared backend on the session-pool emulator."""
    report = _run(["--endpoint", pool_server.url], tmp_path)
    assert report["started_backend"] is None and report["executor"] != "local"


def _languages_are_reported(report: dict[str, Any]) -> None:
    """0.3 lists what /api/v2/runtimes offers; every compiled language it lacks has a SKIP row saying why."""
    rows = {c["id"]: c for c in report["checks"]}
    offered = sorted({rt["language"] for rt in report["runtimes"]})
    assert rows["0.3"]["result"] == "INFO" and rows["0.3"]["data"]["offered"] == offered
    for language in rows["0.3"]["data"]["compiled_missing"]:
        assert language not in offered
        row = rows[f"H.{language}"]
        assert row["result"] == "SKIP" and f"{language} is not offered" in row["detail"]
    solutions = [c for c in report["checks"] if c["id"].startswith("5.2/")]
    for row in solutions:
        if row["result"] == "SKIP":
            assert "is not offered: /api/v2/runtimes lists" in row["detail"], row
        else:
            assert row["result"] == "PASS", row


@pytest.mark.sandbox
def test_interrupt_stops_the_backend(tmp_path: Path) -> None:
    """Ctrl-C in the middle of a run: exit 130, a partial report, and nothing left running."""
    report_path = tmp_path / "report.json"
    with subprocess.Popen(
        [*PLAIN_PYTHON, str(SCRIPT), "--phase", "testcases", "--json", str(report_path)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as proc:
        try:
            assert proc.stderr is not None
            lines = []
            for line in proc.stderr:  # not a terminal: one progress line per finished check
                lines.append(line)
                if line.startswith("[3/"):
                    break
            else:
                pytest.fail("the run ended before it could be interrupted:\n" + "".join(lines))
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130, stderr
    report = json.loads(report_path.read_text())
    assert report["interrupted"] is True and report["ok"] is False
    assert _wait_gone(report["started_backend"]["pid"], report["started_backend"]["port"]), "backend left running"
