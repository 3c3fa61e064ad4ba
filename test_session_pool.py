#!/usr/bin/env python3
"""Check a Piston v2 backend end to end: does it work, and how fast is it?

    python test_session_pool.py                    # start the backend locally (USE_LOCAL_EXECUTOR=true), check it
    python test_session_pool.py --endpoint URL     # check a running backend (local or in Azure); --api-key KEY
    python test_session_pool.py --full             # every phase at full size (200 warm requests, 5 rounds of
                                                   # throughput instead of 50 and 2)
    python test_session_pool.py --phase 1 --only '3.*'   # a selection; --json FILE for the whole report

Any Python 3.9+ runs it with nothing installed: HTTP is the standard library's (http.client, one kept-alive
connection per thread). Without --endpoint the backend is a real gunicorn subprocess, run by the project's
.venv/bin/python (scripts/setup.sh makes it), on a free port (repository root, its own process group),
stopped at the end, on failure and on Ctrl-C. --env KEY=VALUE (repeatable) adds to its environment,
e.g. --env USE_LOCAL_EXECUTOR=false --env POOL_MANAGEMENT_ENDPOINT=http://127.0.0.1:8080.

Phases (operator test plan, "Session Pool Code Execution Test Plan"):
  1 functional   health, runtimes, the languages offered (0.3), scenarios 1.1-1.3, 2.1-2.3, 3.1-3.3, 4.1-4.3,
                 5.1, error responses, limits (time, memory, output), a hello world per listed language, and
                 a SKIP row (with why) for each compiled language the backend knows but does not offer
  2 testcases    scenario 5.2: every solution in test_cases/ through /api/v2/judge; the backend's verdict
                 must be the one the corpus expects (languages the backend does not offer: SKIP, with why)
  3 performance  cold start, first request per language, warm latency p50/p95/p99, throughput at 10 and 50

A progress bar goes to stderr, the summary table to stdout, the whole report to --json FILE.
The exit status is 0 only when every check passed (SKIP and INFO rows do not fail a run), 1 when a check
failed, 2 on bad usage, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import http.client
import importlib.util
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parent
DEFAULT_TEST_CASES = REPO_ROOT / "test_cases"

PASS, FAIL, SKIP, INFO = "PASS", "FAIL", "SKIP", "INFO"
VERDICTS = ("AC", "WA", "TLE", "MLE", "RE", "CE", "OLE")
STAGE_FIELDS = ("stdout", "stderr", "output", "code", "signal", "message", "status", "memory", "cpu_time", "wall_time")
STATUSES = (None, "RE", "SG", "TO", "OL", "EL", "XX")
LIMIT_FIELDS = (
    "compile_timeout", "run_timeout", "compile_cpu_time", "run_cpu_time", "compile_memory_limit", "run_memory_limit",
)

COLD_START_LIMIT_MS = 5000.0  # plan: cold start < 5 s
WARM_P50_LIMIT_MS = 1000.0  # plan: warm execution < 1 s

T = TypeVar("T")
R = TypeVar("R")

# Set when the run is being torn down: the HTTP client stops retrying.
STOPPING = threading.Event()


# ---------------------------------------------------------------- results

@dataclass
class Check:
    """One row of the report."""

    id: str
    name: str
    phase: int
    expectation: str
    result: str = PASS
    latency_ms: float | None = None
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def conclude(self, problems: Sequence[str], detail: str = "") -> None:
        """PASS with ``detail``, or FAIL naming the (first three) problems, then the detail for context."""
        self.result = FAIL if problems else PASS
        self.detail = " | ".join(part for part in ("; ".join(problems[:3]), detail) if part)


@dataclass(frozen=True)
class Scenario:
    """A single-request check: send ``code``, hand the reply to ``verify`` (which lists the problems)."""

    id: str
    name: str
    expectation: str
    code: str
    verify: Callable[[Reply], list[str]]
    stdin: str = ""
    language: str = "python"
    limits: dict[str, int] = field(default_factory=dict)


@dataclass
class Reply:
    """An HTTP answer: status, parsed JSON body (None if not JSON) and latency."""

    status: int
    body: Any
    latency_ms: float
    text: str = ""

    def stage(self, name: str = "run") -> dict[str, Any]:
        value = self.body.get(name) if isinstance(self.body, dict) else None
        return value if isinstance(value, dict) else {}


# ---------------------------------------------------------------- HTTP client

class RequestError(Exception):
    """The request got no HTTP answer: refused, reset, timed out, or the URL is unusable."""


# Errors after which a kept-alive connection is unusable and the request may be sent again.
CONNECTION_ERRORS = (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine,
                     http.client.IncompleteRead, http.client.CannotSendRequest, http.client.ResponseNotReady)


class PistonClient:
    """A small Piston v2 client on the standard library: one kept-alive connection per thread, timeouts,
    retries on connection errors only (an operator runs this with any Python 3.9+, nothing installed)."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0, retries: int = 3) -> None:
        self.base_url = base_url.rstrip("/")
        parts = urllib.parse.urlsplit(self.base_url)
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        self.port = parts.port
        self.prefix = parts.path
        self.timeout = timeout
        self.retries = retries
        self.headers = {"Authorization": api_key, "X-API-Key": api_key} if api_key else {}
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self.first_execute: Reply | None = None
        # The first successful run per requested language name (as sent: may be an alias).
        self.first_by_language: dict[str, Reply] = {}

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection, and whether it is new (a reused one may have been closed by the server)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            return connection, False
        if self.scheme == "https":
            connection = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout)
        elif self.scheme == "http":
            connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        else:
            raise RequestError(f"unsupported URL {self.base_url!r}: use http:// or https://")
        self._local.connection = connection
        with self._lock:
            self._connections.append(connection)
        return connection, True

    def _drop_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()
            with self._lock:
                self._connections = [c for c in self._connections if c is not connection]

    def request(self, method: str, path: str, *, json_body: Any = None, data: str | None = None,
                headers: dict[str, str] | None = None, timeout: float | None = None) -> Reply:
        """Send one request. Connection errors are retried with backoff; timeouts and HTTP errors are not."""
        send_headers = dict(self.headers)
        payload: bytes | None = None
        if json_body is not None:
            payload = json.dumps(json_body).encode()
            send_headers["Content-Type"] = "application/json"
        elif data is not None:
            payload = data.encode()
        send_headers.update(headers or {})
        attempt = 0
        while True:
            connection, fresh = self._connection()
            connection.timeout = timeout or self.timeout
            if connection.sock is not None:
                connection.sock.settimeout(connection.timeout)
            started = time.perf_counter()
            try:
                connection.request(method, self.prefix + path, body=payload, headers=send_headers)
                response = connection.getresponse()
                raw = response.read()
            except socket.timeout as exc:  # before OSError: on 3.9 socket.timeout is an OSError, not TimeoutError
                self._drop_connection()
                raise RequestError(f"timed out after {connection.timeout:g} s") from exc
            except (*CONNECTION_ERRORS, OSError) as exc:
                self._drop_connection()
                if not fresh and isinstance(exc, CONNECTION_ERRORS):
                    continue  # the server closed the idle kept-alive connection: send again at once
                if attempt >= self.retries or STOPPING.is_set():
                    raise RequestError(f"{type(exc).__name__}: {exc}") from exc
                time.sleep(0.5 * 2**attempt)
                attempt += 1
                continue
            latency = (time.perf_counter() - started) * 1000
            if response.will_close:
                self._drop_connection()
            text = raw.decode("utf-8", "replace")
            try:
                body = json.loads(text)
            except ValueError:
                body = None
            return Reply(response.status, body, latency, text[:2000])

    def health(self, timeout: float | None = None) -> Reply:
        return self.request("GET", "/health", timeout=timeout)

    def runtimes(self) -> Reply:
        return self.request("GET", "/api/v2/runtimes")

    def execute(self, payload: dict[str, Any]) -> Reply:
        reply = self.request("POST", "/api/v2/execute", json_body=payload)
        with self._lock:
            if self.first_execute is None:
                self.first_execute = reply
            if reply.status == 200 and reply.stage().get("status") is None:
                self.first_by_language.setdefault(str(payload.get("language")), reply)
        return reply

    def judge(self, payload: dict[str, Any]) -> Reply:
        return self.request("POST", "/api/v2/judge", json_body=payload)

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()


