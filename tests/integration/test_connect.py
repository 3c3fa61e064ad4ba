"""/api/v2/connect, Piston's interactive WebSocket protocol, against the real gunicorn.

Two clients drive programs that read a line, answer, and read again: a Python client
(simple-websocket's) that checks every message and close code, and Piston's own CLI
(vendored in tests/piston_cli) in interactive mode.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import simple_websocket

from backend.connect import CLOSE_CODES
from backend.testing import ServerProcess
from tests.conftest import SECRET

REPO = Path(__file__).resolve().parents[2]
DIALOGUE_PY = (
    "while True:\n"
    "    line = input()\n"
    "    print('echo:' + line, flush=True)\n"
    "    if line == 'bye':\n"
    "        break\n"
)
DIALOGUE_C = (
    "#include <stdio.h>\n#include <string.h>\n"
    "int main(void){char s[128];int n=0;\n"
    " while(fgets(s,sizeof s,stdin)){n++;printf(\"%d:%s\",n,s);fflush(stdout);\n"
    "  if(!strcmp(s,\"bye\\n\"))return 7;}\n return 1;}\n"
)
WAIT_FOREVER_PY = "import time\nwhile True:\n    time.sleep(0.05)\n"


class PistonSocket:
    """A Piston /connect client: JSON messages in and out, and the close code at the end."""

    def __init__(self, url: str) -> None:
        self.ws = simple_websocket.Client.connect(url.replace("http://", "ws://") + "/api/v2/connect")

    def send(self, **message: Any) -> None:
        self.ws.send(json.dumps(message))

    def init(self, language: str, code: str, **fields: Any) -> None:
        self.send(type="init", language=language, version="*", files=[{"content": code}], **fields)

    def stdin(self, text: str) -> None:
        self.send(type="data", stream="stdin", data=text)

    def next(self, timeout: float = 30) -> dict[str, Any]:
        raw = self.ws.receive(timeout=timeout)
        assert raw is not None, "no message in time"
        return json.loads(raw)

    def until(self, kind: str) -> list[dict[str, Any]]:
        """Messages up to and including the first of type ``kind``."""
        seen: list[dict[str, Any]] = []
        while not seen or seen[-1]["type"] != kind:
            seen.append(self.next())
        return seen

    def closed(self, timeout: float = 30) -> tuple[list[dict[str, Any]], int, str]:
        """Remaining messages, then the close code and reason."""
        rest: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                raw = self.ws.receive(timeout=1)
                if raw is not None:
                    rest.append(json.loads(raw))
        except simple_websocket.ConnectionClosed:
            return rest, self.ws.close_reason, self.ws.close_message
        raise AssertionError(f"the server did not close the connection; got {rest}")


@pytest.fixture()
def sock(local_server: ServerProcess) -> Iterator[PistonSocket]:
    client = PistonSocket(local_server.url)
    yield client
    try:
        client.ws.close()
    except simple_websocket.ConnectionClosed:
        pass


def test_python_dialogue_line_by_line(sock: PistonSocket) -> None:
    sock.init("python", DIALOGUE_PY)
    runtime = sock.next()
    assert runtime["type"] == "runtime" and runtime["language"] == "python" and runtime["version"].count(".") == 2
    assert sock.next() == {"type": "stage", "stage": "run"}
    for word in ("hello", "world"):
        sock.stdin(word + "\n")
        # The answer arrives while the program still runs: it waits for the next line.
        assert sock.next() == {"type": "data", "stream": "stdout", "data": f"echo:{word}\n"}
    sock.stdin("bye\n")
    assert sock.until("exit")[-2:] == [
        {"type": "data", "stream": "stdout", "data": "echo:bye\n"},
        {"type": "exit", "stage": "run", "code": 0, "signal": None},
    ]
    assert sock.closed() == ([], 4999, "Job Completed")


def test_compiled_c_dialogue_reports_both_stages(sock: PistonSocket) -> None:
    sock.init("c", DIALOGUE_C)
    first = sock.until("stage")
    assert [m["type"] for m in first] == ["runtime", "stage"] and first[-1]["stage"] == "compile"
    assert sock.until("exit")[-1] == {"type": "exit", "stage": "compile", "code": 0, "signal": None}
    assert sock.next() == {"type": "stage", "stage": "run"}
    sock.stdin("one\n")
    assert sock.next()["data"] == "1:one\n"
    sock.stdin("two\n")
    assert sock.next()["data"] == "2:two\n"
    sock.stdin("bye\n")
    assert sock.until("exit")[-1] == {"type": "exit", "stage": "run", "code": 7, "signal": None}
    assert sock.closed()[1:] == (4999, "Job Completed")


def test_stdin_sent_before_the_run_starts_is_kept(sock: PistonSocket) -> None:
    # Sent at once, while the C program compiles: Piston would drop it.
    sock.init("c", DIALOGUE_C)
    sock.stdin("early\n")
    sock.stdin("bye\n")
    messages, code, _ = sock.closed()
    data = "".join(m["data"] for m in messages if m["type"] == "data" and m["stream"] == "stdout")
    assert data == "1:early\n2:bye\n"
    assert messages[-1] == {"type": "exit", "stage": "run", "code": 7, "signal": None} and code == 4999


def test_init_stdin_is_the_first_input(sock: PistonSocket) -> None:
    sock.init("python", DIALOGUE_PY, stdin="bye")
    messages, code, _ = sock.closed()
    assert {"type": "data", "stream": "stdout", "data": "echo:bye\n"} in messages and code == 4999


def test_stderr_and_compile_errors_stream_as_data(sock: PistonSocket) -> None:
    sock.init("c", "int main(void) { return undefined_name; }\n")
    messages, code, _ = sock.closed()
    assert [m["type"] for m in messages][:2] == ["runtime", "stage"]
    assert any(m["type"] == "data" and m["stream"] == "stderr" and "undefined_name" in m["data"] for m in messages)
    exit_ = messages[-1]
    assert exit_["type"] == "exit" and exit_["stage"] == "compile" and exit_["code"] != 0
    assert {"type": "stage", "stage": "run"} not in messages and code == 4999


def test_signal_reaches_the_program(sock: PistonSocket) -> None:
    sock.init("python", DIALOGUE_PY)
    sock.until("stage")
    sock.stdin("ping\n")
    assert sock.next()["data"] == "echo:ping\n"  # the program runs and waits for input
    sock.send(type="signal", signal="SIGTERM")
    assert sock.until("exit")[-1] == {"type": "exit", "stage": "run", "code": None, "signal": "SIGTERM"}
    assert sock.closed()[1:] == (4999, "Job Completed")


def test_run_limits_apply(sock: PistonSocket) -> None:
    sock.init("python", WAIT_FOREVER_PY, run_timeout=300)
    assert sock.until("exit")[-1] == {"type": "exit", "stage": "run", "code": None, "signal": "SIGKILL"}
    assert sock.closed()[1:] == (4999, "Job Completed")


# -- every close code


def test_4000_already_initialized(sock: PistonSocket, local_server: ServerProcess) -> None:
    sock.init("python", WAIT_FOREVER_PY)
    sock.until("stage")
    sock.init("python", WAIT_FOREVER_PY)
    assert sock.closed()[1:] == (4000, "Already Initialized")
    _wait_idle(local_server)  # the first job was stopped, not left to run


def test_4001_initialization_timeout(sock: PistonSocket) -> None:
    assert sock.closed(timeout=10) == ([], 4001, "Initialization Timeout")


@pytest.mark.parametrize(("message", "error"), [
    ({"type": "init", "language": "python", "version": "9.9.9", "files": [{"content": "1"}]},
     "python-9.9.9 runtime is unknown"),
    ({"type": "init", "language": "python", "version": "*", "files": "x"}, "files is required as an array"),
    ({"type": "init", "language": "python", "version": "*", "files": [{"content": "1"}], "run_timeout": "x"},
     "If specified, run_timeout must be a number"),
])
def test_4002_notified_error_carries_piston_validation_messages(
        sock: PistonSocket, message: dict[str, Any], error: str) -> None:
    sock.send(**message)
    assert sock.closed() == ([{"type": "error", "message": error}], 4002, "Notified Error")


def test_4002_for_a_message_that_is_not_json(sock: PistonSocket) -> None:
    sock.ws.send("{not json")
    messages, code, reason = sock.closed()
    assert code == 4002 and reason == "Notified Error"
    assert len(messages) == 1 and messages[0]["type"] == "error" and "not valid JSON" in messages[0]["message"]


def test_4003_not_yet_initialized(local_server: ServerProcess) -> None:
    for message in ({"type": "data", "stream": "stdin", "data": "x"}, {"type": "signal", "signal": "SIGINT"}):
        client = PistonSocket(local_server.url)
        client.send(**message)
        assert client.closed() == ([], 4003, "Not yet initialized")


def test_4004_can_only_write_to_stdin(sock: PistonSocket) -> None:
    sock.init("python", WAIT_FOREVER_PY)
    sock.send(type="data", stream="stdout", data="x")
    assert sock.closed()[1:] == (4004, "Can only write to stdin")


@pytest.mark.parametrize("signal", ["SIGFOO", "sigterm", 15, "SIGCLD"])
def test_4005_invalid_signal(sock: PistonSocket, signal: Any) -> None:
    # SIGCLD is in the CLI's list but not in the server's table (api/src/globals.js).
    sock.init("python", WAIT_FOREVER_PY)
    sock.send(type="signal", signal=signal)
    assert sock.closed()[1:] == (4005, "Invalid signal")


def test_4999_job_completed(sock: PistonSocket) -> None:
    sock.init("python", "print('done')")
    messages, code, reason = sock.closed()
    assert [m["type"] for m in messages] == ["runtime", "stage", "data", "exit"]
    assert (code, reason) == (4999, "Job Completed")


def test_every_close_code_is_covered() -> None:
    tested = {int(name.split("_")[1]) for name in globals() if name.startswith("test_4")}
    assert tested == {code for code, _ in CLOSE_CODES}


# -- the edges


def test_client_leaving_stops_the_program(local_server: ServerProcess) -> None:
    client = PistonSocket(local_server.url)
    client.init("python", WAIT_FOREVER_PY)
    client.until("stage")
    client.ws.sock.close()  # gone without a close frame
    _wait_idle(local_server)


def test_plain_http_get_is_a_clear_426(local_server: ServerProcess) -> None:
    response = requests.get(local_server.url + "/api/v2/connect", timeout=10)
    assert response.status_code == 426 and "WebSocket" in response.json()["message"]


def test_session_pool_answers_a_clear_error(pool_server: ServerProcess) -> None:
    client = PistonSocket(pool_server.url)
    client.init("python", DIALOGUE_PY)
    messages, code, reason = client.closed()
    assert (code, reason) == (4002, "Notified Error")
    assert messages[-1]["type"] == "error" and "/api/v2/connect" in messages[-1]["message"]
    assert "not available" in messages[-1]["message"]


# -- hostile programs and clients on this path


def test_the_program_sees_neither_the_service_environment_nor_a_writable_stdin(sock: PistonSocket) -> None:
    code = (
        "import os\n"
        "print(sorted(os.environ))\n"
        "for attempt in (lambda: open('/.io/stdin-live', 'w'), lambda: os.chmod('/.io/stdin-live', 0o666)):\n"
        "    try:\n"
        "        attempt(); print('allowed')\n"
        "    except OSError as exc:\n"
        "        print('denied', type(exc).__name__)\n"
        "for pid in os.listdir('/proc'):\n"
        "    if pid.isdigit():\n"
        "        try:\n"
        "            print(open(f'/proc/{pid}/environ').read())\n"
        "        except OSError:\n"
        "            pass\n"
    )
    sock.init("python", code)
    messages, code_, _ = sock.closed()
    out = "".join(m["data"] for m in messages if m["type"] == "data")
    assert SECRET not in out and "PISTON_TEST_SECRET" not in out
    assert out.count("denied") == 2 and "allowed" not in out, out
    assert code_ == 4999


def test_a_daemon_does_not_outlive_its_run(sock: PistonSocket, local_server: ServerProcess) -> None:
    code = ("import os, time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    time.sleep(60)\n"
            "print('parent done', flush=True)\n")
    sock.init("python", code)
    messages, close_code, _ = sock.closed()
    assert {"type": "exit", "stage": "run", "code": 0, "signal": None} in messages and close_code == 4999
    slots = requests.get(local_server.url + "/health", timeout=10).json()["sandbox"]["slots"]
    uid_base = int(os.environ.get("SANDBOX_UID_BASE", "60000"))
    deadline = time.monotonic() + 10
    while (left := _sleepers({uid_base + slot for slot in slots})) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, left


def test_a_stdin_flood_into_a_program_that_does_not_read_is_refused(sock: PistonSocket,
                                                                     local_server: ServerProcess) -> None:
    sock.init("python", WAIT_FOREVER_PY)
    sock.until("stage")
    chunk = "x" * (6 * 2**20)
    for _ in range(3):  # 18 MiB: over the 16 MiB backlog, under the 16 MiB message cap
        sock.stdin(chunk)
    messages, code, _ = sock.closed()
    assert code == 4002 and messages[-1]["type"] == "error" and "backlog" in messages[-1]["message"]
    _wait_idle(local_server)


def _sleepers(uids: set[int]) -> list[str]:
    out = subprocess.run(["ps", "-eo", "uid=,args="], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if int(line.split()[0]) in uids and "python" in line]


def _wait_idle(server: ServerProcess) -> None:
    """Bounded wait for every admitted job to end (no job is left running)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if requests.get(server.url + "/health", timeout=10).json()["inflight"] == 0:
            return
        time.sleep(0.05)
    raise AssertionError("a job is still running")


