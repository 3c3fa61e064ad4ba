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
import shutil
import signal
import stat
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
    # A root-owned /dev template (make_dev_dir) bound whole, or None for bwrap's --dev.
    dev_dir: str | None = None
    # Each slot keeps a network namespace (open_netns) instead of bwrap making one per stage.
    keep_netns: bool = False

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
    # The slot's own network namespace (loopback only), reused while provably as new.
    netns_fd: int | None = None

    @property
    def netns_reference(self) -> Path:
        """Copies of the namespace's counters when it was new (see open_netns)."""
        return self.root.parent / f"netns-{self.index}"

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
    if slot.netns_fd is not None:
        argv += ["-n", str(slot.netns_fd), "-N", str(slot.netns_reference)]
    if plan.uid_separation and slot.uid is not None:
        argv += ["-u", str(slot.uid), "-g", str(slot.uid)]
    argv.append("--")
    inner = [plan.launcher, "inner", "-m", str(meta_fd), "-w", str(ctrl_fd)]
    if plan.bwrap is None:
        return argv + inner
    argv += [
        # --as-pid-1: the inner launcher is the namespace's init (it reaps orphans), saving
        # bwrap's own reaper process per stage; signals from the program cannot reach it.
        plan.bwrap, "--unshare-all", "--as-pid-1", "--unshare-user", "--disable-userns",
        "--die-with-parent", "--new-session", "--clearenv", "--cap-drop", "ALL",
        "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/sbin", "/sbin",
    ]
    if plan.network or slot.netns_fd is not None:
        # The launcher has joined the slot's namespace (or a fresh one) already.
        argv.insert(argv.index("--unshare-all") + 1, "--share-net")
    if plan.network:
        for path in NETWORK_ETC_PATHS:
            argv += ["--ro-bind-try", path, path]
    for path in (*plan.etc_paths(), *plan.ro_binds):
        argv += ["--ro-bind", path, path]
    argv += [
        "--proc", "/proc",
        # bwrap's --dev bind-mounts six device nodes one by one, each followed by a full read of
        # /proc/self/mountinfo: an eighth of bwrap's CPU time. One bind of a template does the same.
        *(["--dev-bind", plan.dev_dir, "/dev", "--size", str(plan.tmp_size), "--tmpfs", "/dev/shm"]
          if plan.dev_dir else ["--dev", "/dev"]),
        "--size", str(plan.tmp_size), "--tmpfs", "/tmp",
        "--bind", str(slot.box), "/box",
        "--ro-bind", str(slot.io), "/.io",
        "--ro-bind", plan.launcher, "/.launch",
        "--chdir", "/box",
        *[arg for key, value in SANDBOX_ENV.items() for arg in ("--setenv", key, value)],
        "--",
    ]
    return [*argv, "/.launch", *inner[1:]]


NETNS_COUNTERS = ("dev", "snmp", "snmp6", "netstat")  # launcher.c's COUNTERS


def open_netns(launcher: str, reference: Path) -> int:
    """A new network namespace with only its loopback up, held by the returned descriptor.

    Creating and destroying a namespace per stage costs about a seventh of bwrap's CPU time
    and is serialised in the kernel; a slot keeps one instead. The launcher joins it only if
    no socket is left in it (not even in TIME_WAIT) and its counters still equal the copies
    written to ``reference`` here, so a run cannot even learn that an earlier one used the
    network; otherwise that run gets a fresh namespace.
    """
    holder = subprocess.Popen([launcher, "netns"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=SANDBOX_ENV)
    try:
        assert holder.stdout is not None and holder.stderr is not None
        if holder.stdout.read(1) != b"1":
            raise OSError(f"making a network namespace failed: {holder.stderr.read().decode()[:200]}")
        fd = os.open(f"/proc/{holder.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        reference.mkdir(mode=0o700, exist_ok=True)
        for name in NETNS_COUNTERS:
            (reference / name).write_bytes(Path(f"/proc/{holder.pid}/net/{name}").read_bytes())
        return fd
    finally:
        holder.communicate(timeout=10)


DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2", "core": "/proc/kcore"}


def make_dev_dir(path: Path) -> Path:
    """The /dev every sandbox binds: the host's harmless device nodes, bwrap's links, an empty
    shm (a fresh tmpfs per sandbox mounts over it). Root-owned and read-only to submissions, so
    a run can leave nothing in it for the next; no /dev/pts (as in isolate)."""
    if dev_dir_intact(path):
        return path  # another worker made it; sandboxes may have it bound right now
    tmp = path.with_name(path.name + f".new-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o755)
    for name in DEV_NODES:
        st = os.stat(f"/dev/{name}")
        os.mknod(tmp / name, 0o666 | stat.S_IFCHR, st.st_rdev)
        os.chmod(tmp / name, 0o666)
    for name, target in DEV_LINKS.items():
        os.symlink(target, tmp / name)
    (tmp / "shm").mkdir(mode=0o755)
    os.chmod(tmp, 0o755)
    shutil.rmtree(path, ignore_errors=True)
    os.rename(tmp, path)
    return path


def dev_dir_intact(path: Path) -> bool:
    """Exactly the template: root's, nothing added, changed or left in shm."""
    try:
        root = os.lstat(path)
        if root.st_uid != 0 or stat.S_IMODE(root.st_mode) != 0o755 or not stat.S_ISDIR(root.st_mode):
            return False
        if sorted(os.listdir(path)) != sorted([*DEV_NODES, *DEV_LINKS, "shm"]) or os.listdir(path / "shm"):
            return False
        for name in DEV_NODES:
            st, host = os.lstat(path / name), os.stat(f"/dev/{name}")
            if not stat.S_ISCHR(st.st_mode) or st.st_rdev != host.st_rdev or st.st_uid != 0 \
                    or stat.S_IMODE(st.st_mode) != 0o666:
                return False
        return all(os.readlink(path / name) == target for name, target in DEV_LINKS.items())
    except OSError:
        return False


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
                pass_fds=(meta_w, ctrl_r, *([slot.netns_fd] if slot.netns_fd is not None else [])),
                close_fds=True, start_new_session=True,
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