FILE_NAMES = {
    "python": "main.py", "c": "main.c", "c++": "main.cpp", "java": "Main.java", "javascript": "main.js",
    "typescript": "main.ts", "go": "main.go", "rust": "main.rs", "kotlin": "main.kt", "csharp": "main.cs",
    "swift": "main.swift", "haskell": "main.hs", "pascal": "main.pas", "fortran": "main.f90", "d": "main.d",
    "scala": "main.scala", "bash": "main.sh", "ruby": "main.rb", "php": "main.php", "perl": "main.pl",
    "lua": "main.lua",
}


def make_payload(language: str, code: str, *, stdin: str = "", version: str = "*", file_name: str | None = None,
                 limits: dict[str, int] | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "language": language,
        "version": version,
        "files": [{"name": file_name or FILE_NAMES.get(language, "main"), "content": code, "encoding": "utf8"}],
        "stdin": stdin,
        "args": [],
    }
    payload.update(limits or {})
    return payload


# ---------------------------------------------------------------- test-case corpus

@dataclass(frozen=True)
class Solution:
    file: str
    language: str
    expected_verdict: str
    version: str = "*"
    note: str = ""


@dataclass(frozen=True)
class TestPair:
    name: str
    input_path: Path
    output_path: Path

    def read(self) -> tuple[str, str]:
        return self.input_path.read_text(), self.output_path.read_text()


@dataclass(frozen=True)
class Problem:
    name: str
    path: Path
    title: str
    statement: str
    limits: dict[str, int]
    solutions: tuple[Solution, ...]
    tests: tuple[TestPair, ...]


class CorpusError(ValueError):
    """test_cases/ does not follow test_cases/README.md; the message names the file."""


def load_problem(path: Path) -> Problem:
    meta_path = path / "problem.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise CorpusError(f"{meta_path}: {exc}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("statement"), str) or not meta["statement"].strip():
        raise CorpusError(f"{meta_path}: needs a non-empty 'statement'")
    limits = meta.get("limits", {})
    if not isinstance(limits, dict) or any(k not in LIMIT_FIELDS or not isinstance(v, int) for k, v in limits.items()):
        raise CorpusError(f"{meta_path}: 'limits' may only hold integer {', '.join(LIMIT_FIELDS)}")
    solutions = []
    for index, raw in enumerate(meta.get("solutions") or []):
        try:
            solution = Solution(**raw)
        except TypeError as exc:
            raise CorpusError(f"{meta_path}: solutions[{index}]: {exc}") from None
        if solution.expected_verdict not in VERDICTS:
            raise CorpusError(f"{meta_path}: solutions[{index}]: verdict {solution.expected_verdict!r} "
                              f"is not one of {', '.join(VERDICTS)}")
        if not (path / solution.file).is_file():
            raise CorpusError(f"{meta_path}: solutions[{index}]: {solution.file} does not exist")
        solutions.append(solution)
    if not solutions:
        raise CorpusError(f"{meta_path}: needs at least one solution")
    tests = []
    for input_path in sorted((path / "tests").glob("*.in")):
        output_path = input_path.with_suffix(".out")
        if not output_path.is_file():
            raise CorpusError(f"{input_path}: no matching {output_path.name}")
        tests.append(TestPair(input_path.stem, input_path, output_path))
    if not tests:
        raise CorpusError(f"{path}: needs at least one tests/NN.in + tests/NN.out pair")
    return Problem(path.name, path, str(meta.get("title") or path.name), meta["statement"].strip(), dict(limits),
                   tuple(solutions), tuple(tests))


def load_corpus(root: Path) -> list[Problem]:
    """Every problem under ``root`` (one folder with a problem.json each), sorted by name."""
    return [load_problem(p) for p in sorted(root.iterdir()) if (p / "problem.json").is_file()]


# ---------------------------------------------------------------- local backend

class BackendError(RuntimeError):
    pass