# -- Piston's own CLI


@pytest.fixture(scope="module")
def piston_cli(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm are not installed; the Python client tests cover the protocol")
    target = tmp_path_factory.mktemp("piston-cli") / "cli"
    shutil.copytree(REPO / "tests" / "piston_cli", target)
    try:
        result = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=target,
                                capture_output=True, text=True, timeout=180, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip("npm ci timed out (no npm registry?); the Python client tests cover the protocol")
    if result.returncode != 0:
        pytest.skip(f"npm ci failed (no npm registry?): {result.stderr.strip()[-300:]}; "
                    "the Python client tests cover the protocol")
    return target


@pytest.mark.parametrize(("language", "name", "code", "answers"), [
    ("python", "dialogue.py", DIALOGUE_PY, ["echo:hello\n", "echo:world\n", "echo:bye\n"]),
    ("c", "dialogue.c", DIALOGUE_C, ["1:hello\n", "2:world\n", "3:bye\n"]),
])
def test_piston_cli_interactive(piston_cli: Path, local_server: ServerProcess, tmp_path: Path,
                                language: str, name: str, code: str, answers: list[str]) -> None:
    source = tmp_path / name
    source.write_text(code)
    argv = ["node", str(piston_cli / "index.js"), "-u", local_server.url, "execute", language, str(source), "-t"]
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as cli:
        try:
            assert cli.stdin is not None and cli.stdout is not None
            for word, answer in zip(("hello", "world", "bye"), answers, strict=True):
                cli.stdin.write(f"{word}\n".encode())
                cli.stdin.flush()
                assert _read_line(cli.stdout.fileno()) == answer
            assert cli.wait(timeout=30) == 0  # the server closed with 4999 and the CLI ended by itself
        finally:
            if cli.poll() is None:
                cli.kill()


def _read_line(fd: int, timeout: float = 30) -> str:
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        assert ready, f"no answer from the CLI in time; got {data!r}"
        chunk = os.read(fd, 1)
        assert chunk, f"the CLI ended early; got {data!r}"
        data += chunk
    return data.decode()


def test_piston_cli_ppman_list(piston_cli: Path, local_server: ServerProcess) -> None:
    """Piston's `ppman list` reads GET /api/v2/packages (it failed with a 404 before)."""
    result = subprocess.run(["node", str(piston_cli / "index.js"), "-u", local_server.url, "ppman", "list"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    runtimes = requests.get(local_server.url + "/api/v2/runtimes", timeout=10).json()
    lines = {line.strip() for line in result.stdout.splitlines()}
    assert lines == {f"• {rt['language']} {rt['version']}" for rt in runtimes}
