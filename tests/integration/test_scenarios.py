"""The operator's check end to end: test_session_pool.py starts the real backend and must pass.

Runs `test_session_pool.py` as a subprocess without --endpoint, so it starts gunicorn itself
(on the project's .venv) on a free port, runs the default phases and stops it. The script runs on
Debian's own /usr/bin/python3 with -S (no site-packages), as an operator without a venv would.
The plan's speed criteria are reported but not applied (--no-speed-criteria): speed is bench/'s.

Hook for other executors: add an entry to BACKENDS with the environment the started backend
needs (each item becomes `--env KEY=VALUE`), e.g. the session-pool emulator:

    "pool-emulator": ["USE_LOCAL_EXECUTOR=false", f"POOL_MANAGEMENT_ENDPOINT={emulator_url}"],

Extra items can also come from the environment: SESSION_POOL_TEST_ENV="K1=V1 K2=V2" is added to every entry.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.testing import EmulatorProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "test_session_pool.py"
PLAIN_PYTHON = ["/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable, "-S"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (REPO_ROOT / "app.py").exists() or not (REPO_ROOT / "gunicorn.conf.py").exists(),
                       reason="the backend (app.py, gunicorn.conf.py) does not exist yet"),
]

# name -> environment for the backend the script starts (passed as --env KEY=VALUE);
# "pool" gets the endpoint and identity of an emulator started for the test.
BACKENDS: dict[str, list[str]] = {
    "local": ["USE_LOCAL_EXECUTOR=true"],
    "pool": ["USE_LOCAL_EXECUTOR=false", "MAX_CONCURRENT_JOBS=8"],
}


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


@pytest.fixture
def backend_env(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    env = list(BACKENDS[request.param])
    if request.param != "pool":
        yield env
        return
    emu: EmulatorProcess = request.getfixturevalue("pool_emulator")  # the session's shared emulator
    yield [*env, f"POOL_MANAGEMENT_ENDPOINT={emu.pool_endpoint}",
           *(f"{k}={v}" for k, v in emu.identity_env().items())]


@pytest.mark.parametrize("backend_env", list(BACKENDS), indirect=True)
def test_default_run_passes(backend_env: list[str], tmp_path: Path) -> None:
    env = backend_env
    report_path = tmp_path / "report.json"
    done = subprocess.run(
        [*PLAIN_PYTHON, str(SCRIPT), *_env_args(env), "--json", str(report_path), "--no-progress",
         "--no-speed-criteria"],
        cwd=tmp_path, capture_output=True, text=True, timeout=280,
    )
    assert done.returncode == 0, f"{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
    report: dict[str, Any] = json.loads(report_path.read_text())
    assert report["ok"] is True and report["summary"]["fail"] == 0
    assert report["started_backend"]["pid"] and report["runtimes"]
    ids = {c["id"] for c in report["checks"]}
    plan = {"1.1", "1.2", "1.3", "2.1", "2.2", "2.3", "3.1", "3.2", "3.3", "4.1", "4.2", "4.3", "5.1", "5.2"}
    assert plan <= ids
    assert {"L.1", "L.2", "L.3", "P.1", "P.3", "P.4", "P.5"} <= ids
    assert report["figures"]["warm_latency"]["p50_ms"] > 0
    assert "RESULT: PASS" in done.stdout
    assert report["started_backend"]["command"].startswith(str(REPO_ROOT / ".venv" / "bin" / "python"))
    _languages_are_reported(report)
    assert _wait_gone(report["started_backend"]["pid"], report["started_backend"]["port"]), "backend left running"


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
