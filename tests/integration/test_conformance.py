"""Piston v2 conformance through a real gunicorn process: fields, statuses, errors, encodings."""

from __future__ import annotations

import base64
import re

import pytest
import requests

from tests.conftest import Client
from tests.integration.programs import COMPILE_ERROR, ECHO_EXIT3

STAGE_FIELDS = ["stdout", "stderr", "output", "code", "signal", "message", "status", "memory", "cpu_time", "wall_time"]


@pytest.fixture(scope="module")
def runtimes(client: Client) -> dict[str, dict]:
    return {rt["language"]: rt for rt in client.get("/api/v2/runtimes").json()}


def test_runtimes_shape(client: Client, runtimes: dict[str, dict]) -> None:
    response = client.get("/api/v2/runtimes/")  # trailing slash, as aiopyston requests it
    assert response.status_code == 200
    for rt in response.json():
        assert set(rt) <= {"language", "version", "aliases", "runtime"}
        assert re.fullmatch(r"\d+\.\d+\.\d+", rt["version"]) and isinstance(rt["aliases"], list)
    assert "python" in runtimes
    # `runtime` only where one toolchain provides several languages.
    assert "runtime" not in runtimes["python"]
    if "c" in runtimes:
        assert runtimes["c"]["runtime"] == runtimes["c++"]["runtime"] == "gcc"


def _every_listed(language_table: dict[str, tuple[str, str]], runtimes: dict[str, dict]) -> list[str]:
    return [lang for lang in language_table if lang in runtimes]


@pytest.mark.parametrize("language", list(ECHO_EXIT3))
def test_every_runtime_runs_with_stdin_and_exit_code(client: Client, runtimes: dict, language: str) -> None:
    if language not in runtimes:
        pytest.skip(f"{language} is not in this executor's /api/v2/runtimes (a PythonLTS pool offers Python, Bash and Perl)")
    name, code = ECHO_EXIT3[language]
    result = client.execute(language, code, name=name, stdin="Alice")
    assert result["language"] == language and result["version"] == runtimes[language]["version"]
    run = result["run"]
    assert list(run) == STAGE_FIELDS
    assert (run["stdout"], run["stderr"], run["output"]) == ("hello Alice\n", "", "hello Alice\n")
    assert (run["code"], run["signal"], run["status"], run["message"]) == (3, None, "RE", "Exited with error status 3")
    assert run["memory"] > 0 and run["cpu_time"] >= 0 and run["wall_time"] >= 0
    compiled = language in ("c", "c++", "java", "go")
    assert ("compile" in result) == compiled
    if compiled:
        assert result["compile"]["code"] == 0 and result["compile"]["status"] is None


@pytest.mark.parametrize("language", list(COMPILE_ERROR))
def test_compile_error_reports_run_as_compile(client: Client, runtimes: dict, language: str) -> None:
    if language not in runtimes:
        pytest.skip(f"{language} is not in this executor's /api/v2/runtimes (a PythonLTS pool offers Python, Bash and Perl)")
    name, code = COMPILE_ERROR[language]
    result = client.execute(language, code, name=name)
    assert result["compile"]["code"] not in (0, None) and result["compile"]["status"] == "RE", result["compile"]
    assert result["compile"]["stderr"] or result["compile"]["stdout"]
    assert result["run"] == result["compile"]


def test_success_fields(client: Client) -> None:
    run = client.execute("python", "print('ok')")["run"]
    assert (run["code"], run["signal"], run["status"], run["message"]) == (0, None, None, None)


def test_signal_is_sg(client: Client) -> None:
    run = client.execute("python", "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)")["run"]
    assert (run["code"], run["signal"], run["status"], run["message"]) == (None, "SIGSEGV", "SG", "Caught fatal signal 11")


def test_wall_timeout(client: Client) -> None:
    run = client.execute("python", "import time\nprint('start', flush=True)\ntime.sleep(10)", run_timeout=500)["run"]
    assert (run["status"], run["signal"], run["code"]) == ("TO", "SIGKILL", None)
    assert run["message"] == "Time limit exceeded (wall clock)"
    assert run["stdout"] == "start\n"  # output before the kill is kept
    assert 450 <= run["wall_time"] < 10_000  # killed at the limit, before the program's own end


def test_cpu_timeout(client: Client) -> None:
    # Wall limit 10x the CPU limit: on a loaded machine the loop gets less than a core.
    run = client.execute("python", "while True: pass", run_cpu_time=300, run_timeout=3000)["run"]
    assert (run["status"], run["signal"], run["message"]) == ("TO", "SIGKILL", "Time limit exceeded")
    assert 250 <= run["cpu_time"] < 1000  # killed at the limit (rusage is tick-sampled)


@pytest.mark.parametrize(("stream", "status", "message"), [
    ("stdout", "OL", "stdout length exceeded"), ("stderr", "EL", "stderr length exceeded"),
])
def test_output_limits(client: Client, stream: str, status: str, message: str) -> None:
    code = f"import sys\nwhile True: sys.{stream}.write('x' * 65536)"
    run = client.execute("python", code)["run"]
    assert (run["status"], run["message"], run["signal"], run["code"]) == (status, message, "SIGKILL", None)
    assert len(run[stream]) == 1048576  # kept up to OUTPUT_MAX_SIZE


