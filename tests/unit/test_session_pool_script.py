"""test_session_pool.py: its helpers, and the whole script against in-process backends.

The "correct" backend is the real app (create_app) with a fake executor that runs Python on the
host and offers Python only, as a PythonLTS pool does; it is served by werkzeug on a free port.
The "wrong" one is a bare HTTP server that says ok to everything with wrong, incomplete answers:
the script must exit non-zero with FAIL rows. The script must run on a plain Python 3.9+ with
no third-party package, so some runs here use Debian's /usr/bin/python3 with -S (no site-packages).
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from backend import create_app
from backend.config import Settings
from tests.unit.fakes import PYTHON, FakeExecutor, exited

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "test_session_pool.py"
# The interpreter an operator has: Debian's own where it exists, else this one; -S keeps site-packages out.
PLAIN_PYTHON = [shutil.which("python3", path="/usr/bin") or sys.executable, "-S"]


import test_session_pool as tsp  # noqa: E402 - the repo root is on sys.path under pytest

# ---------------------------------------------------------------- what the script may use


def test_imports_only_the_standard_library() -> None:
    tree = ast.parse(SCRIPT.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert imported, "found no imports: the check itself is broken"
    assert imported - {"__future__"} <= sys.stdlib_module_names, imported - sys.stdlib_module_names


def test_runs_on_python_3_9() -> None:
    """Syntax (no match, no except*) and library features (no zip(strict=), datetime.UTC ...) of 3.9."""
    ast.parse(SCRIPT.read_text(), feature_version=(3, 9))
    vermin = Path(sys.executable).with_name("vermin")
    done = subprocess.run([str(vermin), "--target=3.9-", "--violations", "--no-tips", str(SCRIPT)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_has_no_verdict_rules_of_its_own() -> None:
    """Verdicts come from the backend's /api/v2/judge (backend/judge.py is the one rule)."""
    source = SCRIPT.read_text()
    assert not hasattr(tsp, "classify") and "MemoryError" not in source and "bad_alloc" not in source
    assert '"/api/v2/judge"' in source


def test_started_backend_runs_on_the_project_venv() -> None:
    venv_python = REPO_ROOT / ".venv" / "bin" / "python"
    if not venv_python.exists():
        pytest.skip("no .venv in this checkout")
    assert tsp.backend_python() == str(venv_python)
    assert tsp.LocalBackend({}, 1.0).command[:3] == [str(venv_python), "-m", "gunicorn"]


# ---------------------------------------------------------------- helpers of the script

def test_percentile() -> None:
    values = list(range(1, 101))
    assert tsp.percentile(values, 50) == pytest.approx(50.5)
    assert tsp.percentile(values, 99) == pytest.approx(99.01)
    assert tsp.percentile([7.0], 95) == 7.0


def test_arguments() -> None:
    args = tsp.parse_args(["--phase", "testcases,1", "--only", "1.1,3.*", "--only", "5.2/hello_n",
                           "--env", "USE_LOCAL_EXECUTOR=false", "--env", "A=b=c"])
    assert args.phases == [1, 2]
    assert args.only == ["1.1", "3.*", "5.2/hello_n"]
    assert args.env == [("USE_LOCAL_EXECUTOR", "false"), ("A", "b=c")]
    assert args.requests == 50
    assert tsp.parse_args(["--full"]).requests == 200
    with pytest.raises(SystemExit):
        tsp.parse_args(["--env", "PORT=1"])
    with pytest.raises(SystemExit):
        tsp.parse_args(["--endpoint", "http://x", "--env", "A=1"])


def test_selection_by_id() -> None:
    ctx = tsp.Context(tsp.parse_args(["--only", "1.1,3.*,5.2/hello_n"]), tsp.PistonClient("http://x"),
                      tsp.Progress(enabled=False))
    assert ctx.selected("1.1") and ctx.selected("3.2") and ctx.selected("5.2/hello_n/solution.py")
    assert not ctx.selected("1.2") and not ctx.selected("5.2/hello_n_extra/a.py") and not ctx.selected("5.2")


