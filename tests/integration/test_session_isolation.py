"""Nothing one submission writes or starts reaches the next one on the same session (issue 10).

A long-lived Python process stands in for the session's Jupyter kernel: it executes the
cells the backend renders (``harness.render_code``) one after another in one interpreter, so
the harness keeps its state across executions exactly as in a kernel. It runs:

- as root (the emulator's ``host`` profile): isolation ``uid``;
- as an unprivileged user with a venv of its own under its home dir (a PythonLTS session runs
  as ``ubuntu`` with its Jupyter venv under /home/ubuntu): isolation ``userns``, and, with the
  namespaces refused, ``none``.

The hostile submission plants ``sitecustomize.py``, ``usercustomize.py`` and a ``.pth`` file in
every writable dir on its ``sys.path``, in the kernel's user site and home dir, leaves files in
/tmp and the data dir and starts a ``setsid`` daemon. The submissions after it must see
exactly what the one before it saw.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.session_kernel import HOSTILE, SYSTEM_PYTHON, UNPRIVILEGED_UID, Kernel, data_dir_of, make_user_home
from tests.unit.test_azure_harness import alive_with

LIMITS = {"timeout_ms": 10_000, "cpu_time_ms": 10_000, "memory_bytes": -1, "output_max_size": 65536,
          "max_processes": 64, "max_open_files": 256, "max_file_size": 10_000_000}
# What a later submission sees: its sys.path, what site imported, any planted file, the data dir.
OBSERVE = """
import json, os, sys
targets = json.loads(sys.stdin.read())
print(json.dumps({
    "path": sys.path[1:],  # [0]: the box, another one each time
    "customize": sorted(m for m in sys.modules if "customize" in m or "planted" in m),
    "planted": os.environ.get("PLANTED"),
    "exists": sorted(p for p in targets["files"] if os.path.lexists(p)),
    "tmp": sorted(n for n in os.listdir("/tmp") if n.startswith("leak-")),
}))
"""

PLANT = HOSTILE + """
import json, site, sys
targets = json.loads(sys.stdin.read())
planted = plant([p for p in sys.path if p and os.path.isdir(p)] + targets["dirs"] + [site.getusersitepackages()])
planted += leave(targets["files"])
daemon(targets["marker"])
try:
    key = open(targets["connection_file"]).read()
    if key:
        planted.append("key: " + key)
except OSError:
    pass
try:
    import socket
    socket.socket(socket.AF_UNIX).connect(targets["socket"])
    planted.append("connected")
except OSError:
    pass
if targets["kernel_pid"]:
    try:
        os.kill(targets["kernel_pid"], 9)  # the kernel
        planted.append("kernel")
    except OSError:
        pass
print(json.dumps(planted))
"""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _run(kernel: Kernel, python: str, source: str, stdin: str) -> dict[str, Any]:
    request = {"files": [{"name": "main.py", "content": _b64(source)}],
               "runs": [{"argv": [python, "main.py"], "stdin": stdin, "limits": LIMITS}]}
    return kernel.call(request)


@pytest.fixture(scope="module")
def user_home() -> Iterator[Path]:
    """An unprivileged user's home with a venv of its own, as in a PythonLTS session."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to play an unprivileged kernel")
    home = make_user_home()
    yield home
    shutil.rmtree(home.parent, ignore_errors=True)


