"""A stand-in for a session's Jupyter kernel, for tests and benchmarks of the session harness.

One interpreter executes the cells the backend renders (``harness.render_code``) one after
another, so the harness keeps its state across executions exactly as in a kernel. As root it
can play an unprivileged kernel (``user``) with a venv of its own (``make_user_home``), as a
PythonLTS session runs as ``ubuntu`` with its Jupyter venv under /home/ubuntu.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from backend.executors.azure import harness

SYSTEM_PYTHON = "/usr/bin/python3"
# The hostile part both isolation suites share, prepended to their submissions: ``plant(dirs)``
# puts a sitecustomize, a usercustomize and a .pth file (each setting $PLANTED) and a .bashrc in
# every dir it can; ``leave(paths)`` writes each file it can; ``daemon(marker)`` starts a setsid
# ``sleep marker``. Each returns what it managed.
HOSTILE = """
import os, subprocess
PLANTS = (("sitecustomize.py", "import os\\nos.environ['PLANTED'] = 'sitecustomize'\\n"),
          ("usercustomize.py", "import os\\nos.environ['PLANTED'] = 'usercustomize'\\n"),
          ("zz-planted.pth", "import os; os.environ['PLANTED'] = 'pth'\\n"), (".bashrc", "echo planted\\n"))
def _write(path, text, mode):
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, mode) as f:
            f.write(text)
        return [path]
    except OSError:
        return []
def plant(dirs):
    return [p for d in dirs for name, text in PLANTS for p in _write(os.path.join(d, name), text, "a")]
def leave(paths):
    return [p for path in paths for p in _write(path, "left behind", "w")]
def daemon(marker):
    subprocess.Popen(["sleep", marker], start_new_session=True, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
"""
UNPRIVILEGED_UID = 61499  # below this worktree set's slot uids, above the harness's 30000..60000
# With PISTON_TEST_RUN_DIR, the stand-in also holds what a Jupyter kernel on the ipc transport does
# (the emulator's pythonlts kernels): a listening unix socket and a connection file, both its own.
DRIVER = """
import base64, os, socket, sys
run_dir = os.environ.get("PISTON_TEST_RUN_DIR")
if run_dir:
    shell = socket.socket(socket.AF_UNIX)
    shell.bind(os.path.join(run_dir, "k-shell"))
    shell.listen()
    fd = os.open(os.path.join(run_dir, "kernel.json"), os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b'{"key": "the-kernel-key"}')
    os.close(fd)
namespace = {"__name__": "__main__"}
for line in sys.stdin:
    exec(base64.b64decode(line).decode(), namespace)
    sys.stdout.write("\\n__CELL_DONE__\\n")
    sys.stdout.flush()
"""


class Kernel:
    """A stand-in Jupyter kernel: one interpreter that executes the backend's cells in turn."""

    def __init__(self, python: str, data: Path, *, user: int | None = None, env: dict[str, str] | None = None) -> None:
        argv = [python, "-c", DRIVER]
        if user is not None:
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
        self.data = data
        self.run_dir: Path | None = None  # where it keeps its socket and connection file, if it does
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **(env or {})}, cwd=str(data))

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        request = {"v": 1, "nonce": secrets.token_hex(4), **request, "data_dir": str(self.data)}
        code = harness.render_code(harness.encode(request))
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(base64.b64encode(code.encode()).decode() + "\n")
        self.proc.stdin.flush()
        lines = []
        while (line := self.proc.stdout.readline()) != "__CELL_DONE__\n":
            assert line, f"the kernel died: {''.join(lines)}"
            lines.append(line)
        reply = harness.parse_reply("".join(lines), request["nonce"])
        if reply.result is not None:
            return reply.result
        path = self.data / str(reply.result_file)
        result = harness.decode_result(path.read_bytes())
        path.unlink()
        return result

    def close(self) -> None:
        self.proc.kill()
        self.proc.communicate()


def as_user(uid: int, *argv: str, home: Path) -> None:
    subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv], check=True,
                   env={"PATH": "/usr/bin:/bin", "HOME": str(home)}, capture_output=True, timeout=120)



def make_user_home(uid: int = UNPRIVILEGED_UID) -> Path:
    """A fresh home dir of ``uid`` (below a new dir in /tmp: pytest's own temp dir is root's alone)
    with a venv of its own at ``.venv``. The caller removes ``home.parent``."""
    base = Path(tempfile.mkdtemp(prefix="piston-isolation-"))
    base.chmod(0o755)
    home = base / "home"
    home.mkdir()
    os.chown(home, uid, uid)
    as_user(uid, SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(home / ".venv"), home=home)
    return home


def data_dir_of(uid: int, home: Path) -> Path:
    """A data dir (the session's /mnt/data) owned by ``uid``, next to its home."""
    data = Path(tempfile.mkdtemp(prefix="data-", dir=home.parent))
    os.chown(data, uid, uid)
    return data