def test_corpus_errors_name_the_file(tmp_path: Path) -> None:
    problem = tmp_path / "p"
    (problem / "tests").mkdir(parents=True)
    (problem / "tests" / "01.in").write_text("1\n")
    (problem / "tests" / "01.out").write_text("1\n")
    (problem / "a.py").write_text("print(input())\n")
    meta = {"statement": "echo", "solutions": [{"file": "a.py", "language": "python", "expected_verdict": "AC"}]}
    (problem / "problem.json").write_text(json.dumps(meta))
    assert tsp.load_corpus(tmp_path)[0].tests[0].name == "01"
    for broken in (
        {**meta, "statement": ""},
        {**meta, "solutions": [{"file": "missing.py", "language": "python", "expected_verdict": "AC"}]},
        {**meta, "solutions": [{"file": "a.py", "language": "python", "expected_verdict": "OK"}]},
        {**meta, "limits": {"run_timeout": "3s"}},
    ):
        (problem / "problem.json").write_text(json.dumps(broken))
        with pytest.raises(tsp.CorpusError, match=r"problem\.json"):
            tsp.load_corpus(tmp_path)


# ---------------------------------------------------------------- backends

@contextmanager
def serving(env: dict[str, str], executor: FakeExecutor) -> Iterator[str]:
    """The real app (create_app) with ``executor``, served on a free port by werkzeug; yields its URL."""
    app = create_app(Settings.from_env(env), executor=executor)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)
        app.extensions["piston"].close()


@pytest.fixture
def real_backend() -> Iterator[tuple[str, FakeExecutor]]:
    """The real app; its executor runs Python on the host and offers nothing else (as a PythonLTS pool)."""
    executor = FakeExecutor(runtimes=[PYTHON])
    with serving({"MAX_QUEUED_JOBS": "200"}, executor) as url:
        yield url, executor


class WrongBackend(BaseHTTPRequestHandler):
    """Says ok to everything, with wrong and incomplete answers. Records the paths it was asked for."""

    protocol_version = "HTTP/1.1"  # keeps connections open, as gunicorn does (werkzeug's server does not)
    paths: list[str] = []
    # Close each connection after answering without saying so, as a server dropping an idle one does.
    drop_connections = False

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = self.drop_connections

    def do_GET(self) -> None:
        self.paths.append(self.path)
        if self.path == "/health":
            self._send(200, {"status": "ok", "executor": "wrong"})
        elif self.path == "/api/v2/runtimes":
            self._send(200, [PYTHON.to_json()])
        else:
            self._send(404, {"message": "Not Found"})

    def do_POST(self) -> None:
        self.paths.append(self.path)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._send(200, {"language": "python", "run": {"stdout": "wrong\n", "stderr": "", "code": 0}})


