"""test_session_pool.py: its helpers, and the whole script against fake backends.

The fakes are in-process threaded HTTP servers on free ports. A wrong one (wrong stdout,
missing fields) must make the script exit non-zero with FAIL rows; a correct one (it runs
Python locally, Piston-style) must pass the scenarios it can serve.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "test_session_pool.py"


import test_session_pool as tsp  # noqa: E402 - the repo root is on sys.path under pytest

# ---------------------------------------------------------------- helpers of the script

def _answer(run: dict[str, Any], compile_stage: dict[str, Any] | None = None) -> dict[str, Any]:
    stage = dict.fromkeys(tsp.STAGE_FIELDS)
    body: dict[str, Any] = {"language": "python", "version": "3.11.2", "run": {**stage, **run}}
    if compile_stage is not None:
        body["compile"] = {**stage, **compile_stage}
    return body


@pytest.mark.parametrize(("body", "memory_limited", "verdict"), [
    (_answer({"stdout": "3\n", "code": 0}), False, "AC"),
    (_answer({"stdout": "3   \n\n\n", "code": 0}), False, "AC"),
    (_answer({"stdout": "4\n", "code": 0}), False, "WA"),
    (_answer({"code": 1, "status": "RE"}, {"code": 1, "status": "RE"}), False, "CE"),
    (_answer({"signal": "SIGKILL", "status": "TO"}), True, "TLE"),
    (_answer({"signal": "SIGKILL", "status": "OL"}), False, "OLE"),
    (_answer({"signal": "SIGKILL", "status": "SG"}), True, "MLE"),
    (_answer({"signal": "SIGKILL", "status": "SG"}), False, "RE"),
    (_answer({"code": 1, "status": "RE", "stderr": "MemoryError\n"}), False, "MLE"),
    (_answer({"code": 134, "status": "RE", "stderr": "FATAL ERROR: JavaScript heap out of memory"}), True, "MLE"),
    (_answer({"signal": "SIGSEGV", "status": "SG"}), False, "RE"),
    (_answer({"stdout": "3\n", "code": 3, "status": "RE"}), False, "RE"),
    (_answer({"status": "XX"}), False, "IE"),
    (_answer({"status": "XX"}, {"status": "XX"}), False, "IE"),
    (_answer({"stdout": "3\n", "code": 0}, {"code": 0}), False, "AC"),
])
def test_classify(body: dict[str, Any], memory_limited: bool, verdict: str) -> None:
    assert tsp.classify(body, "3\n", memory_limited) == verdict


def test_outputs_match_ignores_only_trailing_whitespace() -> None:
    assert tsp.outputs_match("1 2 \n3\t\n\n", "1 2\n3")
    assert tsp.outputs_match("a\r\nb\r\n", "a\nb\n")
    assert not tsp.outputs_match(" 1\n", "1\n")
    assert not tsp.outputs_match("1\n\n2\n", "1\n2\n")


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


# ---------------------------------------------------------------- fake backends

RUNTIMES = [{"language": "python", "version": "3.11.2", "aliases": ["py", "py3", "python3"]}]


def _run_python(request: dict[str, Any]) -> dict[str, Any]:
    """Piston's answer for a Python request, run directly (trusted test code only)."""
    with tempfile.TemporaryDirectory() as box:
        main = Path(box) / "main.py"
        main.write_text(request["files"][0]["content"])
        stdin = request.get("stdin") or ""
        if not stdin.endswith("\n"):
            stdin += "\n"  # as Piston does
        try:
            done = subprocess.run([sys.executable, "-I", str(main)], input=stdin, capture_output=True, text=True,
                                  timeout=(request.get("run_timeout") or 3000) / 1000)
        except subprocess.TimeoutExpired:
            run = {"stdout": "", "stderr": "", "code": None, "signal": "SIGKILL", "status": "TO",
                   "message": "Time limit exceeded"}
        else:
            run = {"stdout": done.stdout, "stderr": done.stderr, "code": done.returncode, "signal": None,
                   "status": "RE" if done.returncode else None,
                   "message": f"Exited with error status {done.returncode}" if done.returncode else None}
    run.update(output=run["stdout"] + run["stderr"], memory=1_000_000, cpu_time=10, wall_time=12)
    return {"run": run, "language": "python", "version": "3.11.2"}


