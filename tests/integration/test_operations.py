"""Operations through gunicorn: request ids, JSON logs without code, metrics, bad settings, graceful shutdown."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import requests

from backend.testing import REPO, ServerProcess, free_port
from tests.conftest import Client

CODE_MARK = "code-marker-5e1d"
STDIN_MARK = "stdin-marker-a9c0"


def test_request_id_logs_and_metrics(local_client: Client, local_server: ServerProcess) -> None:
    r = local_client.post("/api/v2/execute", {"language": "python", "version": "*", "stdin": STDIN_MARK,
                                        "files": [{"content": f"# {CODE_MARK}\nprint(input())"}]},
                    headers={"X-Request-ID": "req-42"})
    assert r.status_code == 200 and r.headers["X-Request-ID"] == "req-42"
    generated = local_client.get("/health").headers["X-Request-ID"]
    assert len(generated) == 32
    time.sleep(0.2)
    lines = [json.loads(line) for line in local_server.log_path.read_text().splitlines() if line.startswith("{")]
    mine = [entry for entry in lines if entry.get("request_id") == "req-42"]
    assert mine and mine[-1]["path"] == "/api/v2/execute" and mine[-1]["language"] == "python"
    log_text = local_server.log_path.read_text()
    assert CODE_MARK not in log_text and STDIN_MARK not in log_text

    text = local_client.get("/metrics").text
    assert 'piston_executions_total{executor="local",language="python",status="OK"}' in text
    assert "piston_execution_seconds_bucket" in text and "piston_jobs_inflight" in text
    assert 'piston_http_requests_total{method="POST",route="/api/v2/execute",status="200"}' in text
    assert 'piston_executor_sandbox_slots{kind="total"} 4.0' in text


# API keys and CORS are tested in process: tests/unit/test_api_security.py.


def test_invalid_setting_stops_the_start_naming_it() -> None:
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"], cwd=REPO, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PORT": str(port), "RUN_TIMEOUT": "soon"}, capture_output=True, text=True,
    )
    assert result.returncode != 0
    assert "invalid setting: RUN_TIMEOUT='soon' is invalid" in result.stderr


def test_graceful_shutdown_finishes_inflight_runs_and_kills_sandboxes() -> None:
    server = ServerProcess({"MAX_CONCURRENT_JOBS": "2"})
    with server:
        slots = requests.get(server.url + "/health", timeout=10).json()["sandbox"]["slots"]
        outcome: dict[str, requests.Response] = {}
        body = {"language": "python", "version": "*",
                "files": [{"content": "import time\ntime.sleep(1.5)\nprint('finished')"}]}
        thread = threading.Thread(target=lambda: outcome.update(
            r=requests.post(server.url + "/api/v2/execute", json=body, timeout=30)))
        thread.start()
        time.sleep(0.7)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        thread.join()
        assert outcome["r"].status_code == 200 and outcome["r"].json()["run"]["stdout"] == "finished\n"
        server.proc.wait(timeout=30)
    ps = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True, check=True).stdout
    for index in slots:
        assert f"/slot-{index}/box " not in ps, f"a sandbox of slot {index} survived the shutdown"
