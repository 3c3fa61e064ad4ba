"""The custom-container path end to end: a real gunicorn backend against the emulator's
``--pool-type CustomContainer``, where each session is a real process of this project's own
service in SERVICE_ROLE=session. Nothing is patched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from backend.testing import ServerProcess
from emulator.settings import UNAUTHORIZED_CLIENT_ID
from emulator.testing import EmulatorProcess
from tests.conftest import REPO, SECRET, Client, cc_backend_env
from tests.integration.programs import COMPILE_ERROR, ECHO_EXIT3

pytestmark = pytest.mark.slow

# Figures of the machine, and "cached": whether that machine's compile cache already held the program.
MEASURED = ("cpu_time", "wall_time", "memory", "cached")
LANGUAGES = ("c", "c++", "java", "javascript", "python")
CPP_SQUARE = ('#include <iostream>\nint main(){long long n; std::cin >> n; std::cout << n * n << "\\n";}')


def comparable(stage: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stage.items() if k not in MEASURED}


def pool_call(emu: EmulatorProcess, method: str, path: str, identifier: str | None, token: str | None = None,
              **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    params = {"identifier": identifier} if identifier else {}
    return requests.request(method, f"{emu.pool_endpoint}/{path}", params=params, headers=headers, timeout=120,
                            **kwargs)


def sessions(emu: EmulatorProcess) -> dict[str, dict[str, Any]]:
    return {s["identifier"]: s for s in emu.state()["sessions"]}


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@contextlib.contextmanager
def backend(emu: EmulatorProcess, **env: str) -> Iterator[Client]:
    with ServerProcess(cc_backend_env(emu, **env)) as server:
        yield Client(server.url)


# ---------------------------------------------------------------- the emulator's pool


def test_ready_block_and_arm_report_a_custom_container_pool(cc_emulator: EmulatorProcess) -> None:
    assert cc_emulator.env["SESSION_POOL_TYPE"] == "CustomContainer"
    assert cc_emulator.pool_endpoint.endswith(".westus2.azurecontainerapps.io")
    assert "/subscriptions/" not in cc_emulator.pool_endpoint
    cfg = cc_emulator.state()["settings"]
    arm = requests.get(
        f"{cc_emulator.base_url}/subscriptions/{cfg['subscription_id']}/resourceGroups/{cfg['resource_group']}"
        f"/providers/Microsoft.App/sessionPools/{cfg['pool_name']}", params={"api-version": "2025-07-01"},
        headers={"Authorization": f"Bearer {cc_emulator.token('https://management.azure.com')}"}, timeout=10).json()
    assert arm["properties"]["containerType"] == "CustomContainer"
    assert arm["properties"]["poolManagementEndpoint"] == cc_emulator.pool_endpoint


def test_sessions_need_the_data_plane_token_and_role(cc_emulator: EmulatorProcess) -> None:
    ident = "tok-" + secrets.token_hex(8)
    assert pool_call(cc_emulator, "GET", "health", ident).status_code == 401
    wrong_audience = cc_emulator.token("https://management.azure.com")
    assert pool_call(cc_emulator, "GET", "health", ident, wrong_audience).status_code == 401
    stranger = cc_emulator.token(client_id=UNAUTHORIZED_CLIENT_ID)
    assert pool_call(cc_emulator, "GET", "health", ident, stranger).status_code == 403
    assert ident not in sessions(cc_emulator)  # nothing was started for a refused caller
    assert pool_call(cc_emulator, "GET", "health", None, cc_emulator.token()).status_code == 400


def test_a_session_is_the_service_in_session_mode_with_nothing_of_ours(cc_emulator: EmulatorProcess) -> None:
    ident = "env-" + secrets.token_hex(8)
    health = pool_call(cc_emulator, "GET", "health", ident, cc_emulator.token())
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["role"] == "session" and body["executor"] == "local" and body["sandbox"]["refused"] is None
    pid = sessions(cc_emulator)[ident]["kernel_pid"]
    env = environ_of(pid)
    assert env["SERVICE_ROLE"] == "session" and int(env["SANDBOX_UID_BASE"]) >= 64000
    assert not any(k.startswith(("IDENTITY_", "AZURE_", "MSI_")) or k == "PISTON_TEST_SECRET" for k in env), env
    others = [s["kernel_pid"] for i, s in sessions(cc_emulator).items() if i != ident and s["kernel_pid"]]
    for other in others:
        other_env = environ_of(other)
        assert other_env["SANDBOX_UID_BASE"] != env["SANDBOX_UID_BASE"]
        assert other_env["SANDBOX_STATE_DIR"] != env["SANDBOX_STATE_DIR"]
        assert other_env["SANDBOX_CGROUP_NAME"] != env["SANDBOX_CGROUP_NAME"]
    stopped = requests.post(f"{cc_emulator.pool_endpoint}/.management/stopSession",
                            params={"identifier": ident, "api-version": "2025-02-02-preview"},
                            headers={"Authorization": f"Bearer {cc_emulator.token()}"}, timeout=30)
    assert stopped.status_code == 200 and "stopped" in stopped.text
    assert ident not in sessions(cc_emulator)
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_past_max_sessions_a_new_identifier_gets_404_and_cooldown_destroys() -> None:
    with EmulatorProcess(pool_type="CustomContainer", session_app_dir=str(REPO), max_sessions=2, ready_sessions=0,
                         cooldown=3, kernel_start_timeout=90) as emu:
        token = emu.token()
        pids = []
        for ident in ("full-0001", "full-0002"):
            assert pool_call(emu, "GET", "api/v2/runtimes", ident, token).status_code == 200
            pids.append(sessions(emu)[ident]["kernel_pid"])
        third = pool_call(emu, "GET", "api/v2/runtimes", "full-0003", token)
        assert third.status_code == 404 and third.json()["error"]["code"] == "MaxConcurrentSessionsReached"
        deadline = time.monotonic() + 30
        while sessions(emu) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not sessions(emu)
        time.sleep(1)
        assert not [p for p in pids if Path(f"/proc/{p}").exists()]
        assert pool_call(emu, "GET", "api/v2/runtimes", "full-0003", token).status_code == 200


def test_the_emulator_takes_every_session_with_it_when_it_exits() -> None:
    emu = EmulatorProcess(pool_type="CustomContainer", session_app_dir=str(REPO), ready_sessions=2,
                          kernel_start_timeout=90).start()
    try:
        assert pool_call(emu, "GET", "health", "exit-0001", emu.token()).status_code == 200
        deadline = time.monotonic() + 60
        while emu.state()["kernels"]["ready"] < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        pids = emu.state()["kernels"]["pids"]
        assert len(pids) >= 2
    finally:
        assert emu.stop() == 0
    time.sleep(0.5)
    assert not [p for p in pids if Path(f"/proc/{p}").exists()]


def test_faults_work_on_the_forwarded_routes(cc_emulator: EmulatorProcess) -> None:
    token = cc_emulator.token()
    cc_emulator.set_fault(operation="container", status=503, count=1)
    try:
        assert pool_call(cc_emulator, "GET", "health", "flt-0001", token).status_code == 503
        assert pool_call(cc_emulator, "GET", "health", "flt-0001", token).status_code == 200
        cc_emulator.set_fault(operation="dataplane", status=429, retry_after=2, count=1)
        throttled = pool_call(cc_emulator, "GET", "health", "flt-0001", token)
        assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "2"
        cc_emulator.set_fault(operation="container", drop=True, count=1)
        with pytest.raises(requests.ConnectionError):
            pool_call(cc_emulator, "GET", "health", "flt-0001", token)
    finally:
        cc_emulator.clear_faults()


# ---------------------------------------------------------------- the backend on it


@pytest.mark.parametrize("language", LANGUAGES)
def test_languages_answer_exactly_like_the_local_executor(language: str, cc_client: Client,
                                                          local_client: Client) -> None:
    for programs in (ECHO_EXIT3, COMPILE_ERROR):
        if language not in programs:
            continue
        name, code = programs[language]
        fields = {"files": [{"name": name, "content": code}], "stdin": "world\n"}
        remote = cc_client.execute(language, code, **fields)
        local = local_client.execute(language, code, **fields)
        assert remote.keys() == local.keys()
        assert comparable(remote["run"]) == comparable(local["run"])
        if "compile" in local:
            assert comparable(remote["compile"]) == comparable(local["compile"])


def test_runtimes_are_the_sessions_own(cc_client: Client, cc_emulator: EmulatorProcess) -> None:
    mine = cc_client.get("/api/v2/runtimes").json()
    theirs = pool_call(cc_emulator, "GET", "api/v2/runtimes", "rt-" + secrets.token_hex(6), cc_emulator.token())
    assert mine == theirs.json()
    assert set(LANGUAGES) <= {rt["language"] for rt in mine}


def test_health_names_the_pool_kind_and_the_sessions_sandbox(cc_client: Client) -> None:
    health = cc_client.get("/health").json()
    assert health["role"] == "api" and health["executor"] == "azure-custom-container"
    sessions_ = health["sessions"]
    assert sessions_["pool_type"] == "CustomContainer" and sessions_["strategy"] == "reuse"
    assert sessions_["session_role"] == "session" and sessions_["session_sandbox_mode"]
    assert cc_client.get("/ready").status_code == 200


def test_a_20_case_cpp_judge_gets_the_right_verdicts(cc_client: Client, local_client: Client) -> None:
    cases = [{"stdin": str(i), "expected_output": str(i * i) if i % 7 else "wrong"} for i in range(20)]
    body = {"language": "c++", "version": "*", "files": [{"content": CPP_SQUARE}], "testcases": cases}
    remote = cc_client.post("/api/v2/judge", body)
    local = local_client.post("/api/v2/judge", body)
    assert remote.status_code == local.status_code == 200, remote.text
    verdicts = [c["verdict"] for c in remote.json()["testcases"]]
    assert verdicts == ["WA" if i % 7 == 0 else "AC" for i in range(20)]

    def strip(answer: dict[str, Any]) -> dict[str, Any]:
        answer = {k: v for k, v in answer.items() if k not in ("max_cpu_time", "max_memory")}
        answer["testcases"] = [comparable(c) for c in answer["testcases"]]
        answer["compile"] = comparable(answer["compile"])
        return answer

    assert strip(remote.json()) == strip(local.json())


def test_judge_stop_first_failure_tle_and_long_output(cc_client: Client, local_client: Client) -> None:
    bodies = [
        {"language": "python", "files": [{"content": "print(input())"}], "stop_on_first_failure": True,
         "testcases": [{"stdin": "a", "expected_output": "a"}, {"stdin": "b", "expected_output": "x"},
                       {"stdin": "c", "expected_output": "c"}]},
        {"language": "python", "files": [{"content": "while True: pass"}], "run_cpu_time": 300,
         "testcases": [{"stdin": "", "expected_output": ""}]},
        {"language": "python", "files": [{"content": "print('y' * 5000)"}],
         "testcases": [{"stdin": "", "expected_output": "y" * 5000}]},
    ]
    for body in bodies:
        body["version"] = "*"
        remote, local = cc_client.post("/api/v2/judge", body).json(), local_client.post("/api/v2/judge", body).json()
        assert [comparable(c) for c in remote["testcases"]] == [comparable(c) for c in local["testcases"]]


def test_16_concurrent_cpp_runs_and_an_injected_429(cc_emulator: EmulatorProcess) -> None:
    with backend(cc_emulator, MAX_CONCURRENT_JOBS="16", SESSION_MAX_RETRIES="3") as client:
        client.execute("c++", CPP_SQUARE, stdin="3")  # warm: the probe and first compile
        cc_emulator.set_fault(operation="container", status=429, retry_after=1, count=1, method="POST")
        try:
            def one(i: int) -> str:
                return client.execute("c++", CPP_SQUARE, stdin=str(i))["run"]["stdout"]

            with ThreadPoolExecutor(16) as pool:
                assert list(pool.map(one, range(16))) == [f"{i * i}\n" for i in range(16)]
            assert cc_emulator.state()["faults_fired"] >= 1
        finally:
            cc_emulator.clear_faults()


def test_warm_sessions_are_reused_and_runs_stay_apart(cc_client: Client, cc_emulator: EmulatorProcess) -> None:
    cc_client.execute("python", "print('warm')")
    before = {k: v["executions"] for k, v in sessions(cc_emulator).items()}
    leak = "/tmp/cc-leak-" + secrets.token_hex(4)
    first = cc_client.execute("python", f"import os\nopen('{leak}', 'w').write('x')\nopen('here', 'w').write('x')\n"
                                        "print(os.getuid())")
    second = cc_client.execute("python", f"import os\nprint(os.path.exists('{leak}'), sorted(os.listdir('.')))")
    assert second["run"]["stdout"] == "False ['file0.code']\n", second
    assert first["run"]["code"] == 0
    after = {k: v["executions"] for k, v in sessions(cc_emulator).items()}
    used = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert list(used.values()) == [2], used  # one warm session, two runs


def test_the_backends_secret_is_not_in_any_session(cc_client: Client) -> None:
    code = ("import os\nfound = [open(f'/proc/{p}/environ', 'rb').read() for p in os.listdir('/proc') if p.isdigit()"
            " and os.access(f'/proc/{p}/environ', os.R_OK)]\n"
            f"print('SECRET' if b'{SECRET[:6]}' + b'{SECRET[6:]}' in b''.join(found) else 'clean')\n"
            "print(sorted(os.environ))")
    out = cc_client.execute("python", code)["run"]["stdout"]
    assert out.startswith("clean\n"), out
    assert "IDENTITY_HEADER" not in out and "PISTON_TEST_SECRET" not in out


def test_fork_bomb_and_daemon_leave_the_pool_healthy(cc_client: Client) -> None:
    cc_client.execute("bash", ":(){ :|:& };:\nsleep 1", run_timeout=2000)  # answered (200), sandbox held
    marker = f"{secrets.randbelow(9000) + 1000}.75"
    cc_client.execute("python", f"import subprocess\nsubprocess.Popen(['sleep', '{marker}'], start_new_session=True)")
    check = ("import os\nseen = False\nfor p in filter(str.isdigit, os.listdir('/proc')):\n"
             f"    try:\n        seen = seen or '{marker}' in open(f'/proc/{{p}}/cmdline').read()\n"
             "    except OSError:\n        pass\nprint(seen)")
    assert cc_client.execute("python", check)["run"]["stdout"] == "False\n"
    host = [p for p in filter(str.isdigit, os.listdir("/proc"))
            if marker in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
    assert not host
    assert cc_client.execute("python", "print('alive')")["run"]["stdout"] == "alive\n"
    assert cc_client.get("/ready").status_code == 200


def test_pool_kind_read_from_arm(cc_emulator: EmulatorProcess) -> None:
    cfg = cc_emulator.state()["settings"]
    with backend(cc_emulator, POOL_MANAGEMENT_ENDPOINT="", SESSION_POOL_TYPE="auto",
                 AZURE_SUBSCRIPTION_ID=cfg["subscription_id"], AZURE_RESOURCE_GROUP=cfg["resource_group"],
                 SESSION_POOL_NAME=cfg["pool_name"], AZURE_RESOURCE_MANAGER_URL=cc_emulator.base_url) as client:
        assert client.get("/health").json()["sessions"]["pool_type"] == "CustomContainer"
        assert client.execute("c", ECHO_EXIT3["c"][1], files=[{"name": ECHO_EXIT3["c"][0],
                                                               "content": ECHO_EXIT3["c"][1]}],
                              stdin="arm\n")["run"]["code"] == 3


def test_fallback_to_local_works_on_this_path_too(cc_emulator: EmulatorProcess) -> None:
    with backend(cc_emulator, FALLBACK_TO_LOCAL="true", SESSION_MAX_RETRIES="1") as client:
        assert client.execute("python", "print('pool')")["run"]["stdout"] == "pool\n"
        cc_emulator.set_fault(operation="container", status=503)
        try:
            response = client.post("/api/v2/execute", {"language": "python", "version": "*",
                                                       "files": [{"content": "print(input())"}], "stdin": "local"})
            assert response.status_code == 200 and response.json()["run"]["stdout"] == "local\n"
            assert "ran on the local executor" in response.headers["X-Piston-Notes"]
        finally:
            cc_emulator.clear_faults()


def test_a_session_without_namespaces_gets_uid_separation_and_still_keeps_runs_apart() -> None:
    """A custom-container session may allow uid separation but no namespaces: the session takes the
    strongest mode it has, says so, and runs stay apart and blind to the backend's secrets."""
    with EmulatorProcess(pool_type="CustomContainer", session_app_dir=str(REPO), ready_sessions=1, max_sessions=4,
                         kernel_start_timeout=90, session_env=["SANDBOX_MODE=uid"]) as emu, backend(emu) as client:
        mode = client.get("/health").json()["sessions"]["session_sandbox_mode"]
        assert mode.startswith("uid"), mode
        leak = "/tmp/cc-uid-leak-" + secrets.token_hex(4)
        first = client.execute("python", f"import os\nopen('{leak}', 'w').write('x')\nprint(os.getuid())")
        second = client.execute("python", f"import os\nprint(os.path.exists('{leak}'), os.getuid())")
        assert second["run"]["stdout"].split()[0] == "False", second
        assert int(first["run"]["stdout"]) >= 64000 and int(second["run"]["stdout"].split()[1]) >= 64000
        assert not Path(leak).exists()
        secret = client.execute("python", "import os\nprint(sorted(os.environ))")["run"]["stdout"]
        assert "PISTON_TEST_SECRET" not in secret and "IDENTITY_HEADER" not in secret