class FakeBackend(BaseHTTPRequestHandler):
    """``mode``: "correct" answers like Piston; "wrong" says ok to everything but with wrong, incomplete runs."""

    mode = "correct"
    api_key: str | None = None
    seen_headers: list[dict[str, str]] = []

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        self.seen_headers.append(dict(self.headers))
        if self.api_key and self.headers.get("X-API-Key") != self.api_key:
            self._send(401, {"message": "unauthorized"})
            return False
        return True

    def do_GET(self) -> None:
        if not self._authorized():
            return
        if self.path == "/health":
            self._send(200, {"status": "ok", "executor": "fake"})
        elif self.path == "/api/v2/runtimes":
            self._send(200, RUNTIMES)
        else:
            self._send(404, {"message": "Not Found"})

    def do_POST(self) -> None:
        if not self._authorized():
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.mode == "wrong":
            self._send(200, {"language": "python", "run": {"stdout": "wrong\n", "stderr": "", "code": 0}})
            return
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            self._send(415, {"message": "requests must be of type application/json"})
        elif body.get("language") not in ("python", "py", "py3", "python3"):
            self._send(400, {"message": f"{body.get('language')}-{body.get('version')} runtime is unknown"})
        else:
            self._send(200, _run_python(body))


@pytest.fixture
def fake_backend() -> Iterator[tuple[str, type[FakeBackend]]]:
    handler = type("Handler", (FakeBackend,), {"seen_headers": []})
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


def run_script(*args: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    report_path = tmp_path / "report.json"
    done = subprocess.run([sys.executable, str(SCRIPT), *args, "--json", str(report_path), "--no-progress"],
                          capture_output=True, text=True, timeout=180, cwd=tmp_path)
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return done, report


FAKE_SERVED = "0.*,1.*,2.*,3.*,4.*,5.1,E.1,E.2"


def test_a_wrong_backend_fails(fake_backend, tmp_path: Path) -> None:
    url, handler = fake_backend
    handler.mode = "wrong"
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


def test_wrong_outputs_fail_the_test_cases(fake_backend, tmp_path: Path) -> None:
    url, handler = fake_backend
    handler.mode = "wrong"
    done, report = run_script("--endpoint", url, "--phase", "testcases", "--only", "5.2/hello_n", tmp_path=tmp_path)
    assert done.returncode == 1
    rows = {c["id"]: c for c in report["checks"]}
    assert rows["5.2/hello_n/solution.py"]["result"] == "FAIL"
    assert rows["5.2/hello_n/solution.c"]["result"] == "SKIP"  # c is not listed by the fake
    assert rows["5.2"]["result"] == "FAIL"


def test_a_correct_backend_passes(fake_backend, tmp_path: Path) -> None:
    url, handler = fake_backend
    handler.mode = "correct"
    done, report = run_script("--endpoint", url, "--phase", "1", "--only", FAKE_SERVED, tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "RESULT: PASS" in done.stdout
    ids = {c["id"] for c in report["checks"]}
    assert {"1.1", "1.2", "1.3", "2.1", "2.2", "2.3", "3.1", "3.2", "3.3", "4.1", "4.2", "4.3", "5.1"} <= ids
    assert all(c["result"] == "PASS" for c in report["checks"])
    assert report["endpoint"] == url and report["runtimes"] == RUNTIMES and report["timestamp"]


def test_python_test_cases_pass_on_a_correct_backend(fake_backend, tmp_path: Path) -> None:
    url, handler = fake_backend
    handler.mode = "correct"
    done, report = run_script("--endpoint", url, "--phase", "2", "--only", "5.2/hello_n,5.2/a_plus_b",
                              tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout
    rows = {c["id"]: c for c in report["checks"]}
    assert rows["5.2/hello_n/lowercase.py"]["data"]["verdict"] == "WA"
    assert rows["5.2/hello_n/exit_code.py"]["data"]["verdict"] == "RE"
    assert rows["5.2/a_plus_b/compile_error.c"]["result"] == "SKIP"


def test_performance_figures(fake_backend, tmp_path: Path) -> None:
    url, handler = fake_backend
    handler.mode = "correct"
    done, report = run_script("--endpoint", url, "--phase", "performance", "--requests", "5", tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout
    figures = report["figures"]
    assert figures["cold_start"]["first_request_ms"] > 0
    assert set(figures["warm_latency"]) >= {"p50_ms", "p95_ms", "p99_ms"}
    assert figures["throughput"]["10"]["failed"] == 0 and figures["throughput"]["50"]["requests"] == 100
    assert "Warm latency (n=5)" in done.stdout


def test_api_key_is_sent(fake_backend, tmp_path: Path) -> None:
    url, handler = fake_backend
    handler.api_key = "secret"
    done, _ = run_script("--endpoint", url, "--phase", "1", "--only", "1.1", tmp_path=tmp_path)
    assert done.returncode == 1  # refused without the key
    done, _ = run_script("--endpoint", url, "--phase", "1", "--only", "1.1", "--api-key", "secret",
                         tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout
    assert handler.seen_headers[-1]["Authorization"] == "secret"


def test_an_unreachable_backend_fails_fast(tmp_path: Path) -> None:
    done, report = run_script("--endpoint", f"http://127.0.0.1:{tsp.free_port()}", "--retries", "0",
                              tmp_path=tmp_path)
    assert done.returncode == 1
    assert [c["id"] for c in report["checks"]] == ["0.1"]
    assert "cannot reach" in report["checks"][0]["detail"]