@pytest.fixture(params=["uid", "userns", "none"])
def kernel(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Kernel, str, Path, str]]:
    """(kernel, python the submissions run, the kernel's home, isolation expected)."""
    mode = request.param
    if os.geteuid() != 0 or not os.access("/run", os.W_OK):
        pytest.skip("needs root: the kernels' run dirs are in /run")
    # Where the kernel keeps its socket and connection file: /run, as the emulator's /run/jupyter.
    run_dir = Path(tempfile.mkdtemp(prefix="piston-test-kernel-", dir="/run"))
    run_dir.chmod(0o755)
    if mode == "uid":
        data = tmp_path / "data"
        data.mkdir()
        k = Kernel(sys.executable, data, env={"HOME": str(Path.home()), "PISTON_TEST_RUN_DIR": str(run_dir)})
        python, home = SYSTEM_PYTHON, Path.home()
    else:
        home = request.getfixturevalue("user_home")
        data = data_dir_of(UNPRIVILEGED_UID, home)
        os.chown(run_dir, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
        env = {"HOME": str(home), "PISTON_TEST_RUN_DIR": str(run_dir)}
        if mode == "none":
            env["PISTON_HARNESS_ISOLATION"] = "none"  # as where the kernel may not create namespaces
        python = str(home / ".venv" / "bin" / "python")
        k = Kernel(python, data, user=UNPRIVILEGED_UID, env=env)
    k.run_dir = run_dir
    try:
        yield k, python, home, mode
    finally:
        k.close()
        shutil.rmtree(run_dir, ignore_errors=True)


def test_a_hostile_submission_leaves_the_next_ones_unchanged(kernel: tuple[Kernel, str, Path, str]) -> None:
    k, python, home, mode = kernel
    marker = f"{1000 + secrets.randbelow(9000)}.{secrets.randbelow(10**6)}"
    leak = f"leak-{secrets.token_hex(4)}"
    user_site = subprocess.run([python, "-c", "import site; print(site.getusersitepackages())"], check=True,
                               capture_output=True, text=True, env={"HOME": str(home)}).stdout.strip()
    files = [f"/tmp/{leak}", str(k.data / leak), str(home / leak), f"/dev/shm/{leak}"]
    # Only the "none" path cannot keep a submission from killing the kernel: not tried there.
    targets = {"dirs": [str(home), user_site], "files": files, "marker": marker,
               "kernel_pid": None if mode == "none" else k.proc.pid,
               "connection_file": str(k.run_dir / "kernel.json"), "socket": str(k.run_dir / "k-shell")}
    plants = [os.path.join(d, n) for d in (str(home), user_site) for n in ("sitecustomize.py", "usercustomize.py",
                                                                           "zz-planted.pth")]
    observe_stdin = json.dumps({**targets, "files": files + plants})
    try:
        before = _run(k, python, OBSERVE, observe_stdin)
        assert before["isolation"] == mode, before.get("isolation_detail")
        seen_before = json.loads(before["runs"][0]["stdout"])
        assert seen_before["planted"] is None and seen_before["exists"] == [] and seen_before["tmp"] == []

        attack = _run(k, python, PLANT, json.dumps(targets))
        planted = json.loads(attack["runs"][0]["stdout"])
        if mode == "none":
            # Running as the kernel's own user with its file system, the plants land (and are undone).
            assert any(p.endswith(".pth") for p in planted) and str(k.data / leak) in planted, attack
            # What "none" cannot stop: the kernel's own user reads its key and reaches its sockets.
            assert "connected" in planted and 'key: {"key": "the-kernel-key"}' in planted
            assert attack["cleanup"]["restored"] > 0
        else:
            # Out of reach: the kernel (its pid, key and sockets), and every place that outlives the
            # execution but the scratch dirs.
            scratch = ("/tmp/", "/dev/shm/", str(k.data) + "/")
            assert not [p for p in planted if not p.startswith(scratch)], planted
        assert not alive_with(f"sleep {marker}"), "the setsid daemon outlived its execution"

        for _ in range(2):
            after = _run(k, python, OBSERVE, observe_stdin)
            assert json.loads(after["runs"][0]["stdout"]) == seen_before, after
        for path in files + plants:
            assert not os.path.lexists(path), path
        assert after["cleanup"]["tainted"] == 0
    finally:
        for pid in alive_with(f"sleep {marker}"):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("kernel", ["none"], indirect=True)
def test_last_use_skips_the_snapshot_and_a_later_use_says_so(kernel: tuple[Kernel, str, Path, str]) -> None:
    """``last_use`` (the backend's word that no later submission runs there) spares the snapshot's walk;
    a session used again anyway reports itself tainted."""
    k, python, home, _ = kernel
    targets = {"dirs": [str(home)], "files": [], "marker": "1.5", "kernel_pid": None,
               "connection_file": "/nonexistent", "socket": "/nonexistent"}
    request = {"files": [{"name": "main.py", "content": _b64(PLANT)}], "last_use": True,
               "runs": [{"argv": [python, "main.py"], "stdin": json.dumps(targets), "limits": LIMITS}]}
    try:
        first = k.call(request)
        # Nothing put back, and the session says it now holds what it could not undo.
        assert first["cleanup"]["restored"] == 0 and first["cleanup"]["tainted"] == 1
        assert str(home / "zz-planted.pth") in json.loads(first["runs"][0]["stdout"])
        later = _run(k, python, OBSERVE, json.dumps({**targets, "files": [str(home / "zz-planted.pth")]}))
        assert later["cleanup"]["tainted"] >= 1
    finally:
        for name in ("sitecustomize.py", "usercustomize.py", "zz-planted.pth", ".bashrc"):
            (home / name).unlink(missing_ok=True)
