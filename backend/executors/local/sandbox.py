"""One sandbox process: spawned ahead of time, given one command, read with capped output.

The process chain is ``piston-launch outer`` (join the slot's cgroups, drop to the
slot's uid) -> ``bwrap`` (namespaces, read-only system, private /tmp) ->
``piston-launch inner`` (waits for the job on a pipe, applies rlimits, forks the
program and reports its exact rusage). Spawning it before the request arrives
keeps the ~8 ms of namespace and cgroup set-up off the request's path.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from backend import runrules
from backend.executors.local.cgroups import SlotCgroup

# System paths bound read-only when they exist: the loader cache (without it every
# library lookup walks the default paths) and what the JDK reads from /etc. Each bind
# is a mount per sandbox, so the list stays short.
ETC_PATHS = ("/etc/ld.so.cache", "/etc/alternatives")
NETWORK_ETC_PATHS = ("/etc/resolv.conf", "/etc/hosts", "/etc/ssl/certs")
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
# The whole environment a submission gets: nothing of the service's reaches it.
SANDBOX_ENV = {"PATH": SANDBOX_PATH, "HOME": "/tmp", "LANG": "C.UTF-8", "TMPDIR": "/tmp", "GOCACHE": "/tmp/.gocache"}


@dataclass(frozen=True)
class SandboxPlan:
    """How sandboxes are built here; chosen once at start by the probe."""

    launcher: str
    bwrap: str | None  # None: no namespaces
    uid_separation: bool
    network: bool
    tmp_size: int
    # Service-owned directories outside /usr that submissions read (precompiled headers).
    ro_binds: tuple[str, ...] = ()

    def etc_paths(self) -> list[str]:
        extra = [str(p) for p in Path("/etc").glob("java-*") if p.is_dir()]
        return [p for p in (*ETC_PATHS, *extra) if os.path.exists(p)]


@dataclass
class Slot:
    """A sandbox slot: its uid, directories and cgroups. One job at a time."""

    index: int
    uid: int | None
    root: Path
    cgroup: SlotCgroup | None

    @property
    def box(self) -> Path:
        return self.root / "box"

    @property
    def io(self) -> Path:
        return self.root / "io"


@dataclass
class Outcome:
    """What came out of one command, before its status is derived into a StageResult."""

    stdout: bytes = b""
    stderr: bytes = b""
    output: bytes = b""
    wait_status: int | None = None
    cpu_us: int | None = None
    maxrss_kb: int | None = None
    wall_us: int | None = None
    timed_out: bool = False  # the server's backstop deadline fired
    killed_by: str | None = None  # "cpu" | "wall": the reaper enforced a limit
    overflow: str | None = None  # "stdout" | "stderr"
    sandbox_error: str | None = None


def sandbox_argv(plan: SandboxPlan, slot: Slot, meta_fd: int, ctrl_fd: int) -> list[str]:
    argv: list[str] = [plan.launcher, "outer"]
    if slot.cgroup is not None:
        for procs in slot.cgroup.procs_files:
            argv += ["-c", procs]
    if plan.uid_separation and slot.uid is not None:
        argv += ["-u", str(slot.uid), "-g", str(slot.uid)]
    argv.append("--")
    inner = [plan.launcher, "inner", "-m", str(meta_fd), "-w", str(ctrl_fd)]
    if plan.bwrap is None:
        return argv + inner
    argv += [
        plan.bwrap, "--unshare-all", "--unshare-user", "--disable-userns",
        "--die-with-parent", "--new-session", "--clearenv", "--cap-drop", "ALL",
        "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/sbin", "/sbin",
    ]
    if plan.network:
        argv.insert(argv.index("--unshare-all") + 1, "--share-net")
        for path in NETWORK_ETC_PATHS:
            argv += ["--ro-bind-try", path, path]
    for path in (*plan.etc_paths(), *plan.ro_binds):
        argv += ["--ro-bind", path, path]
    argv += [
        "--proc", "/proc", "--dev", "/dev",
        "--size", str(plan.tmp_size), "--tmpfs", "/tmp",
        "--bind", str(slot.box), "/box",
        "--ro-bind", str(slot.io), "/.io",
        "--ro-bind", plan.launcher, "/.launch",
        "--chdir", "/box",
        *[arg for key, value in SANDBOX_ENV.items() for arg in ("--setenv", key, value)],
        "--",
    ]
    return [*argv, "/.launch", *inner[1:]]


class Sandbox:
    """A spawned sandbox waiting for its single command."""

    def __init__(self, plan: SandboxPlan, slot: Slot) -> None:
        self.plan = plan
        self.slot = slot
        ctrl_r, self._ctrl_w = os.pipe()
        self._meta_r, meta_w = os.pipe()
        self._out_r, out_w = os.pipe()
        self._err_r, err_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                sandbox_argv(plan, slot, meta_w, ctrl_r),
                stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w,
                pass_fds=(meta_w, ctrl_r), close_fds=True, start_new_session=True,
                env=SANDBOX_ENV, cwd=str(slot.box),
            )
        finally:
            for fd in (ctrl_r, meta_w, out_w, err_w):
                os.close(fd)
        self._started = 0.0
        self.finished = False

    def start(self, argv: list[str], *, stdin_path: str | None, rlimits: dict[str, tuple[int | str, int | str]],
              cpu_ms: int = 0, wall_ms: int = 0) -> None:
        tokens: list[str] = ["-c", str(cpu_ms), "-t", str(wall_ms)]
        if stdin_path is not None:
            tokens += ["-i", stdin_path]
        for spec in runrules.rlimit_specs(rlimits):
            tokens += ["-r", spec]
        tokens += ["--", *argv]
        payload = "\0".join(tokens).encode()
        self._started = time.monotonic()
        try:
            os.write(self._ctrl_w, payload)
        except BrokenPipeError:
            pass  # the sandbox died before starting; collect() reports it
        finally:
            os.close(self._ctrl_w)
            self._ctrl_w = -1

    def collect(self, *, timeout_ms: int, output_max_size: int,
                on_output: Callable[[str, bytes], None] | None = None) -> Outcome:
        """Read the command's output to its end; ``on_output`` sees each chunk as it arrives (/connect)."""
        fields = runrules.collect(self._out_r, self._err_r, self._meta_r, output_max_size=output_max_size,
                                  timeout_ms=timeout_ms, started=self._started, kill=self.destroy,
                                  on_output=on_output)
        outcome = Outcome(**fields)
        self.finished = outcome.wait_status is not None and not outcome.timed_out and not outcome.overflow
        return outcome

    def destroy(self, *, finished: bool = False) -> None:
        """Kill everything the sandbox holds and reap it. Idempotent.

        ``finished``: the command ended by itself, so bwrap is exiting on its own; letting it
        reap its namespace first avoids orphaned zombies that only the host's init would reap.
        """
        if finished:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=0.2)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        # Killing bwrap takes its pid namespace down with it (--die-with-parent); reap it first
        # so that the cgroup sweep below rarely finds anything left to wait for.
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.slot.cgroup is not None:
            self.slot.cgroup.kill_all()
        elif self.plan.bwrap is None and self.plan.uid_separation and self.slot.uid is not None:
            subprocess.run([self.plan.launcher, "killall", "-u", str(self.slot.uid)], check=False, timeout=10)
        self.close()

    def close(self) -> None:
        for name in ("_ctrl_w", "_meta_r", "_out_r", "_err_r"):
            fd = getattr(self, name)
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, -1)

