"""Custom-container sessions: each one a process of the session app (this project's service in
``SERVICE_ROLE=session``), started the way the image starts it, on its own port.

What a real custom-container session is [DOC sessions-custom-container.md, session-pool.md]: a
Hyper-V-isolated instance of the image, its HTTP server on ``ingress.targetPort``, no egress, and
no identity unless ``managedIdentitySettings`` says ``Main``. What this process model gives, and
what it cannot:

- environment: a minimal one (PATH, HOME, LANG and the session's own settings), so no secret of the
  emulator or of the backend that launched it reaches the session;
- its own state directory, box directory, cgroup name and a block of sandbox uids >= 64000, claimed
  machine-wide with a lock file, so no two sessions (of any emulator here) share a uid;
- destroyed whole: the process group, every process left under the session's uids, and its mounts;
  all of them when the emulator exits normally (not if it is SIGKILLed: nothing survives to clean up);
- NOT a network boundary: the session process shares the host's network namespace and could reach
  the backend on 127.0.0.1. Submissions inside it are cut off by the session's own sandbox
  (SANDBOX_NETWORK=false); the service process itself makes no outbound calls. In Azure the pool's
  egress setting is the wall; the emulator cannot enforce it.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import requests

log = logging.getLogger(__name__)

UID_BASE = 64000  # above the worktrees' 60500..63500 and the harness's 30000..60000
# uids per session: its sandbox slots take base + 0..SESSION_SLOTS-1 and its start-up probe base + 4095
# (backend/executors/local/probe.py), so a block spans all of them.
UID_BLOCK = 4096
MAX_BLOCKS = 1024
SESSION_SLOTS = 4
UID_LOCK_DIR = Path("/tmp/aca-sessions-emulator-uids")
# The sandbox's launcher and boxes must be reachable by the sandbox uids, which a data root under a
# 0700 home is not: each session's sandbox directories live here instead (removed with the session).
SANDBOX_ROOT = Path("/tmp/aca-sessions-emulator-boxes")
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MNT_DETACH = 2


class ContainerStartError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class UidBlock:
    """A block of sandbox uids held for a session's lifetime (flock on a file per block)."""

    def __init__(self) -> None:
        UID_LOCK_DIR.mkdir(parents=True, exist_ok=True)
        for index in range(MAX_BLOCKS):
            fd = os.open(UID_LOCK_DIR / f"block-{index}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self.index = index
            self.base = UID_BASE + index * UID_BLOCK
            self._fd: int | None = fd
            return
        raise ContainerStartError(f"no free sandbox uid block in {UID_LOCK_DIR}")

    def owns(self, uid: int) -> bool:
        return self.base <= uid < self.base + UID_BLOCK

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class ContainerProcess:
    """One session's container: ``start`` waits for its /health; ``shutdown`` leaves nothing behind."""

    def __init__(self, *, app_dir: Path, python: str, data_dir: Path, extra_env: Mapping[str, str]) -> None:
        self.data_dir = data_dir
        self.app_dir = app_dir
        self.guid = uuid.uuid4().hex
        self._python = python
        self._extra_env = dict(extra_env)
        self._proc: subprocess.Popen[bytes] | None = None
        self._uids: UidBlock | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.port = 0
        self.sandbox_dir = SANDBOX_ROOT / f"{os.getpid()}-{data_dir.name}"
        self.box = None  # no pythonlts image box: the container's own service holds the files

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and not self._closed

    @property
    def closed(self) -> bool:
        return self._closed

    def environment(self) -> dict[str, str]:
        assert self._uids is not None
        home = self.data_dir / "home"
        return {
            "PATH": SAFE_PATH, "HOME": str(home), "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
            "SERVICE_ROLE": "session", "HOST": "127.0.0.1", "PORT": str(self.port),
            "SANDBOX_STATE_DIR": str(self.sandbox_dir / "state"), "SANDBOX_WORK_DIR": str(self.sandbox_dir / "boxes"),
            "SANDBOX_CGROUP_NAME": f"aca-emu-{self._uids.index}", "SANDBOX_UID_BASE": str(self._uids.base),
            "MAX_CONCURRENT_JOBS": str(SESSION_SLOTS), "WEB_WORKERS": "1", "WEB_THREADS": "16",
            "LOG_LEVEL": "WARNING", **self._extra_env,
        }

    def start(self, timeout_s: float) -> None:
        with self._lock:
            if self._closed:
                raise ContainerStartError("the session was destroyed while starting")
            self._uids = UidBlock()
            self.port = _free_port()
            (self.data_dir / "home").mkdir(parents=True, exist_ok=True)
            for directory in (SANDBOX_ROOT, self.sandbox_dir):
                directory.mkdir(mode=0o711, exist_ok=True)
                os.chmod(directory, 0o711)
            log_file = open(self.data_dir / "service.log", "wb")  # noqa: SIM115 - handed to the child
            try:
                self._proc = subprocess.Popen(
                    [self._python, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"],
                    cwd=self.app_dir, env=self.environment(), stdin=subprocess.DEVNULL, stdout=log_file,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )
            finally:
                log_file.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise ContainerStartError(f"the session app exited at start: {self.log_tail()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise ContainerStartError(f"the session app did not answer /health within {timeout_s:g} s: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return (self.data_dir / "service.log").read_text(errors="replace")[-1500:]
        except OSError:
            return "<no log>"

    def discard(self) -> None:
        """Shut down a container that never served a session (a ready one), and remove its directory."""
        self.shutdown()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def shutdown(self, grace_s: float = 3.0) -> None:
        """Stop the app, then kill whatever is left of the session: its group, its uids, its mounts."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        if self._uids is not None:
            _kill_uids(self._uids)
            _detach_mounts(self.sandbox_dir)
            shutil.rmtree(self.sandbox_dir, ignore_errors=True)
            self._uids.release()


def _kill_uids(block: UidBlock) -> None:
    """Daemons a submission left (setsid, double fork) are in no group of ours, but under our uids."""
    for _ in range(3):
        found = 0
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            uid_line = next((line for line in status.splitlines() if line.startswith("Uid:")), "")
            uids = [int(u) for u in uid_line.split()[1:]]
            if uids and any(block.owns(u) for u in uids):
                found += 1
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(pid), signal.SIGKILL)
        if not found:
            return
        time.sleep(0.05)


def _detach_mounts(root: Path) -> None:
    """The session app mounts a tmpfs per sandbox slot; a killed app leaves them mounted."""
    prefix = str(root.resolve()) + "/"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    points = sorted({line.split()[4] for line in lines if line.split()[4].startswith(prefix)}, key=len, reverse=True)
    if not points:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for point in points:
        libc.umount2(point.encode(), MNT_DETACH)


class ContainerLauncher:
    """Starts session containers for the pool and kills every one of them at close."""

    def __init__(self, *, app_dir: str, sessions_dir: Path, extra_env: Mapping[str, str], start_timeout_s: float):
        self.app_dir = Path(app_dir).resolve()
        if not (self.app_dir / "app.py").is_file() or not (self.app_dir / "gunicorn.conf.py").is_file():
            raise ValueError(f"--session-app-dir {app_dir}: no app.py and gunicorn.conf.py there")
        venv_python = self.app_dir / ".venv" / "bin" / "python"
        self.python = str(venv_python) if venv_python.exists() else sys.executable
        self.sessions_dir = sessions_dir
        self.extra_env = dict(extra_env)
        self.start_timeout_s = start_timeout_s
        self._live: set[ContainerProcess] = set()
        self._lock = threading.Lock()
        self._closed = False

    def start(self, data_dir: Path | None) -> ContainerProcess:
        if data_dir is None:
            data_dir = self.sessions_dir / uuid.uuid4().hex
        data_dir.mkdir(parents=True, exist_ok=True)
        container = ContainerProcess(app_dir=self.app_dir, python=self.python, data_dir=data_dir,
                                     extra_env=self.extra_env)
        with self._lock:
            if self._closed:
                raise ContainerStartError("the emulator is shutting down")
            self._live = {c for c in self._live if not c.closed}  # starting ones stay: close must kill them
            self._live.add(container)
        try:
            container.start(self.start_timeout_s)
        except BaseException:
            container.shutdown(grace_s=0.5)
            raise
        return container

    def pids(self) -> list[int]:
        with self._lock:
            return sorted(c.pid for c in self._live if c.pid is not None and c.alive())

    def close(self) -> None:
        with self._lock:
            self._closed = True
            live = list(self._live)
            self._live.clear()
        threads = [threading.Thread(target=c.shutdown, daemon=True) for c in live]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