def test_output_interleaves_in_arrival_order(client: Client) -> None:
    # Paced: two pipes cannot order writes made in the same instant (Piston has the same limit).
    code = ("import sys, time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.05)\n"
            "    print('e', i, file=sys.stderr, flush=True)\n    time.sleep(0.05)\n")
    run = client.execute("python", code)["run"]
    assert run["output"] == "0\ne 0\n1\ne 1\n2\ne 2\n"


def test_stdin_trailing_newline_rule(client: Client) -> None:
    code = "import sys\nprint(repr(sys.stdin.read()))"
    assert client.execute("python", code, stdin="a\nb")["run"]["stdout"] == "'a\\nb\\n'\n"
    assert client.execute("python", code, stdin="a\n")["run"]["stdout"] == "'a\\n'\n"
    assert client.execute("python", code)["run"]["stdout"] == "'\\n'\n"


def test_args(client: Client) -> None:
    run = client.execute("python", "import sys\nprint(sys.argv[1:])", args=["1", "two words", "3"])["run"]
    assert run["stdout"] == "['1', 'two words', '3']\n"


def test_several_files_first_is_main(client: Client) -> None:
    files = [
        {"name": "main.py", "content": "from lib.helper import greet\nprint(greet(open('data.bin','rb').read()))"},
        {"name": "lib/helper.py", "content": "def greet(b):\n    return 'hi ' + b.hex()"},
        {"name": "lib/__init__.py", "content": ""},
        {"name": "data.bin", "content": base64.b64encode(b"\x00\xff").decode(), "encoding": "base64"},
    ]
    assert client.execute("python", "", files=files)["run"]["stdout"] == "hi 00ff\n"


def test_hex_and_c_headers(client: Client, runtimes: dict) -> None:
    if "c" not in runtimes:
        pytest.skip("c is not in this executor's /api/v2/runtimes (a PythonLTS pool has no C compiler)")
    files = [
        {"name": "main.c", "content": '#include "util.h"\n#include <stdio.h>\nint main(void){printf("%d\\n", twice(21));}'},
        {"name": "util.h", "content": b"static int twice(int x) { return 2 * x; }\n".hex(), "encoding": "hex"},
    ]
    result = client.execute("c", "", files=files)
    assert result["run"]["stdout"] == "42\n"


def test_default_names_and_java_class_detection(client: Client, runtimes: dict) -> None:
    assert client.execute("py", "print('x')", name=None)["run"]["stdout"] == "x\n"
    assert client.execute("py", "print('y')", name="")["run"]["stdout"] == "y\n"
    if "java" in runtimes:
        code = "public class Solution { public static void main(String[] a) { System.out.println(\"j\"); } }"
        assert client.execute("java", code, name=None)["run"]["stdout"] == "j\n"


@pytest.mark.parametrize(("language", "version"), [("py", "3"), ("python3", "3.x"), ("python", ">=3.0.0 <4"), ("py3", "*")])
def test_aliases_and_version_ranges_answer_canonical(client: Client, runtimes: dict, language: str, version: str) -> None:
    result = client.execute(language, "print(1)", version=version)
    assert result["language"] == "python" and result["version"] == runtimes["python"]["version"]


def test_exact_version_and_unknown_version(client: Client, runtimes: dict) -> None:
    exact = runtimes["python"]["version"]
    assert client.execute("python", "print(1)", version=exact)["version"] == exact
    body = client.execute("python", "print(1)", version="1.0.0", expect=400)
    assert body == {"message": "python-1.0.0 runtime is unknown"}


def test_http_errors_are_pistons(client: Client) -> None:
    r = requests.post(client.url + "/api/v2/execute", data="{}", headers={"Content-Type": "text/plain"}, timeout=10)
    assert (r.status_code, r.json()) == (415, {"message": "requests must be of type application/json"})
    r = requests.post(client.url + "/api/v2/execute/", data="{bad", headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 400 and r.json()["message"].startswith("request body is not valid JSON")
    assert (client.get("/api/v2/execute").status_code, client.get("/api/v2/execute").json()) == (404, {"message": "Not Found"})
    assert client.get("/nope").json() == {"message": "Not Found"}
    r = client.post("/api/v2/execute", {"language": "python", "version": "*", "files": [{"content": "x" * (17 << 20)}]})
    assert r.status_code == 413 and "exceeds the limit" in r.json()["message"]
    r = client.post("/api/v2/execute", {"language": "python", "version": "*", "files": [{"content": "1"}], "run_timeout": 99999})
    assert (r.status_code, r.json()) == (400, {"message": "run_timeout cannot exceed the configured limit of 3000"})


def test_memory_limit_minus_one_and_limits_accepted(client: Client) -> None:
    result = client.execute("python", "print(2)", run_memory_limit=-1, compile_memory_limit=-1, run_timeout=2000,
                            compile_timeout=5000, run_cpu_time=2000, compile_cpu_time=5000)
    assert result["run"]["stdout"] == "2\n"


def test_health_and_ready(client: Client) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["executor"] in ("local", "azure-sessions", "azure-custom-container")
    if body["executor"] == "local":
        assert body["sandbox"]["mode"] != "unavailable"
    assert client.get("/ready").status_code == 200