@pytest.fixture
def wrong_backend() -> Iterator[tuple[str, type[WrongBackend]]]:
    handler = type("Handler", (WrongBackend,), {"paths": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


Ran = tuple[subprocess.CompletedProcess[str], dict[str, Any]]


def run_script(*args: str, tmp_path: Path, python: list[str] | None = None) -> Ran:
    report_path = tmp_path / "report.json"
    done = subprocess.run([*(python or [sys.executable]), str(SCRIPT), *args, "--json", str(report_path),
                           "--no-progress"], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return done, report


SERVED = "0.*,1.*,2.*,3.*,4.*,5.1,E.*,H.*,L.1"


def test_a_wrong_backend_fails(wrong_backend, tmp_path: Path) -> None:
    url, _ = wrong_backend
    done, report = run_script("--endpoint", url, "--phase", "1", tmp_path=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "RESULT: FAIL" in done.stdout
    failed = {c["id"] for c in report["checks"] if c["result"] == "FAIL"}
    assert {"1.1", "2.1", "3.1", "4.2", "5.1", "E.1", "E.2", "L.1"} <= failed
    by_id = {c["id"]: c for c in report["checks"]}
    assert "missing" in by_id["5.1"]["detail"]  # the fields it left out
    fail_lines = [line for line in done.stdout.splitlines() if "  FAIL  " in line]
    assert len(fail_lines) == len(failed)
    assert report["ok"] is False


def test_wrong_judge_answers_fail_the_test_cases(wrong_backend, tmp_path: Path) -> None:
    url, handler = wrong_backend
    done, report = run_script("--endpoint", url, "--phase", "testcases", "--only", "5.2/hello_n", tmp_path=tmp_path)
    assert done.returncode == 1
    rows = {c["id"]: c for c in report["checks"]}
    assert rows["5.2/hello_n/solution.py"]["result"] == "FAIL"
    assert "missing 'verdict'" in rows["5.2/hello_n/solution.py"]["detail"]
    assert rows["5.2/hello_n/solution.c"]["result"] == "SKIP"  # c is not listed by the fake
    assert rows["5.2"]["result"] == "FAIL"
    # One /judge request per Python solution of hello_n (3), and no /execute: the backend judges.
    assert handler.paths.count("/api/v2/judge") == 3 and "/api/v2/execute" not in handler.paths


def test_a_correct_backend_passes_with_a_plain_python(real_backend, tmp_path: Path) -> None:
    url, _ = real_backend
    done, report = run_script("--endpoint", url, "--phase", "1", "--only", SERVED, tmp_path=tmp_path,
                              python=PLAIN_PYTHON)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "RESULT: PASS" in done.stdout
    rows = {c["id"]: c for c in report["checks"]}
    plan = {"1.1", "1.2", "1.3", "2.1", "2.2", "2.3", "3.1", "3.2", "3.3", "4.1", "4.2", "4.3", "5.1", "L.1"}
    assert plan <= set(rows)
    assert all(c["result"] in ("PASS", "INFO", "SKIP") for c in report["checks"])
    assert report["endpoint"] == url and report["runtimes"] == [PYTHON.to_json()] and report["timestamp"]


def test_a_python_only_pool_is_reported_and_its_compiled_checks_skipped(real_backend, tmp_path: Path) -> None:
    url, _ = real_backend
    done, report = run_script("--endpoint", url, "--phase", "1", "--only", "0.*,E.3,H.*", tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {c["id"]: c for c in report["checks"]}
    assert rows["0.3"]["result"] == "INFO" and rows["0.3"]["data"]["offered"] == ["python"]
    assert rows["0.3"]["data"]["compiled_missing"] == ["c", "c++", "java", "go"]
    assert rows["H.python@3.11.2"]["result"] == "PASS"
    for check_id in ("E.3", "H.c", "H.c++", "H.java", "H.go"):
        assert rows[check_id]["result"] == "SKIP", rows[check_id]
        assert "lists python" in rows[check_id]["detail"] and "PythonLTS" in rows[check_id]["detail"]
    assert "offered: python; no c, c++, java, go" in done.stdout
    assert "Languages offered: python 3.11.2 (not offered: c, c++, java, go)" in done.stdout


def test_the_corpus_is_judged_by_the_backend(real_backend, tmp_path: Path) -> None:
    url, _ = real_backend
    done, report = run_script("--endpoint", url, "--phase", "2", "--only", "5.2/hello_n,5.2/a_plus_b",
                              tmp_path=tmp_path, python=PLAIN_PYTHON)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {c["id"]: c for c in report["checks"]}
    assert rows["5.2/hello_n/lowercase.py"]["data"]["verdict"] == "WA"
    assert rows["5.2/hello_n/exit_code.py"]["data"]["verdict"] == "RE"
    assert rows["5.2/hello_n/solution.py"]["data"]["verdict"] == "AC"
    assert rows["5.2/a_plus_b/compile_error.c"]["result"] == "SKIP"
    assert "c is not offered" in rows["5.2/a_plus_b/compile_error.c"]["detail"]
    assert rows["5.2"]["result"] == "PASS"


def test_a_verdict_other_than_expected_fails(real_backend, tmp_path: Path) -> None:
    """The backend's verdict is compared with the corpus's: a backend that runs nothing right fails 5.2."""
    url, executor = real_backend
    executor.run_function = lambda program, spec: exited(0, "not the answer\n")
    done, report = run_script("--endpoint", url, "--phase", "2", "--only", "5.2/hello_n/solution.py",
                              tmp_path=tmp_path)
    assert done.returncode == 1
    row = next(c for c in report["checks"] if c["id"] == "5.2/hello_n/solution.py")
    assert row["result"] == "FAIL" and row["detail"].startswith("expected AC, got WA on test 01")


def test_performance_figures(real_backend, tmp_path: Path) -> None:
    url, _ = real_backend
    done, report = run_script("--endpoint", url, "--phase", "performance", "--requests", "5",
                              "--no-speed-criteria", tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout
    figures = report["figures"]
    assert figures["cold_start"]["first_request_ms"] > 0
    assert set(figures["warm_latency"]) >= {"p50_ms", "p95_ms", "p99_ms"}
    assert figures["throughput"]["10"]["failed"] == 0 and figures["throughput"]["50"]["requests"] == 100
    assert "Warm latency (n=5)" in done.stdout and report["criteria"]["applied"] is False


def test_speed_criteria_fail_a_run_unless_turned_off(tmp_path: Path) -> None:
    args = tsp.parse_args([])
    ctx = tsp.Context(args, tsp.PistonClient("http://x"), tsp.Progress(enabled=False))
    assert ctx.too_slow(1200.0, tsp.WARM_P50_LIMIT_MS, "p50") == ["p50 1200 ms >= 1000 ms"]
    assert ctx.too_slow(999.0, tsp.WARM_P50_LIMIT_MS, "p50") == []
    ctx.args = tsp.parse_args(["--no-speed-criteria"])
    assert ctx.too_slow(1200.0, tsp.WARM_P50_LIMIT_MS, "p50") == []


@pytest.fixture
def keyed_backend() -> Iterator[str]:
    with serving({"API_KEYS": "secret-key-of-the-test"}, FakeExecutor()) as url:
        yield url


def test_api_key_is_sent(keyed_backend: str, tmp_path: Path) -> None:
    done, report = run_script("--endpoint", keyed_backend, "--phase", "1", "--only", "1.1", tmp_path=tmp_path)
    assert done.returncode == 1  # refused without the key
    assert "HTTP 401" in next(c for c in report["checks"] if c["id"] == "1.1")["detail"]
    done, _ = run_script("--endpoint", keyed_backend, "--phase", "1", "--only", "1.1", "--api-key",
                         "secret-key-of-the-test", tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout


def test_an_unreachable_backend_fails_fast(tmp_path: Path) -> None:
    done, report = run_script("--endpoint", f"http://127.0.0.1:{tsp.free_port()}", "--retries", "0",
                              tmp_path=tmp_path, python=PLAIN_PYTHON)
    assert done.returncode == 1
    assert [c["id"] for c in report["checks"]] == ["0.1"]
    assert "cannot reach" in report["checks"][0]["detail"]


def test_kept_alive_connections_survive_a_server_that_closes_them(wrong_backend) -> None:
    """A connection the server closed while idle is re-opened, not reported as a failure (retries=0)."""
    url, handler = wrong_backend
    client = tsp.PistonClient(url, retries=0)
    try:
        assert client.health().status == 200
        kept = client._local.connection
        assert client.health().status == 200 and client._local.connection is kept  # reused
        handler.drop_connections = True
        assert client.health().status == 200  # answered, then dropped by the server
        time.sleep(0.1)
        assert client.health().status == 200
        assert client._local.connection is not kept
    finally:
        client.close()