def backend_python() -> str:
    """The interpreter that runs the backend: the project's .venv (made by scripts/setup.sh), which has
    gunicorn and the backend's packages, whatever Python runs this script."""
    venv_python = REPO_ROOT / ".venv" / "bin" / "python"
    if venv_python.exists():
        return str(venv_python)
    if importlib.util.find_spec("gunicorn") is not None:
        return sys.executable
    raise BackendError(f"no {venv_python} (run ./scripts/setup.sh) and {sys.executable} has no gunicorn: "
                       "cannot start a backend; or check a running one with --endpoint URL")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalBackend:
    """The backend as a real gunicorn subprocess in its own process group, stopped (with all of it) on exit."""

    def __init__(self, env: dict[str, str], startup_timeout: float, log_path: Path | None = None) -> None:
        self.command = [backend_python(), "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "USE_LOCAL_EXECUTOR": "true", **env, "PORT": str(self.port),
                    "PYTHONUNBUFFERED": "1"}
        self.startup_timeout = startup_timeout
        self.keep_log = log_path is not None
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="piston-backend-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None  # also the process group id
        self.startup_seconds: float | None = None
        self.health: Any = None

    def start(self) -> None:
        started = time.perf_counter()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.command, cwd=REPO_ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid
        client = PistonClient(self.url, timeout=2, retries=0)
        deadline = time.monotonic() + self.startup_timeout
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise BackendError(f"gunicorn exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    reply = client.health()
                    if reply.status == 200:
                        self.startup_seconds = time.perf_counter() - started
                        self.health = reply.body
                        return
                except RequestError:
                    pass
                time.sleep(0.2)
        finally:
            client.close()
        raise BackendError(f"/health did not answer 200 within {self.startup_timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        # Anything the master left behind in its group.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def remove_log(self) -> None:
        if not self.keep_log:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> LocalBackend:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------- progress

class Progress:
    """A one-line bar on a terminal; one line per finished check otherwise. Thread-safe."""

    def __init__(self, enabled: bool, stream: Any = sys.stderr) -> None:
        self.enabled = enabled
        self.stream = stream
        self.tty = enabled and stream.isatty()
        self.total = 0
        self.done = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def add_total(self, count: int) -> None:
        with self._lock:
            self.total += count
            self._draw("")

    def advance(self, check: Check) -> None:
        with self._lock:
            self.done += 1
            if self.tty:
                self._draw(f"{check.result} {check.id}")
            elif self.enabled:
                self.stream.write(f"[{self.done}/{max(self.total, self.done)}] {check.result:4} {check.id} "
                                  f"{check.name}\n")
                self.stream.flush()

    def note(self, message: str) -> None:
        if not self.enabled:
            return
        with self._lock:
            if self.tty:
                self.stream.write("\r\033[K")
            self.stream.write(message + "\n")
            self._draw("")

    def _draw(self, label: str) -> None:
        if not self.tty or not self.total:
            return
        total = max(self.total, self.done, 1)
        width = 30
        filled = int(width * self.done / total)
        elapsed = time.monotonic() - self.started
        self.stream.write(f"\r\033[K[{'#' * filled}{'.' * (width - filled)}] {self.done}/{total} "
                          f"{elapsed:5.1f}s {label[:50]}")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


# ---------------------------------------------------------------- run context

@dataclass
class Context:
    args: argparse.Namespace
    client: PistonClient
    progress: Progress
    executor: str = "unknown"  # "local", "pool", ... from /health, or what we started
    health: Any = None
    runtimes: list[dict[str, Any]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    started_backend: LocalBackend | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def is_local(self) -> bool:
        return self.executor == "local"

    def selected(self, check_id: str) -> bool:
        patterns = self.args.only
        if not patterns:
            return True
        return any(check_id == p or check_id.startswith(p + "/") or fnmatch.fnmatchcase(check_id, p)
                   for p in patterns)

    def record(self, check: Check) -> Check:
        with self._lock:
            self.checks.append(check)
        self.progress.advance(check)
        return check

    def put_in_order(self, checks: Sequence[Check]) -> None:
        """Move ``checks`` (recorded in completion order by worker threads) to the end, in the given order."""
        moved = {id(c) for c in checks}
        with self._lock:
            self.checks = [c for c in self.checks if id(c) not in moved] + list(checks)

    def too_slow(self, ms: float, limit_ms: float, what: str) -> list[str]:
        """The plan's speed criterion as a problem, unless --no-speed-criteria (figures are still reported)."""
        if self.args.no_speed_criteria or ms < limit_ms:
            return []
        return [f"{what} {ms:.0f} ms >= {limit_ms:.0f} ms"]

    def runtime_for(self, language: str) -> dict[str, Any] | None:
        """The listed runtime serving ``language`` (canonical name or alias), highest version first."""
        matches = [rt for rt in self.runtimes if rt.get("language") == language or language in rt.get("aliases", [])]
        return max(matches, key=lambda rt: version_key(str(rt.get("version", "")))) if matches else None


def version_key(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("-")[0].split("."):
        parts.append(int(piece) if piece.isdigit() else -1)
    return tuple(parts)


def guarded(ctx: Context, check: Check, body: Callable[[Check], None]) -> Check:
    """Run ``body`` to fill in ``check``; an exception becomes a FAIL row instead of a crash."""
    try:
        body(check)
    except RequestError as exc:
        check.result, check.detail = FAIL, f"request failed: {type(exc).__name__}: {exc}"
    except Exception as exc:
        check.result, check.detail = FAIL, f"error: {type(exc).__name__}: {exc}"
    return ctx.record(check)


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """``[fn(x) for x in items]`` on a thread pool; pending work is cancelled if the caller is interrupted."""
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        futures = [pool.submit(fn, item) for item in items]
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


# ---------------------------------------------------------------- verification helpers

def response_problems(reply: Reply) -> list[str]:
    """Problems with the shape of an /execute answer (Piston v2, test 5.1)."""
    if reply.status != 200:
        return [f"HTTP {reply.status}: {reply.text[:200]}"]
    if not isinstance(reply.body, dict):
        return ["body is not a JSON object"]
    problems = [f"missing '{key}'" for key in ("language", "version", "run") if key not in reply.body]
    stages = ["run", "compile"] if "compile" in reply.body else ["run"]
    for name in stages:
        stage = reply.body.get(name)
        if not isinstance(stage, dict):
            if name in reply.body:
                problems.append(f"'{name}' is not an object")
            continue
        problems += [f"{name}.{key} missing" for key in STAGE_FIELDS if key not in stage]
        if stage.get("status") not in STATUSES:
            problems.append(f"{name}.status {stage.get('status')!r} not in {STATUSES}")
    return problems


def describe(reply: Reply, stage: str = "run") -> str:
    run = reply.stage(stage)
    return describe_stage(run) if run else f"HTTP {reply.status}"


def describe_stage(run: dict[str, Any]) -> str:
    """code, status, signal, the start of stdout and the telling line of stderr of a stage or judged case."""
    stdout = (run.get("stdout") or "")[:60]
    lines = (run.get("stderr") or "").strip().splitlines()
    errors = [line for line in lines if "error" in line.lower()]
    stderr = (errors or lines)[-1:] or [""]
    parts = [f"code={json.dumps(run.get('code'))}", f"status={json.dumps(run.get('status'))}"]
    if run.get("signal"):
        parts.append(f"signal={run.get('signal')}")
    if run.get("status") == "XX":
        parts.append(f"message={run.get('message')!r}")
    parts.append(f"stdout={stdout!r}")
    if stderr[0]:
        parts.append(f"stderr=...{stderr[0][-80:]!r}")
    return " ".join(parts)


def succeeds_with(text: str) -> Callable[[Reply], list[str]]:
    """Expect exit code 0, no status, and ``text`` in stdout."""

    def verify(reply: Reply) -> list[str]:
        problems = response_problems(reply)
        if problems:
            return problems
        run = reply.stage()
        if text not in (run.get("stdout") or ""):
            problems.append(f"stdout lacks {text!r}")
        if run.get("code") != 0:
            problems.append(f"exit code {run.get('code')}, expected 0")
        if run.get("status") is not None:
            problems.append(f"status {run.get('status')}, expected null")
        return problems

    return verify


def fails_with(marker: str) -> Callable[[Reply], list[str]]:
    """Expect a non-zero exit code and ``marker`` in stderr."""

    def verify(reply: Reply) -> list[str]:
        problems = response_problems(reply)
        if problems:
            return problems
        run = reply.stage()
        if marker not in (run.get("stderr") or ""):
            problems.append(f"stderr lacks {marker!r}")
        if run.get("code") in (0, None):
            problems.append(f"exit code {run.get('code')}, expected non-zero")
        return problems

    return verify


def status_is(*allowed: str, why: str) -> Callable[[Reply], list[str]]:
    """Expect the run stage's status to be one of ``allowed``."""

    def verify(reply: Reply) -> list[str]:
        problems = response_problems(reply)
        if problems:
            return problems
        status = reply.stage().get("status")
        if status not in allowed:
            problems.append(f"status {status!r}, expected {'/'.join(allowed)} ({why})")
        return problems

    return verify


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_stats(latencies: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(latencies),
        "min_ms": round(min(latencies), 1),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1),
        "mean_ms": round(sum(latencies) / len(latencies), 1),
    }


# ---------------------------------------------------------------- phase 1: functional

HELLO_N_CODE = "n = int(input())\nfor _ in range(n):\n    print(\"Hello\")\n"

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("1.1", "simple print", 'stdout has "Hello, World!", code 0',
             'print("Hello, World!")', succeeds_with("Hello, World!")),
    Scenario("1.2", "arithmetic", 'stdout has "4", code 0', "print(2 + 2)", succeeds_with("4")),
    Scenario("1.3", "variable assignment", 'stdout has "20", code 0', "x = 10; print(x * 2)", succeeds_with("20")),
    Scenario("2.1", "read stdin", 'stdin "Alice" -> "Hello, Alice", code 0',
             'name = input(); print(f"Hello, {name}")', succeeds_with("Hello, Alice"), stdin="Alice"),
    Scenario("2.2", "multiple input lines", 'stdin "5\\n3" -> "8", code 0',
             "a = int(input()); b = int(input()); print(a + b)", succeeds_with("8"), stdin="5\n3"),
    Scenario("3.1", "syntax error", "stderr has SyntaxError, code != 0",
             'print("unclosed string', fails_with("SyntaxError")),
    Scenario("3.2", "runtime error", "stderr has ZeroDivisionError, code != 0",
             "x = 1 / 0", fails_with("ZeroDivisionError")),
    Scenario("3.3", "import error", "stderr has ModuleNotFoundError, code != 0",
             "import nonexistent_module", fails_with("ModuleNotFoundError")),
    Scenario("L.1", "time limit", "infinite loop, run_timeout 1000 -> status TO",
             "while True:\n    pass\n", status_is("TO", why="time limit"),
             limits={"run_timeout": 1000, "run_cpu_time": 1000}),
    Scenario("L.2", "memory limit", "1 GiB under run_memory_limit 64 MiB -> killed (SG or RE)",
             'data = bytearray(b"\\x01") * (1 << 30)\nprint(len(data))\n',
             status_is("SG", "RE", why="memory limit"), limits={"run_memory_limit": 64 * 1024 * 1024}),
    Scenario("L.3", "output limit", "16 MiB of stdout -> status OL",
             'import sys\nline = "x" * 1023 + "\\n"\nfor _ in range(16 * 1024):\n    sys.stdout.write(line)\n',
             status_is("OL", why="stdout over the output cap")),
)

# Hello worlds by canonical Piston language name: (compiled, code). Each prints "Hello, World!".
HELLO_WORLDS: dict[str, tuple[bool, str]] = {
    "c": (True, '#include <stdio.h>\nint main(void) { puts("Hello, World!"); return 0; }\n'),
    "c++": (True, '#include <iostream>\nint main() { std::cout << "Hello, World!" << std::endl; }\n'),
    "java": (True, 'public class Main {\n    public static void main(String[] args) {\n'
                   '        System.out.println("Hello, World!");\n    }\n}\n'),
    "go": (True, 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("Hello, World!") }\n'),
    "rust": (True, 'fn main() { println!("Hello, World!"); }\n'),
    "kotlin": (True, 'fun main() { println("Hello, World!") }\n'),
    "csharp": (True, 'class P { static void Main() { System.Console.WriteLine("Hello, World!"); } }\n'),
    "typescript": (True, 'console.log("Hello, World!");\n'),
    "swift": (True, 'print("Hello, World!")\n'),
    "haskell": (True, 'main = putStrLn "Hello, World!"\n'),
    "pascal": (True, "program Hello;\nbegin\n  writeln('Hello, World!');\nend.\n"),
    "fortran": (True, "program hello\n  print '(a)', 'Hello, World!'\nend program hello\n"),
    "d": (True, 'import std.stdio;\nvoid main() { writeln("Hello, World!"); }\n'),
    "scala": (True, 'object Main extends App { println("Hello, World!") }\n'),
    "python": (False, 'print("Hello, World!")\n'),
    "javascript": (False, 'console.log("Hello, World!");\n'),
    "bash": (False, 'echo "Hello, World!"\n'),
    "ruby": (False, 'puts "Hello, World!"\n'),
    "php": (False, '<?php\necho "Hello, World!\\n";\n'),
    "perl": (False, 'print "Hello, World!\\n";\n'),
    "lua": (False, 'print("Hello, World!")\n'),
}
# The compiled languages this backend knows (backend/runtimes.py): each gets a hello world, or a SKIP
# row saying it is not offered.
BACKEND_COMPILED = ("c", "c++", "java", "go")
# Sources that must not compile, for E.3, in order of preference.
COMPILE_ERRORS: dict[str, str] = {
    "c": "int main(void) {\n    return undeclared_variable\n}\n",
    "c++": "int main() {\n    return undeclared_variable\n}\n",
    "java": "public class Main {\n    public static void main(String[] args) {\n        int x = \"text\";\n    }\n}\n",
    "go": "package main\n\nfunc main() {\n    return undeclared\n}\n",
    "rust": "fn main() {\n    let x: i32 = \"text\";\n}\n",
}


def phase1_checks(ctx: Context) -> list[tuple[str, Callable[[], Check]]]:
    """(id, thunk) for every selected phase-1 check, in run order."""
    by_id = {s.id: s for s in SCENARIOS}

    def scenarios(*ids: str) -> list[tuple[str, Callable[[], Check]]]:
        return [(i, lambda i=i: run_scenario(ctx, by_id[i])) for i in ids]

    plan: list[tuple[str, Callable[[], Check]]] = [
        ("0.1", lambda: check_health(ctx)),
        ("0.2", lambda: check_runtimes(ctx)),
        ("0.3", lambda: check_languages(ctx)),
        *scenarios("1.1", "1.2", "1.3", "2.1", "2.2"),
        ("2.3", lambda: check_hello_n(ctx)),
        *scenarios("3.1", "3.2", "3.3"),
        ("4.1", lambda: check_sequential(ctx)),
        ("4.2", lambda: check_concurrent(ctx)),
        ("4.3", lambda: check_session_reuse(ctx)),
        ("5.1", lambda: check_response_format(ctx)),
        ("E.1", lambda: check_unknown_runtime(ctx)),
        ("E.2", lambda: check_content_type(ctx)),
        ("E.3", lambda: check_compile_error(ctx)),
        *scenarios("L.1", "L.2", "L.3"),
    ]
    for runtime in ctx.runtimes:
        check_id = f"H.{runtime.get('language')}@{runtime.get('version')}"
        plan.append((check_id, lambda rt=runtime, cid=check_id: check_hello_world(ctx, cid, rt)))
    for language in BACKEND_COMPILED:
        if ctx.runtime_for(language) is None:
            check_id = f"H.{language}"
            plan.append((check_id, lambda lang=language, cid=check_id: skip_not_offered(ctx, cid, lang)))
    return [(cid, thunk) for cid, thunk in plan if ctx.selected(cid)]


def run_phase1(ctx: Context) -> None:
    plan = phase1_checks(ctx)
    ctx.progress.add_total(len(plan))
    for _, thunk in plan:
        thunk()


def check_health(ctx: Context, check_id: str = "0.1", name: str = "health", phase: int = 1) -> Check:
    def body(check: Check) -> None:
        reply = ctx.client.health()
        check.latency_ms = reply.latency_ms
        check.data["body"] = reply.body
        ok = reply.status == 200 and isinstance(reply.body, dict) and reply.body.get("status") == "ok"
        check.result = PASS if ok else FAIL
        check.detail = json.dumps(reply.body)[:200] if reply.body is not None else f"HTTP {reply.status}"

    return guarded(ctx, Check(check_id, name, phase, 'GET /health -> 200 {"status":"ok"}'), body)


def runtime_problems(runtimes: Any) -> list[str]:
    if not isinstance(runtimes, list) or not runtimes:
        return ["not a non-empty JSON array"]
    problems = []
    for index, rt in enumerate(runtimes):
        if not isinstance(rt, dict):
            problems.append(f"[{index}] is not an object")
            continue
        if not isinstance(rt.get("language"), str) or not isinstance(rt.get("version"), str):
            problems.append(f"[{index}] needs string language and version")
        if not isinstance(rt.get("aliases"), list):
            problems.append(f"[{index}] aliases is not an array")
        if "runtime" in rt and not isinstance(rt["runtime"], str):
            problems.append(f"[{index}] runtime is not a string")
    return problems


def check_runtimes(ctx: Context) -> Check:
    def body(check: Check) -> None:
        reply = ctx.client.runtimes()
        check.latency_ms = reply.latency_ms
        problems = [f"HTTP {reply.status}"] if reply.status != 200 else runtime_problems(reply.body)
        if not problems and ctx.runtime_for("python") is None:
            problems.append("python is not listed")
        check.conclude(problems, ", ".join(f"{rt.get('language')} {rt.get('version')}" for rt in ctx.runtimes))

    return guarded(ctx, Check("0.2", "runtimes", 1, "GET /api/v2/runtimes: Piston shape, python listed"), body)


def run_scenario(ctx: Context, scenario: Scenario) -> Check:
    def body(check: Check) -> None:
        payload = make_payload(scenario.language, scenario.code, stdin=scenario.stdin, limits=scenario.limits)
        reply = ctx.client.execute(payload)
        problems = scenario.verify(reply)
        check.latency_ms = reply.latency_ms
        check.conclude(problems, describe(reply))
        check.data["run"] = {k: v[:2000] if isinstance(v, str) else v for k, v in reply.stage().items()}

    phase_check = Check(scenario.id, scenario.name, 1, scenario.expectation)
    return guarded(ctx, phase_check, body)


def check_hello_n(ctx: Context) -> Check:
    """2.3: the hello_n problem's reference solution from test_cases/, input 5 -> five lines of Hello."""
    source = ctx.args.test_cases / "hello_n" / "solution.py"
    code = source.read_text() if source.is_file() else HELLO_N_CODE

    def verify(reply: Reply) -> list[str]:
        problems = succeeds_with("Hello")(reply)
        if not problems and (reply.stage().get("stdout") or "").splitlines() != ["Hello"] * 5:
            problems.append("stdout is not exactly 5 lines of Hello")
        return problems

    scenario = Scenario("2.3", "test case format (hello_n)", 'stdin "5" -> 5 lines of "Hello", code 0', code, verify,
                        stdin="5")
    return run_scenario(ctx, scenario)


def echo_payload(token: str) -> dict[str, Any]:
    return make_payload("python", "import sys\ntoken = sys.stdin.readline().strip()\nprint('echo', token)\n",
                        stdin=token + "\n")


def echo_problems(reply: Reply, token: str) -> list[str]:
    problems = response_problems(reply)
    if not problems and reply.stage().get("stdout") != f"echo {token}\n":
        problems.append(f"request {token} got {reply.stage().get('stdout')!r}")
    return problems


def check_sequential(ctx: Context) -> Check:
    def body(check: Check) -> None:
        latencies, problems = [], []
        for i in range(5):
            token = f"seq-{i}"
            reply = ctx.client.execute(echo_payload(token))
            latencies.append(reply.latency_ms)
            problems += echo_problems(reply, token)
        stats = latency_stats(latencies)
        problems += ctx.too_slow(stats["max_ms"], COLD_START_LIMIT_MS, "slowest")
        check.data["latency"] = stats
        check.latency_ms = stats["mean_ms"]
        check.conclude(problems, f"min {stats['min_ms']} / max {stats['max_ms']} ms")

    expectation = f"all 5 succeed with their own output, each < {COLD_START_LIMIT_MS / 1000:.0f} s"
    return guarded(ctx, Check("4.1", "sequential requests (5)", 1, expectation), body)


def check_concurrent(ctx: Context) -> Check:
    def body(check: Check) -> None:
        tokens = [f"par-{i}-{os.urandom(3).hex()}" for i in range(10)]
        started = time.perf_counter()
        replies = parallel_map(lambda t: ctx.client.execute(echo_payload(t)), tokens, 10)
        wall = (time.perf_counter() - started) * 1000
        problems = [p for reply, token in zip(replies, tokens) for p in echo_problems(reply, token)]
        stats = latency_stats([r.latency_ms for r in replies])
        check.data.update(latency=stats, wall_ms=round(wall, 1))
        check.latency_ms = stats["max_ms"]
        check.conclude(problems, f"all done in {wall:.0f} ms")

    return guarded(ctx, Check("4.2", "concurrent requests (10)", 1, "all 10 succeed, no crossed outputs"), body)


def check_session_reuse(ctx: Context) -> Check:
    """4.3: back-to-back identical requests; the plan expects the second to be faster within the cooldown."""

    def body(check: Check) -> None:
        payload = make_payload("python", 'print("reuse")')
        replies = [ctx.client.execute(payload) for _ in range(3)]
        problems = [p for r in replies for p in succeeds_with("reuse")(r)]
        first, rest = replies[0].latency_ms, [r.latency_ms for r in replies[1:]]
        faster = rest[0] < first
        check.latency_ms = first
        check.data.update(first_ms=round(first, 1), subsequent_ms=[round(x, 1) for x in rest], second_faster=faster)
        ctx.figures["session_reuse"] = check.data
        note = " (informational: the local executor has no sessions)" if ctx.is_local else ""
        check.conclude(problems, f"first {first:.0f} ms, then {', '.join(f'{x:.0f}' for x in rest)} ms: "
                                 f"second {'faster' if faster else 'not faster'}{note}")

    return guarded(ctx, Check("4.3", "session reuse", 1, "subsequent requests succeed; 2nd faster within cooldown"),
                   body)


def check_response_format(ctx: Context) -> Check:
    def body(check: Check) -> None:
        reply = ctx.client.execute(make_payload("py", 'import sys\nprint("out")\nprint("err", file=sys.stderr)\n'))
        problems = response_problems(reply)
        if not problems:
            run = reply.stage()
            if reply.body.get("language") != "python":
                problems.append(f"language {reply.body.get('language')!r}: expected the canonical 'python' for 'py'")
            if run.get("stdout") != "out\n" or run.get("stderr") != "err\n":
                problems.append(f"stdout/stderr {run.get('stdout')!r}/{run.get('stderr')!r}")
            if run.get("output") not in ("out\nerr\n", "err\nout\n"):
                problems.append(f"output {run.get('output')!r} is not stdout+stderr")
        check.latency_ms = reply.latency_ms
        body_keys = sorted(reply.body) if isinstance(reply.body, dict) else []
        check.conclude(problems, f"keys {body_keys}")

    expectation = "language (canonical), version, run{stdout..wall_time}; py alias accepted"
    return guarded(ctx, Check("5.1", "response format", 1, expectation), body)


def check_unknown_runtime(ctx: Context) -> Check:
    def body(check: Check) -> None:
        reply = ctx.client.execute(make_payload("no-such-language", "x", version="1.0.0"))
        ok = reply.status == 400 and isinstance(reply.body, dict) and isinstance(reply.body.get("message"), str)
        check.latency_ms = reply.latency_ms
        check.result = PASS if ok else FAIL
        check.detail = f"HTTP {reply.status} {reply.text[:120]}"

    return guarded(ctx, Check("E.1", "unknown runtime", 1, 'HTTP 400 {"message": ...}'), body)


def check_content_type(ctx: Context) -> Check:
    def body(check: Check) -> None:
        payload = json.dumps(make_payload("python", "print(1)"))
        reply = ctx.client.request("POST", "/api/v2/execute", data=payload, headers={"Content-Type": "text/plain"})
        ok = reply.status == 415 and isinstance(reply.body, dict) and isinstance(reply.body.get("message"), str)
        check.latency_ms = reply.latency_ms
        check.result = PASS if ok else FAIL
        check.detail = f"HTTP {reply.status} {reply.text[:120]}"

    return guarded(ctx, Check("E.2", "non-JSON request", 1, 'HTTP 415 {"message": ...}'), body)


def check_compile_error(ctx: Context) -> Check:
    language = next((lang for lang in COMPILE_ERRORS if ctx.runtime_for(lang)), None)
    check = Check("E.3", f"compile error ({language or 'none listed'})", 1, "compile.code != 0 and run equals compile")
    if language is None:
        check.result, check.detail = SKIP, not_offered(ctx, "a compiled language")
        return ctx.record(check)

    def body(check: Check) -> None:
        reply = ctx.client.execute(make_payload(language, COMPILE_ERRORS[language]))
        problems = response_problems(reply)
        compile_stage = reply.stage("compile")
        if not problems:
            if not compile_stage:
                problems.append("no compile stage")
            elif compile_stage.get("code") in (0, None):
                problems.append(f"compile.code {compile_stage.get('code')}")
            elif reply.stage("run") != compile_stage:
                problems.append("run differs from compile")
        check.latency_ms = reply.latency_ms
        check.conclude(problems, describe(reply, "compile"))

    return guarded(ctx, check, body)


def offered_languages(ctx: Context) -> list[str]:
    return sorted({str(rt.get("language")) for rt in ctx.runtimes})


def not_offered(ctx: Context, language: str) -> str:
    """Why a check for ``language`` is skipped: the backend does not offer it, and what that usually means."""
    offered = ", ".join(offered_languages(ctx)) or "nothing"
    reason = f"{language} is not offered: /api/v2/runtimes lists {offered}"
    compiled = language == "a compiled language" or HELLO_WORLDS.get(language, (False, ""))[0]
    if compiled and not ctx.is_local:
        reason += ("; a PythonLTS session pool has Python only (compilers need a custom-container pool "
                   "whose image has them)")
    return reason


def check_languages(ctx: Context) -> Check:
    """0.3: which languages this backend offers, and which of the backend's compiled ones it lacks."""
    offered = offered_languages(ctx)
    missing = [lang for lang in BACKEND_COMPILED if ctx.runtime_for(lang) is None]
    detail = f"offered: {', '.join(offered) or 'nothing'}"
    if missing:
        detail += f"; no {', '.join(missing)}: their checks are skipped"
    check = Check("0.3", "languages offered", 1, "report /api/v2/runtimes' languages", INFO, detail=detail,
                  data={"offered": offered, "compiled_missing": missing, "executor": ctx.executor})
    return ctx.record(check)


def skip_not_offered(ctx: Context, check_id: str, language: str) -> Check:
    check = Check(check_id, f"hello world {language}", 1, "compile.code 0 and stdout Hello, World!", SKIP,
                  detail=not_offered(ctx, language))
    return ctx.record(check)


def check_hello_world(ctx: Context, check_id: str, runtime: dict[str, Any]) -> Check:
    language, version = str(runtime.get("language")), str(runtime.get("version"))
    known = HELLO_WORLDS.get(language)
    check = Check(check_id, f"hello world {language} {version}", 1,
                  "compile.code 0 and stdout Hello, World!" if known and known[0] else "stdout Hello, World!")
    if known is None:
        check.result, check.detail = SKIP, f"no hello world known for {language}"
        return ctx.record(check)
    compiled, code = known

    def body(check: Check) -> None:
        reply = ctx.client.execute(make_payload(language, code, version=version))
        problems = succeeds_with("Hello, World!")(reply)
        if compiled and not problems:
            compile_stage = reply.stage("compile")
            if not compile_stage:
                problems.append("no compile stage")
            elif compile_stage.get("code") != 0:
                problems.append(f"compile.code {compile_stage.get('code')}")
        check.latency_ms = reply.latency_ms
        check.conclude(problems, describe(reply))

    return guarded(ctx, check, body)


# ---------------------------------------------------------------- phase 2: test cases (5.2)

def judge_payload(problem: Problem, solution: Solution) -> dict[str, Any]:
    """One /api/v2/judge request: the solution on all the problem's tests, stopping at the first failure."""
    cases = []
    for test in problem.tests:
        stdin, expected = test.read()
        cases.append({"id": test.name, "stdin": stdin, "expected_output": expected})
    payload = make_payload(solution.language, (problem.path / solution.file).read_text(), version=solution.version,
                           file_name=Path(solution.file).name, limits=problem.limits)
    del payload["stdin"]
    payload.update(testcases=cases, stop_on_first_failure=True)
    return payload


def judge_answer_problems(reply: Reply, case_count: int) -> list[str]:
    """Problems with the shape of a /judge answer (README, "POST /api/v2/judge")."""
    if reply.status != 200:
        return [f"HTTP {reply.status}: {reply.text[:200]}"]
    body = reply.body
    if not isinstance(body, dict):
        return ["body is not a JSON object"]
    problems = [f"missing '{key}'" for key in ("verdict", "passed", "total", "testcases") if key not in body]
    cases = body.get("testcases")
    if not isinstance(cases, list) or len(cases) != case_count:
        problems.append(f"testcases is not a list of {case_count} cases")
    elif not all(isinstance(c, dict) and isinstance(c.get("verdict"), str) for c in cases):
        problems.append("a testcase has no verdict")
    return problems


def judge_solution(ctx: Context, problem: Problem, solution: Solution) -> Check:
    """The backend's verdict for the solution (one /judge request) against the corpus's expected verdict.

    The verdict rules are the backend's (backend/judge.py); this only compares and reports.
    """
    check = Check(f"5.2/{problem.name}/{solution.file}", f"{problem.name}: {solution.file} ({solution.language})",
                  2, f"verdict {solution.expected_verdict}")
    if ctx.runtime_for(solution.language) is None:
        check.result, check.detail = SKIP, not_offered(ctx, solution.language)
        return ctx.record(check)

    def body(check: Check) -> None:
        reply = ctx.client.judge(judge_payload(problem, solution))
        check.latency_ms = reply.latency_ms
        problems = judge_answer_problems(reply, len(problem.tests))
        if problems:
            check.conclude(problems)
            return
        verdict = reply.body["verdict"]
        cases = [c for c in reply.body["testcases"] if c["verdict"] != "SKIPPED"]
        check.data.update(verdict=verdict, tests=[{k: c.get(k) for k in ("id", "verdict", "cpu_time", "memory")}
                                                  for c in cases])
        failing = next((c for c in cases if c["verdict"] != "AC"), None)
        where = f" on test {failing['id']}" if failing else ""
        ran = f"{len(cases)}/{len(problem.tests)} tests"
        if verdict == solution.expected_verdict:
            check.result, check.detail = PASS, f"{verdict}{where} ({ran})"
        else:
            stage = failing or (cases[-1] if cases else {})
            compile_stage = reply.body.get("compile") if verdict == "CE" else None
            check.result = FAIL
            check.detail = (f"expected {solution.expected_verdict}, got {verdict}{where} ({ran}) | "
                            f"{describe_stage(compile_stage or stage)}")

    return guarded(ctx, check, body)


def run_phase2(ctx: Context) -> None:
    try:
        problems = load_corpus(ctx.args.test_cases)
    except (OSError, CorpusError) as exc:
        ctx.progress.add_total(1)
        ctx.record(Check("5.2", "test case validation", 2, "test_cases/ loads", FAIL, detail=str(exc)))
        return
    jobs = [(p, s) for p in problems for s in p.solutions if ctx.selected(f"5.2/{p.name}/{s.file}")]
    if not jobs:
        return
    ctx.progress.add_total(len(jobs) + 1)
    started = time.perf_counter()
    results = parallel_map(lambda job: judge_solution(ctx, *job), jobs, ctx.args.workers)
    ctx.put_in_order(results)
    judged = [c for c in results if c.result != SKIP]
    failed = [c for c in judged if c.result == FAIL]
    used = {p.name: p for p, _ in jobs}
    pairs = sum(len(p.tests) for p in used.values())
    summary = Check("5.2", "test case validation", 2, "100% of outputs and verdicts match",
                    FAIL if failed or not judged else PASS,
                    latency_ms=(time.perf_counter() - started) * 1000)
    summary.detail = (f"{len(judged) - len(failed)}/{len(judged)} solutions match "
                      f"({len(results) - len(judged)} skipped) over {len(used)} problems, {pairs} test pairs")
    if failed:
        summary.detail += "; mismatched: " + ", ".join(c.id.removeprefix("5.2/") for c in failed[:5])
    summary.data = {"problems": len(used), "pairs": pairs, "solutions": len(results), "judged": len(judged),
                    "failed": len(failed)}
    ctx.record(summary)


# ---------------------------------------------------------------- phase 3: performance

FRESH_LANGUAGES = ("javascript", "bash", "perl", "ruby", "php", "lua", "c", "c++", "go", "java")


def run_phase3(ctx: Context) -> None:
    steps: list[tuple[str, Callable[[], Check]]] = [
        ("P.1", lambda: check_cold_start(ctx)),
        ("P.2", lambda: check_first_per_language(ctx)),
        ("P.3", lambda: check_warm_latency(ctx)),
        ("P.4", lambda: check_throughput(ctx, "P.4", 10)),
        ("P.5", lambda: check_throughput(ctx, "P.5", 50)),
        ("P.6", lambda: check_health(ctx, "P.6", "healthy after load", 3)),
    ]
    steps = [(cid, thunk) for cid, thunk in steps if ctx.selected(cid)]
    ctx.progress.add_total(len(steps))
    for _, thunk in steps:
        thunk()


def check_cold_start(ctx: Context) -> Check:
    """The first /execute this run sent (after the backend started, when it started it)."""

    def body(check: Check) -> None:
        if ctx.client.first_execute is None:
            ctx.client.execute(make_payload("python", 'print("cold")'))
        first = ctx.client.first_execute
        assert first is not None
        check.latency_ms = first.latency_ms
        figures: dict[str, Any] = {"first_request_ms": round(first.latency_ms, 1)}
        if ctx.started_backend is not None and ctx.started_backend.startup_seconds is not None:
            figures["backend_startup_s"] = round(ctx.started_backend.startup_seconds, 2)
        ctx.figures["cold_start"] = figures
        check.data = figures
        problems = response_problems(first)
        problems += ctx.too_slow(first.latency_ms, COLD_START_LIMIT_MS, "first request")
        startup = ""
        if "backend_startup_s" in figures:
            startup = f"; backend start to /health {figures['backend_startup_s']} s"
        check.conclude(problems, f"first request {first.latency_ms:.0f} ms{startup}")

    return guarded(ctx, Check("P.1", "cold start", 3, f"first request < {COLD_START_LIMIT_MS / 1000:.0f} s"), body)


def check_first_per_language(ctx: Context) -> Check:
    """First request on a new session (pool) / of each language (local: informational)."""

    def body(check: Check) -> None:
        fresh = next((lang for lang in FRESH_LANGUAGES
                      if ctx.runtime_for(lang) and lang not in ctx.client.first_by_language), None)
        if fresh is not None:
            ctx.client.execute(make_payload(fresh, HELLO_WORLDS[fresh][1]))
        firsts: dict[str, float] = {}
        for sent, reply in ctx.client.first_by_language.items():  # in the order they were sent
            runtime = ctx.runtime_for(sent)
            if runtime is not None:
                firsts.setdefault(str(runtime.get("language")), round(reply.latency_ms, 1))
        ctx.figures["first_request_per_language_ms"] = firsts
        check.data = {"first_request_ms": firsts}
        slowest = max(firsts.items(), key=lambda kv: kv[1]) if firsts else None
        check.latency_ms = slowest[1] if slowest else None
        listing = ", ".join(f"{lang} {ms:.0f}" for lang, ms in firsts.items())
        if ctx.is_local:
            check.result = INFO
            check.detail = f"new session: n/a (local); first request per language (ms): {listing}"
        else:
            over = [lang for lang, ms in firsts.items() if ctx.too_slow(ms, COLD_START_LIMIT_MS, lang)]
            check.result = FAIL if over or not firsts else PASS
            check.detail = (f"over {COLD_START_LIMIT_MS / 1000:.0f} s: {', '.join(over)}; " if over else "") + (
                f"first request per language (ms): {listing}")

    expectation = f"first request per language/new session < {COLD_START_LIMIT_MS / 1000:.0f} s"
    return guarded(ctx, Check("P.2", "new session / new language", 3, expectation), body)


def check_warm_latency(ctx: Context) -> Check:
    count = ctx.args.requests

    def body(check: Check) -> None:
        payload = make_payload("python", 'print("warm")')
        ctx.client.execute(payload)  # warm-up, not counted
        latencies, failures = [], 0
        for _ in range(count):
            reply = ctx.client.execute(payload)
            latencies.append(reply.latency_ms)
            failures += bool(succeeds_with("warm")(reply))
        stats = latency_stats(latencies)
        ctx.figures["warm_latency"] = stats
        check.data = stats
        check.latency_ms = stats["p50_ms"]
        problems = [f"{failures}/{count} failed"] if failures else []
        problems += ctx.too_slow(stats["p50_ms"], WARM_P50_LIMIT_MS, "p50")
        check.conclude(problems, f"n={count} p50 {stats['p50_ms']} / p95 {stats['p95_ms']} / p99 {stats['p99_ms']} ms")

    return guarded(ctx, Check("P.3", f"warm latency ({count} requests)", 3,
                              f"all succeed, p50 < {WARM_P50_LIMIT_MS / 1000:.0f} s"), body)


def check_throughput(ctx: Context, check_id: str, concurrency: int) -> Check:
    total = concurrency * (5 if ctx.args.full else 2)

    def body(check: Check) -> None:
        def one(i: int) -> tuple[float | None, list[str]]:
            token = f"tp{concurrency}-{i}"
            try:
                reply = ctx.client.execute(echo_payload(token))
            except RequestError as exc:
                return None, [f"{token}: {type(exc).__name__}"]
            return reply.latency_ms, echo_problems(reply, token)

        started = time.perf_counter()
        results = parallel_map(one, range(total), concurrency)
        elapsed = time.perf_counter() - started
        problems = [p for _, r in results for p in r]
        failed = sum(bool(r) for _, r in results)
        latencies = [ms for ms, _ in results if ms is not None]
        rps = total / elapsed
        figures = {"requests": total, "concurrency": concurrency, "seconds": round(elapsed, 2),
                   "requests_per_s": round(rps, 2), "failed": failed}
        if latencies:
            figures["latency"] = latency_stats(latencies)
            check.latency_ms = figures["latency"]["mean_ms"]
        ctx.figures.setdefault("throughput", {})[str(concurrency)] = figures
        check.data = figures
        if problems:
            problems.insert(0, f"{failed}/{total} failed")
        check.conclude(problems, f"{rps:.1f} req/s ({total} requests in {elapsed:.1f} s)")

    return guarded(ctx, Check(check_id, f"throughput at {concurrency} concurrent", 3,
                              f"{total} requests, all succeed; report req/s"), body)


PHASES: dict[int, tuple[str, Callable[[Context], None]]] = {
    1: ("functional", run_phase1),
    2: ("testcases", run_phase2),
    3: ("performance", run_phase3),
}


# ---------------------------------------------------------------- report

def short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def summary_table(checks: Iterable[Check], detail_width: int = 90) -> str:
    rows = [("ID", "Name", "Expectation", "Result", "ms", "Detail")]
    for c in checks:
        latency = "" if c.latency_ms is None else f"{c.latency_ms:.0f}"
        rows.append((c.id, short(c.name, 38), short(c.expectation, 46), c.result, latency,
                     short(c.detail, detail_width)))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for index, row in enumerate(rows):
        cells = [row[i].ljust(widths[i]) if i != 4 else row[i].rjust(widths[i]) for i in range(5)]
        lines.append("  ".join([*cells, row[5]]).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 6)
    return "\n".join(lines)


def figures_text(figures: dict[str, Any]) -> list[str]:
    lines = []
    cold = figures.get("cold_start")
    if cold:
        startup = f", backend startup {cold['backend_startup_s']} s" if "backend_startup_s" in cold else ""
        lines.append(f"Cold start: first request {cold['first_request_ms']:.0f} ms{startup}")
    firsts = figures.get("first_request_per_language_ms")
    if firsts:
        lines.append("First request per language: " + ", ".join(f"{k} {v:.0f} ms" for k, v in firsts.items()))
    warm = figures.get("warm_latency")
    if warm:
        lines.append(f"Warm latency (n={warm['n']}): p50 {warm['p50_ms']} ms, p95 {warm['p95_ms']} ms, "
                     f"p99 {warm['p99_ms']} ms, mean {warm['mean_ms']} ms")
    for level, tp in sorted(figures.get("throughput", {}).items(), key=lambda kv: int(kv[0])):
        lines.append(f"Throughput at {level} concurrent: {tp['requests_per_s']} req/s "
                     f"({tp['requests']} requests, {tp['failed']} failed)")
    reuse = figures.get("session_reuse")
    if reuse:
        lines.append(f"Session reuse: first {reuse['first_ms']} ms, then {reuse['subsequent_ms']} ms")
    return lines


def build_report(ctx: Context, started_at: dt.datetime, duration: float, interrupted: bool) -> dict[str, Any]:
    counts = {r: sum(c.result == r for c in ctx.checks) for r in (PASS, FAIL, SKIP, INFO)}
    backend = ctx.started_backend
    env = {k: ("***" if any(s in k.upper() for s in ("KEY", "SECRET", "TOKEN", "PASSWORD")) else v)
           for k, v in ctx.args.env}
    return {
        "tool": "test_session_pool.py",
        "timestamp": started_at.isoformat(timespec="seconds"),
        "duration_s": round(duration, 2),
        "endpoint": ctx.client.base_url,
        "started_backend": None if backend is None else {
            "pid": backend.pid, "port": backend.port, "startup_s": backend.startup_seconds,
            "command": " ".join(backend.command),
        },
        "backend_env": env,
        "executor": ctx.executor,
        "health": ctx.health,
        "runtimes": ctx.runtimes,
        "options": {"full": ctx.args.full, "phases": ctx.args.phases, "requests": ctx.args.requests,
                    "workers": ctx.args.workers, "only": ctx.args.only, "test_cases": str(ctx.args.test_cases)},
        "criteria": {"cold_start_ms": COLD_START_LIMIT_MS, "warm_p50_ms": WARM_P50_LIMIT_MS,
                     "applied": not ctx.args.no_speed_criteria},
        "figures": ctx.figures,
        "summary": {**{k.lower(): v for k, v in counts.items()}, "total": len(ctx.checks)},
        "interrupted": interrupted,
        "ok": not interrupted and counts[FAIL] == 0 and counts[PASS] > 0,
        "checks": [asdict(c) for c in ctx.checks],
    }


def print_summary(ctx: Context, report: dict[str, Any], out: Any = sys.stdout) -> None:
    print(f"\nPiston backend check: {report['endpoint']} (executor: {report['executor']})", file=out)
    if ctx.runtimes:
        offered = ", ".join(f"{rt.get('language')} {rt.get('version')}" for rt in ctx.runtimes)
        missing = [lang for lang in BACKEND_COMPILED if ctx.runtime_for(lang) is None]
        print(f"Languages offered: {offered}" + (f" (not offered: {', '.join(missing)})" if missing else ""),
              file=out)
    order = {phase: i for i, phase in enumerate(ctx.args.phases)}
    checks = sorted(ctx.checks, key=lambda c: order.get(c.phase, 99))  # stable: keeps run order within a phase
    print(summary_table(checks), file=out)
    lines = figures_text(ctx.figures)
    if lines:
        print("", *lines, sep="\n", file=out)
    s = report["summary"]
    verdict = "PASS" if report["ok"] else "FAIL"
    extra = " (interrupted)" if report["interrupted"] else ""
    print(f"\nRESULT: {verdict}{extra}: {s['pass']} passed, {s['fail']} failed, {s['skip']} skipped, "
          f"{s['info']} informational, {report['duration_s']:.1f} s", file=out)


# ---------------------------------------------------------------- main

def parse_env(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {item!r}")
    if key == "PORT":
        raise argparse.ArgumentTypeError("PORT is chosen by the script")
    return key, value


def parse_phases(text: str) -> list[int]:
    names = {name: number for number, (name, _) in PHASES.items()}
    phases = []
    for item in text.split(","):
        item = item.strip().lower()
        number = names.get(item) or (int(item) if item.isdigit() else None)
        if number not in PHASES:
            raise argparse.ArgumentTypeError(f"unknown phase {item!r}: use 1-3 or {', '.join(names)}")
        phases.append(number)
    return sorted(set(phases))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Check a Piston v2 backend (local sandbox or Azure session pool): functional scenarios, "
                    "the test_cases/ corpus, and performance.",
        epilog="Exit status: 0 every check passed, 1 a check failed, 2 usage error, 130 interrupted.",
    )
    parser.add_argument("--endpoint", metavar="URL",
                        help="check this running backend; without it the script starts one locally "
                             "(.venv's gunicorn, USE_LOCAL_EXECUTOR=true, a free port) and stops it at the end")
    parser.add_argument("--api-key", metavar="KEY", default=os.environ.get("PISTON_API_KEY"),
                        help="sent as Authorization and X-API-Key (default: $PISTON_API_KEY)")
    parser.add_argument("--full", action="store_true", help="every phase at full size (more requests)")
    parser.add_argument("--phase", dest="phases", type=parse_phases, default=None, metavar="LIST",
                        help="phases to run, e.g. 1,3 or functional,testcases,performance (default: all; "
                             "phase 3 is light unless --full)")
    parser.add_argument("--only", action="append", default=[], metavar="ID",
                        help="run only checks whose id matches (exact, prefix before '/', or glob), e.g. 1.1, "
                             "'3.*', 5.2/hello_n; repeatable or comma-separated")
    parser.add_argument("--requests", type=int, default=None, metavar="N",
                        help="warm-latency sample size (default 50, with --full 200)")
    parser.add_argument("--workers", type=int, default=4, help="parallel requests in phase 2 (default 4)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request (default 60)")
    parser.add_argument("--retries", type=int, default=3, help="retries on connection errors (default 3)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the whole report as JSON")
    parser.add_argument("--test-cases", type=Path, default=DEFAULT_TEST_CASES, metavar="DIR",
                        help=f"test-case corpus (default {DEFAULT_TEST_CASES.relative_to(REPO_ROOT)}/)")
    parser.add_argument("--env", action="append", type=parse_env, default=[], metavar="KEY=VALUE",
                        help="extra environment for the backend the script starts, e.g. USE_LOCAL_EXECUTOR=false "
                             "POOL_MANAGEMENT_ENDPOINT=...; repeatable")
    parser.add_argument("--startup-timeout", type=float, default=90.0,
                        help="seconds to wait for the started backend's /health (default 90)")
    parser.add_argument("--backend-log", type=Path, metavar="FILE",
                        help="keep the started backend's output here (default: a temp file, kept only on failure)")
    parser.add_argument("--no-speed-criteria", action="store_true",
                        help="report latencies but do not fail on the plan's speed criteria (cold start < 5 s, "
                             "warm p50 < 1 s), e.g. on a loaded CI machine")
    parser.add_argument("--no-progress", action="store_true", help="no progress output on stderr")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.endpoint and args.env:
        parser.error("--env only applies to the backend the script starts (not with --endpoint)")
    args.only = [p.strip() for item in args.only for p in item.split(",") if p.strip()]
    args.phases = args.phases or sorted(PHASES)
    if args.requests is None:
        args.requests = 200 if args.full else 50
    if args.requests < 1 or args.workers < 1:
        parser.error("--requests and --workers must be at least 1")
    return args


def discover(ctx: Context) -> bool:
    """Read /health and /api/v2/runtimes once, before any check (they are re-checked as 0.1 and 0.2).

    False (with a FAIL row) when the backend cannot be reached at all.
    """
    try:
        health = ctx.client.health()
        ctx.health = health.body
        if isinstance(health.body, dict) and isinstance(health.body.get("executor"), str):
            ctx.executor = health.body["executor"]
        elif ctx.started_backend is not None:
            use_local = ctx.started_backend.env.get("USE_LOCAL_EXECUTOR", "true").lower() in ("1", "true", "yes", "on")
            ctx.executor = "local" if use_local else "pool"
        runtimes = ctx.client.runtimes()
        if runtimes.status == 200 and isinstance(runtimes.body, list):
            ctx.runtimes = [rt for rt in runtimes.body if isinstance(rt, dict)]
    except RequestError as exc:
        ctx.record(Check("0.1", "health", 1, "backend reachable", FAIL,
                         detail=f"cannot reach {ctx.client.base_url}: {type(exc).__name__}: {exc}"))
        return False
    return True


def run(args: argparse.Namespace, ctx: Context) -> None:
    if not discover(ctx):
        return
    for number in args.phases:
        PHASES[number][1](ctx)


def install_signal_handlers() -> None:
    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, on_term)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    install_signal_handlers()
    started_at = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    progress = Progress(enabled=not args.no_progress)
    backend: LocalBackend | None = None
    interrupted = False
    ctx: Context | None = None
    start_failure: Check | None = None
    try:
        url = args.endpoint
        if not url:
            backend = LocalBackend(dict(args.env), args.startup_timeout, args.backend_log)
            progress.note(f"starting the backend: {' '.join(backend.command)} "
                          f"(port {backend.port}, log {backend.log_path})")
            backend.start()
            url = backend.url
        ctx = Context(args, PistonClient(url, args.api_key, args.timeout, args.retries), progress,
                      started_backend=backend)
        run(args, ctx)
    except BackendError as exc:
        start_failure = Check("0.0", "backend start", 0, "gunicorn answers /health", FAIL,
                              detail=str(exc).splitlines()[0])
        print(str(exc), file=sys.stderr)
    except KeyboardInterrupt:
        interrupted = True
        progress.note("interrupted: stopping")
    finally:
        STOPPING.set()
        # A second Ctrl-C must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if backend is not None:
            backend.stop()
        progress.close()
    if ctx is None:  # the backend did not start, or the run was interrupted while it started
        url = backend.url if backend else args.endpoint
        ctx = Context(args, PistonClient(url, args.api_key), progress, started_backend=backend)
        if start_failure is not None:
            ctx.checks.append(start_failure)
    report = build_report(ctx, started_at, time.perf_counter() - t0, interrupted)
    print_summary(ctx, report)
    if backend is not None:
        if report["ok"]:
            backend.remove_log()
        else:
            print(f"backend log: {backend.log_path}", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    ctx.client.close()
    if interrupted:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)  # do not wait for requests still in flight on worker threads
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
