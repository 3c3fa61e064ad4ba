"""The session harness run LOCALLY: ``harness_session.py`` in a subprocess python, no emulator.

The subprocess plays the Jupyter kernel: it becomes the subreaper, spawns the reaper per
stage and cleans up after the submission, exactly as it does inside a dynamic session.
"""

from __future__ import annotations

import base64
import errno
import itertools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from backend.executors.azure import harness
from backend.executors.azure.harness_session import Guard, derive_status
from backend.executors.local.results import to_stage
from backend.executors.local.sandbox import Outcome
from backend.models import Limits, Program, RunSpec, SourceFile
from backend.runtimes import LANGUAGES, Runtime

HARNESS = Path(harness.__file__).with_name("harness_session.py")
PYTHON = next(p for p in ("/usr/bin/python3", "/usr/local/bin/python3", sys.executable) if os.access(p, os.X_OK))
LIMITS = {"timeout_ms": 5000, "cpu_time_ms": 5000, "memory_bytes": -1, "output_max_size": 65536,
          "max_processes": 64, "max_open_files": 256, "max_file_size": 10_000_000}


def limits(**changes: int) -> dict[str, int]:
    return {**LIMITS, **changes}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def call(request: dict[str, Any], data_dir: Path, *, via_code: bool = False,
         isolation: str | None = None) -> dict[str, Any]:
    """Run one harness request as the session would; return the decoded result.

    ``isolation``: the strongest path the harness may take (its test knob), else what the kernel allows.
    """
    request = {"v": 1, "nonce": secrets.token_hex(4), **request, "data_dir": str(data_dir)}
    data_dir.mkdir(exist_ok=True)
    env = {**os.environ, **({"PISTON_HARNESS_ISOLATION": isolation} if isolation else {})}
    if via_code:
        # Exactly the cell the backend sends, run in a plain interpreter instead of a kernel.
        argv = [sys.executable, "-c", harness.render_code(harness.encode(request))]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, env=env)
    else:
        proc = subprocess.run([sys.executable, str(HARNESS)], input=json.dumps(request),
                              capture_output=True, text=True, timeout=120, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    reply = harness.parse_reply(proc.stdout, request["nonce"])
    if reply.result is not None:
        return reply.result
    path = data_dir / str(reply.result_file)
    result = harness.decode_result(path.read_bytes())
    path.unlink()
    return result


def python_run(source: str, data_dir: Path, *, stdin: str = "", args: tuple[str, ...] = (), **lim: int) -> dict:
    request = {"files": [{"name": "main.py", "content": b64(source)}],
               "runs": [{"argv": [PYTHON, "-E", "-s", "main.py", *args], "stdin": stdin, "limits": limits(**lim)}]}
    return call(request, data_dir)["runs"][0]


def test_stdin_args_and_exit_code(tmp_path: Path) -> None:
    source = ("import sys\nname = input()\nprint('hello', name, sys.argv[1], flush=True)\n"
              "print('oops', file=sys.stderr)\nsys.exit(3)\n")
    run = python_run(source, tmp_path / "data", stdin="bob\n", args=("x",))
    assert run["stdout"] == "hello bob x\n"
    assert run["stderr"] == "oops\n"
    assert run["output"] == "hello bob x\noops\n"
    assert (run["code"], run["signal"], run["status"], run["message"]) == (3, None, "RE", "Exited with error status 3")
    assert run["memory"] > 0 and run["cpu_time"] >= 0 and run["wall_time"] >= 0
    ok = python_run("print(input()[::-1])", tmp_path / "data", stdin="abc")
    assert (ok["stdout"], ok["code"], ok["status"], ok["message"]) == ("cba\n", 0, None, None)


def test_signal_is_sg(tmp_path: Path) -> None:
    run = python_run("import os\nos.kill(os.getpid(), 11)\n", tmp_path / "data")
    assert (run["status"], run["signal"], run["code"], run["message"]) == ("SG", "SIGSEGV", None, "Caught fatal signal 11")


def test_cpu_limit_is_to(tmp_path: Path) -> None:
    run = python_run("while True: pass\n", tmp_path / "data", cpu_time_ms=500, timeout_ms=10_000)
    assert (run["status"], run["message"], run["signal"], run["code"]) == (
        "TO", "Time limit exceeded", "SIGKILL", None)  # the CPU limit, before the 10 s wall limit


def test_wall_limit_is_to_wall_clock(tmp_path: Path) -> None:
    started = time.monotonic()
    run = python_run("import time\ntime.sleep(30)\n", tmp_path / "data", timeout_ms=500)
    assert (run["status"], run["message"], run["signal"], run["code"]) == (
        "TO", "Time limit exceeded (wall clock)", "SIGKILL", None)
    assert time.monotonic() - started < 30  # killed, not slept out (speed is bench/'s)


def test_output_limits_are_ol_and_el(tmp_path: Path) -> None:
    run = python_run("print('x' * 5000)", tmp_path / "data", output_max_size=1000)
    assert (run["status"], run["message"], run["signal"]) == ("OL", "stdout length exceeded", "SIGKILL")
    assert run["stdout"] == "x" * 1000 and run["output"] == "x" * 1000
    run = python_run("import sys\nsys.stderr.write('e' * 5000)", tmp_path / "data", output_max_size=1000)
    assert (run["status"], run["message"]) == ("EL", "stderr length exceeded")


def _raw_harness(request: dict[str, Any], data: Path, nonce: str) -> str:
    request = {"v": 1, "nonce": nonce, **request, "data_dir": str(data)}
    data.mkdir()
    proc = subprocess.run([sys.executable, str(HARNESS)], input=json.dumps(request), capture_output=True,
                          text=True, timeout=60, check=True)
    return proc.stdout.strip()


def test_big_result_goes_through_a_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code = "import os\nprint(os.urandom(100000).hex())"  # incompressible
    request = {"inline_max": 3000, "files": [{"name": "main.py", "content": b64(code)}],
               "runs": [{"argv": [PYTHON, "main.py"], "stdin": "", "limits": limits(output_max_size=10**6)}]}
    assert _raw_harness(request, data, "bigout") == "__PISTON__bigout @piston-out-bigout.json"
    result = harness.decode_result((data / "piston-out-bigout.json").read_bytes())
    assert len(result["runs"][0]["stdout"]) == 200001  # never cut silently


def test_big_repetitive_result_comes_back_compressed_inline(tmp_path: Path) -> None:
    request = {"inline_max": 3000, "files": [{"name": "main.py", "content": b64("print('y' * 200000)")}],
               "runs": [{"argv": [PYTHON, "main.py"], "stdin": "", "limits": limits(output_max_size=10**6)}]}
    line = _raw_harness(request, tmp_path / "data", "packed")
    assert line.startswith("__PISTON__packed z:") and len(line) < 3100
    reply = harness.parse_reply(line, "packed")
    assert reply.result is not None and reply.result["runs"][0]["stdout"] == "y" * 200000 + "\n"
    with pytest.raises(harness.HarnessError, match="corrupt"):
        harness.parse_reply("__PISTON__packed z:bm90IHpsaWI=", "packed")


def test_input_file_is_read_and_removed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    body = {"files": [{"name": "main.py", "content": b64("print(len(input()))")}],
            "runs": [{"argv": [PYTHON, "main.py"], "stdin": "z" * 100_000, "limits": limits()}]}
    (data / "piston-in-abc.json").write_text(json.dumps(body))
    (data / "piston-out-stale.json").write_text("{}")  # left by an earlier run: removed
    result = call({"input_file": "piston-in-abc.json"}, data)
    assert result["runs"][0]["stdout"] == "100000\n"
    assert sorted(p.name for p in data.iterdir()) == []


@pytest.mark.skipif(not os.access("/usr/bin/gcc", os.X_OK), reason="needs gcc")
def test_compile_once_then_many_runs(tmp_path: Path) -> None:
    source = '#include <stdio.h>\nint main(void){int a,b;scanf("%d %d",&a,&b);printf("%d\\n",a+b);return a;}\n'
    # The box lives for the whole request: each run sees the compile's log line exactly once.
    compile_argv = ["/bin/sh", "-c", "echo compiled >> compile.log && exec /usr/bin/gcc -O2 -o a.out main.c"]
    runs = [{"argv": ["/bin/sh", "-c", "cat compile.log; exec ./a.out"], "stdin": f"{a} {b}", "limits": limits()}
            for a, b in ((0, 1), (2, 3), (0, 40))]
    result = call({"files": [{"name": "main.c", "content": b64(source)}],
                   "compile": {"argv": compile_argv, "limits": limits(timeout_ms=30_000, cpu_time_ms=30_000)},
                   "runs": runs}, tmp_path / "data")
    assert result["compile"]["code"] == 0 and result["compile"]["status"] is None
    assert [r["stdout"] for r in result["runs"]] == ["compiled\n1\n", "compiled\n5\n", "compiled\n40\n"]
    assert [r["code"] for r in result["runs"]] == [0, 2, 0]


def test_failed_compile_is_every_run_result(tmp_path: Path) -> None:
    result = call({"files": [{"name": "main.c", "content": b64("int main(")}],
                   "compile": {"argv": ["/bin/sh", "-c", "echo 'main.c:1: error' >&2; exit 1"], "limits": limits()},
                   "runs": [{"argv": ["./a.out"], "stdin": "", "limits": limits()}] * 2}, tmp_path / "data")
    assert result["compile"]["status"] == "RE" and result["compile"]["stderr"] == "main.c:1: error\n"
    assert result["runs"] == [result["compile"], result["compile"]]


def alive_with(marker: str) -> list[int]:
    """Pids of live processes whose command line holds ``marker``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(pid))
    return found


def test_cleanup_kills_daemons_and_removes_files(tmp_path: Path) -> None:
    marker = str(1000 + secrets.randbelow(9000))
    leak = f"/tmp/piston-leak-{secrets.token_hex(4)}"
    source = f"""
import os, subprocess, sys
subprocess.Popen(["sleep", "{marker}.5"], start_new_session=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
if os.fork() == 0:  # classic double fork
    os.setsid()
    if os.fork() == 0:
        os.closerange(0, 3)
        os.execvp("sleep", ["sleep", "{marker}.6"])
    os._exit(0)
open("{leak}", "w").write("secret")
os.makedirs("{leak}.d/sub")
open("left-in-box", "w").write("x")
print("started")
"""
    try:
        result = call({"files": [{"name": "main.py", "content": b64(source)}],
                       "runs": [{"argv": [PYTHON, "main.py"], "stdin": "", "limits": limits()}]}, tmp_path / "data")
        assert result["runs"][0]["stdout"] == "started\n", result
        assert result["cleanup"]["killed"] >= 2
        assert not alive_with(f"sleep {marker}.")
        assert not os.path.lexists(leak) and not os.path.lexists(leak + ".d")
    finally:
        for pid in alive_with(f"sleep {marker}."):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("isolation", [None, "userns", "none"])
def test_a_child_holding_stdout_does_not_hold_the_stage(tmp_path: Path, isolation: str | None) -> None:
    """The stage ends with the program: a child that keeps its stdout open is a leftover, not a hang
    (waiting for it would end in the backstop deadline, a TO)."""
    if isolation == "none" and os.geteuid() == 0:
        pytest.skip("the none path as root would guard root's own dirs; tested unprivileged in integration")
    if isolation == "userns":
        _userns_or_skip(tmp_path)
    marker = str(1000 + secrets.randbelow(9000))
    source = f"import subprocess\nsubprocess.Popen(['sleep', '{marker}.25'])\nprint('parent done')\n"
    request = {"files": [{"name": "main.py", "content": b64(source)}],
               "runs": [{"argv": [PYTHON, "main.py"], "stdin": "", "limits": limits(timeout_ms=2000)}]}
    try:
        run = call(request, tmp_path / "data", isolation=isolation)["runs"][0]
        assert (run["status"], run["code"], run["stdout"]) == (None, 0, "parent done\n")
        assert not alive_with(f"sleep {marker}.25")
    finally:
        for pid in alive_with(f"sleep {marker}.25"):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow  # needs root
@pytest.mark.skipif(os.geteuid() != 0, reason="privilege drop needs root")
def test_runs_as_a_fresh_unprivileged_uid(tmp_path: Path) -> None:
    source = "import os\nprint(os.getuid(), os.getgid(), os.getgroups())\nopen('/etc/piston-test', 'w')\n"
    run = python_run(source, tmp_path / "data")
    uid, gid, groups = run["stdout"].split(" ", 2)
    assert int(uid) >= 30000 and uid == gid and groups.strip() == "[]"
    assert run["status"] == "RE" and "PermissionError" in run["stderr"]


def test_memory_limit_is_an_allocation_failure(tmp_path: Path) -> None:
    # RLIMIT_DATA makes the allocation fail (no OOM kill): RE with the runtime's message, as locally
    # without cgroups; memory_exceeded is kept for kills nobody in the harness sent.
    run = python_run("x = bytearray(400 * 2**20)\nprint(len(x))", tmp_path / "data", memory_bytes=128 * 2**20)
    assert run["status"] == "RE" and "MemoryError" in run["stderr"] and run["memory_exceeded"] is False
    ok = python_run("x = bytearray(8 * 2**20)\nprint(len(x))", tmp_path / "data", memory_bytes=128 * 2**20)
    assert ok["status"] is None and ok["memory_exceeded"] is False
    oom = python_run("import os\nos.kill(os.getpid(), 9)", tmp_path / "data")
    assert oom["status"] == "SG" and oom["memory_exceeded"] is True


def test_process_limit(tmp_path: Path) -> None:
    source = """
import subprocess
procs = []
try:
    for _ in range(40):
        procs.append(subprocess.Popen(["sleep", "5"]))
except OSError as exc:
    print("refused after", len(procs), exc.errno)
"""
    run = python_run(source, tmp_path / "data", max_processes=8)
    assert run["stdout"].startswith("refused after"), run


def test_probe_reports_this_machines_python(tmp_path: Path) -> None:
    result = call(harness.probe_request(), tmp_path / "data")
    runtimes = {rt.language: rt for rt in harness.runtimes_from_probe(result)}
    assert "python" in runtimes and runtimes["python"].binaries["python"].startswith("/")
    assert result["info"]["subreaper"] is True


def test_probe_reports_the_isolation(tmp_path: Path) -> None:
    result = call(harness.probe_request(), tmp_path / "data")
    assert result["info"]["isolation"] == ("uid" if os.geteuid() == 0 else result["info"]["isolation"])
    assert harness.isolation_from_probe(result) == result["info"]["isolation"] in harness.ISOLATIONS
    weakest = call(harness.probe_request(), tmp_path / "data", isolation="none")
    assert harness.isolation_from_probe(weakest) == weakest["info"]["isolation"] == "none"
    # An answer that does not say (an older harness) is treated as the weakest.
    assert harness.isolation_from_probe({"v": 1, "probe": [], "info": {}}) == "none"
    assert harness.isolation_from_probe({"v": 1, "probe": [], "info": {"isolation": "root"}}) == "none"


def _userns_or_skip(tmp_path: Path) -> None:
    info = call(harness.probe_request(), tmp_path / "probe", isolation="userns")["info"]
    if info["isolation"] != "userns":
        pytest.skip(f"this kernel refuses user namespaces: {info['isolation_detail']}")


NS_VIEW = """
import json, os, socket, sys
port, outside = int(sys.argv[1]), int(sys.argv[2])
seen = {"uid": os.getuid(), "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}
for name, path in (("etc", "/etc/piston-ns-test"), ("prefix", os.path.join(sys.base_prefix, "piston-ns-test")),
                   ("box", "written")):
    try:
        open(path, "w").close()
        seen[name] = "written"
    except OSError as exc:
        seen[name] = exc.errno
try:
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    seen["net"] = "connected"
except OSError:
    seen["net"] = "unreachable"
try:
    os.kill(outside, 0)  # signal 0: only asks whether the process can be reached
    seen["outside"] = "reachable"
except OSError:
    seen["outside"] = "unreachable"
print(json.dumps(seen))
"""


def test_userns_stage_sees_and_reaches_only_itself(tmp_path: Path) -> None:
    _userns_or_skip(tmp_path)
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        request = {"files": [{"name": "main.py", "content": b64(NS_VIEW)}],
                   "runs": [{"argv": [PYTHON, "main.py", str(listener.getsockname()[1]), str(os.getpid())],
                             "stdin": "", "limits": limits()}]}
        result = call(request, tmp_path / "data", isolation="userns")
    finally:
        listener.close()
    assert result["isolation"] == "userns"
    seen = json.loads(result["runs"][0]["stdout"])
    # Its init and itself; a read-only system; no network; nothing outside its pid namespace.
    assert seen["pids"] == [1, 2] and seen["uid"] != 0
    assert (seen["etc"], seen["prefix"], seen["box"]) == (errno.EROFS, errno.EROFS, "written")
    assert (seen["net"], seen["outside"]) == ("unreachable", "unreachable")


def test_userns_path_judges_as_the_uid_path(tmp_path: Path) -> None:
    """The same cases (exit codes, signals, limits, stdin, parallel runs) give the same fields."""
    _userns_or_skip(tmp_path)
    cases = [("import sys\nprint(input()[::-1]); sys.exit(3)", {}), ("import os\nos.kill(os.getpid(), 11)", {}),
             ("while True: pass", {"cpu_time_ms": 300}), ("import time\ntime.sleep(9)", {"timeout_ms": 300}),
             ("print('x' * 5000)", {"output_max_size": 100}), ("import os\nos.kill(os.getpid(), 9)", {})]
    fields = ("stdout", "stderr", "status", "message", "code", "signal", "memory_exceeded")
    for source, changes in cases:
        request = {"files": [{"name": "main.py", "content": b64(source)}],
                   "runs": [{"argv": [PYTHON, "main.py"], "stdin": "abc", "limits": limits(**changes)}] * 2}
        strong = call(request, tmp_path / "data")
        ns = call(request, tmp_path / "data", isolation="userns")
        assert ns["isolation"] == "userns"
        assert [[r[f] for f in fields] for r in ns["runs"]] == [[r[f] for f in fields] for r in strong["runs"]]


def test_rendered_code_builds_commands_and_runs(tmp_path: Path) -> None:
    """The backend's request builder + the exact cell it sends, end to end."""
    lim = Limits(timeout_ms=5000, cpu_time_ms=5000, memory_bytes=-1, output_max_size=4096, max_processes=64,
                 max_open_files=256, max_file_size=10**6)
    program = Program("python", "3", (SourceFile("main.py", b"import sys\nprint(input(), sys.argv[1:])"),), lim)
    runtime = Runtime("python", "3.0.0", (), None, False, {"python": PYTHON})
    specs = [RunSpec("a\n", ("1",), lim), RunSpec("b\n", (), lim)]
    result = call(harness.build_request(program, runtime, specs), tmp_path / "data", via_code=True)
    compile_stage, runs = harness.stages(result, 2)
    assert compile_stage is None
    assert [r.stdout for r in runs] == ["a ['1']\n", "b []\n"]
    assert harness.budget_s(harness.build_request(program, runtime, specs)) > 10


def test_a_kernel_that_ran_an_older_harness(tmp_path: Path) -> None:
    """The kernel-wide state outlives harness versions: one an older harness left is completed."""
    old_state = ("import sys, types\nm = types.ModuleType('__piston_session_state__')\n"
                 "m.baseline, m.uids, m.subreaper, m.can_drop = None, [], False, None\nsys.modules[m.__name__] = m\n")
    request = {"v": 1, "nonce": "older", "data_dir": str(tmp_path), "files": [{"name": "main.py", "content": b64("print(2)")}],
               "runs": [{"argv": [PYTHON, "main.py"], "stdin": "", "limits": limits()}]}
    proc = subprocess.run([sys.executable, "-c", old_state + harness.render_code(harness.encode(request))],
                          capture_output=True, text=True, timeout=120, check=True)
    result = harness.parse_reply(proc.stdout, "older").result
    assert result is not None and result["runs"][0]["stdout"] == "2\n" and result["isolation"] in harness.ISOLATIONS


def test_guard_puts_the_kernel_dirs_back(tmp_path: Path) -> None:
    """The "none" path's snapshot: new entries go, changed small top-level files and dot files come
    back from their copies, a changed .pyc goes, any other change is counted as tainted."""
    site, home = tmp_path / "site-packages", tmp_path / "home"
    (site / "pkg" / "__pycache__").mkdir(parents=True)
    home.mkdir()
    files = {site / "a.pth": "import os\n", site / "pkg" / "mod.py": "x = 1\n",
             site / "pkg" / "__pycache__" / "mod.cpython-311.pyc": "compiled", home / ".bashrc": "alias ll=ls\n",
             home / ".profile": "PATH=$PATH\n"}
    for path, text in files.items():
        path.write_text(text)
    guard = Guard(str(tmp_path / "data"), roots=[(str(site), True), (str(home), False)])
    with open(site / "a.pth", "a") as f:
        f.write("import evil\n")
    (site / "b.pth").write_text("import evil\n")
    (site / "sitecustomize.py").write_text("import evil\n")
    (site / "pkg" / "evil.py").write_text("import evil\n")
    (site / "pkg" / "mod.py").write_text("import evil\n")
    (site / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_text("evil")
    (home / ".bashrc").write_text("evil\n")
    (home / ".profile").unlink()
    (home / ".local" / "lib").mkdir(parents=True)
    fixed, tainted = guard.restore()
    assert (site / "a.pth").read_text() == "import os\n" and (home / ".bashrc").read_text() == "alias ll=ls\n"
    assert (home / ".profile").read_text() == "PATH=$PATH\n"
    for gone in ("b.pth", "sitecustomize.py", "pkg/evil.py", "pkg/__pycache__/mod.cpython-311.pyc"):
        assert not (site / gone).exists(), gone
    assert not (home / ".local").exists()
    # pkg/mod.py had no copy (not at the top): it stays changed, and the session says so from now on.
    assert (fixed, tainted) == (8, 1)  # 4 new entries, 3 files put back, 1 .pyc
    assert guard.restore() == (0, 1)


def test_judged_runs_stop_at_the_first_failure(tmp_path: Path) -> None:
    runs = [{"argv": [PYTHON, "main.py"], "stdin": str(i), "expected": want, "limits": limits()}
            for i, want in ((1, "1\n"), (2, "4  \n\n"), (3, "10"), (4, "16"))]
    request = {"files": [{"name": "main.py", "content": b64("print(int(input()) ** 2)")}], "runs": runs,
               "match": {"mode": "lines", "stop_on_first_failure": True}}
    result = call(request, tmp_path / "data")
    assert [(r["stdout"], r["matched"]) for r in result["runs"]] == [("1\n", True), ("4\n", True), ("9\n", False)]
    request["match"] = {"mode": "tokens", "stop_on_first_failure": False}
    assert [r["matched"] for r in call(request, tmp_path / "data")["runs"]] == [True, True, False, True]


def test_parse_reply_rejects_foreign_output() -> None:
    with pytest.raises(harness.HarnessError):
        harness.parse_reply("__PISTON__other {}\n", "mine")
    with pytest.raises(harness.HarnessError):
        harness.parse_reply("__PISTON__n1 @../../etc/passwd\n", "n1")
    with pytest.raises(harness.HarnessError, match="boom"):
        harness.parse_reply('__PISTON__n1 {"v": 1, "error": "boom"}\n', "n1")
    assert harness.parse_reply('noise\n__PISTON__n1 {"v": 1, "runs": []}\n', "n1").result == {"v": 1, "runs": []}


def test_probe_request_covers_every_language() -> None:
    request = harness.probe_request()
    assert [item["language"] for item in request["probe"]] == [spec.language for spec in LANGUAGES]


@pytest.mark.parametrize("case", list(itertools.product(
    [None, 0, 3 << 8, signal.SIGSEGV, signal.SIGKILL, signal.SIGXCPU],  # wait status
    [None, 100, 2500],  # cpu ms
    [False, True],  # timed out (backstop)
    [None, "cpu", "wall"],  # killed by the reaper
    [None, "stdout", "stderr"],  # overflow
)))
def test_judge_matches_the_local_executor(case: tuple[Any, ...]) -> None:
    """Same outcome in, same Piston fields out: both executors derive the status through backend/runrules.py.

    One outcome (the fields ``runrules.collect`` returns) goes to the local ``to_stage`` and to the
    harness's ``derive_status``; only what each executor adds (how it learns of an OOM kill) may differ.
    """
    status, cpu_ms, timed_out, killed_by, overflow = case
    lim = Limits(timeout_ms=3000, cpu_time_ms=1000, memory_bytes=-1, output_max_size=100, max_processes=8,
                 max_open_files=64, max_file_size=10)
    cpu_us = None if cpu_ms is None else cpu_ms * 1000
    # A SIGKILL nobody in the sandbox sent: the local cgroup would have seen an OOM kill.
    oom = status == signal.SIGKILL and not killed_by and not timed_out and not overflow
    outcome = {"stdout": b"o", "stderr": b"e", "output": b"oe", "wait_status": status, "cpu_us": cpu_us,
               "maxrss_kb": None if cpu_us is None else 10, "wall_us": 5000, "timed_out": timed_out,
               "killed_by": killed_by, "overflow": overflow, "sandbox_error": "boom"}
    local = to_stage(Outcome(**outcome), lim, peak_memory=None, oom_killed=oom)
    ours = derive_status(outcome, {**LIMITS, "cpu_time_ms": 1000, "timeout_ms": 3000})
    assert ours == {**local.to_json(), "memory_exceeded": local.memory_exceeded}
