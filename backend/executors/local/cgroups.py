"""Per-slot cgroups: an exact memory limit and peak, a process cap, and kill-all.

cgroup v2 is used when its memory controller is available; otherwise cgroup v1
(this project's dev machines are hybrid: memory and pids are bound to v1).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

V2_ROOT = Path("/sys/fs/cgroup")
V1_ROOT = Path("/sys/fs/cgroup")


class CgroupError(OSError):
    pass


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


class _Files:
    """Open-once descriptors of cgroup files: every stage reads and writes the same few
    files, and opening a cgroupfs file costs more than reading it."""

    def __init__(self) -> None:
        self._fds: dict[Path, int] = {}

    def _fd(self, path: Path) -> int:
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds[path] = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        return fd

    def write(self, path: Path, value: str) -> None:
        os.pwrite(self._fd(path), value.encode(), 0)

    def read(self, path: Path) -> str:
        return os.pread(self._fd(path), 65536, 0).decode()

    def read_int(self, path: Path) -> int | None:
        try:
            return int(self.read(path).split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def close(self) -> None:
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()


class SlotCgroup:
    """The cgroups of one sandbox slot. ``procs_files`` are what the launcher joins."""

    def __init__(self, name: str, slot: int) -> None:
        self.version = detect_version()
        leaf = f"{name}/slot-{slot}"
        if self.version == 2:
            parent = V2_ROOT / name
            parent.mkdir(exist_ok=True)
            # v2's "no internal processes" rule: controllers are enabled on the parent for its children.
            _write(parent / "cgroup.subtree_control", "+memory +pids")
            self.dirs = {"all": V2_ROOT / leaf}
        elif self.version == 1:
            self.dirs = {"memory": V1_ROOT / "memory" / leaf, "pids": V1_ROOT / "pids" / leaf}
        else:
            raise CgroupError("no usable cgroup memory controller")
        for path in self.dirs.values():
            path.mkdir(parents=True, exist_ok=True)
            if not (path / "cgroup.procs").exists():
                raise CgroupError(f"{path} is not a cgroup")
        self._files = _Files()
        self._limits: tuple[int, int] | None = None
        self._oom_baseline = 0
        self._usage_baseline = 0

    @property
    def procs_files(self) -> list[str]:
        return [str(path / "cgroup.procs") for path in self.dirs.values()]

    def _mem(self, name: str) -> Path:
        return self.dirs["all" if self.version == 2 else "memory"] / name

    def _pids(self, name: str) -> Path:
        return self.dirs["all" if self.version == 2 else "pids"] / name

    def configure(self, memory_bytes: int, max_processes: int) -> None:
        """Set the limits of the next stage and take the baselines of its peak and OOM counters."""
        f = self._files
        if self._limits != (memory_bytes, max_processes):
            if self.version == 2:
                f.write(self._mem("memory.max"), str(memory_bytes) if memory_bytes > 0 else "max")
                with contextlib.suppress(OSError):
                    f.write(self._mem("memory.swap.max"), "0")
            else:
                limit = str(memory_bytes) if memory_bytes > 0 else "-1"
                memsw = self._mem("memory.memsw.limit_in_bytes")
                if memsw.exists():
                    # memsw must stay >= the memory limit at every step, so the order depends on direction.
                    f.write(memsw, "-1")
                    f.write(self._mem("memory.limit_in_bytes"), limit)
                    f.write(memsw, limit)
                else:
                    f.write(self._mem("memory.limit_in_bytes"), limit)
            f.write(self._pids("pids.max"), str(max_processes))
            self._limits = (memory_bytes, max_processes)
        if self.version == 2:
            with contextlib.suppress(OSError):  # resettable since Linux 6.12
                f.write(self._mem("memory.peak"), "0")
        else:
            f.write(self._mem("memory.max_usage_in_bytes"), "0")
        self._oom_baseline = self.oom_kills()
        # Page cache charged by earlier stages (libraries read, files written) stays charged to
        # the slot; the peak is reported above what was already there when this stage began.
        self._usage_baseline = self._files.read_int(
            self._mem("memory.current" if self.version == 2 else "memory.usage_in_bytes")) or 0

    def peak_memory(self) -> int | None:
        peak = self._files.read_int(self._mem("memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"))
        if peak is None:
            return None
        return max(peak - self._usage_baseline, 0)

    def oom_kills(self) -> int:
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            for line in self._files.read(self._mem(name)).splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except OSError:
            pass
        return 0

    def oom_killed_since_configure(self) -> bool:
        return self.oom_kills() > self._oom_baseline

    def pids(self) -> list[int]:
        """Live processes of the slot; zombies are dead already and only wait for a reaper."""
        found: set[int] = set()
        for path in self.dirs.values():
            with contextlib.suppress(OSError):
                found.update(int(p) for p in self._files.read(path / "cgroup.procs").split())
        return sorted(pid for pid in found if not _is_zombie(pid))

    def close(self) -> None:
        self._files.close()

    def kill_all(self, timeout: float = 2.0) -> bool:
        """SIGKILL everything in the slot; True once it is empty."""
        if self.version == 2:
            with contextlib.suppress(OSError):
                _write(self.dirs["all"] / "cgroup.kill", "1")
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids()
            if not pids:
                return True
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # already gone
    return stat[stat.rindex(")") + 2] == "Z"


def detect_version() -> int:
    """2 if the unified hierarchy has the memory controller, 1 if v1 memory+pids exist, else 0."""
    controllers = V2_ROOT / "cgroup.controllers"
    if controllers.exists() and "memory" in controllers.read_text().split():
        return 2
    if (V1_ROOT / "memory" / "memory.limit_in_bytes").exists() and (V1_ROOT / "pids").is_dir():
        return 1
    return 0


def cgroups_writable(name: str) -> bool:
    """Whether slot cgroups can be created here (root with a writable cgroupfs)."""
    try:
        SlotCgroup(name, 0)
    except OSError:
        return False
    return True


# -- the memory budget of all slots together

GiB = 2**30


def machine_memory_bytes() -> int:
    """Memory this service may use: MemTotal, or its own cgroup's limit when lower (a container)."""
    total = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
    limits = [limit for limit in _own_cgroup_limits() if limit > 0]
    return min([total, *limits]) if total else min(limits, default=0)


def _own_cgroup_limits() -> list[int]:
    """The memory limits of this process's cgroup and its ancestors, as far as they are visible."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "" and detect_version() == 2:
                base, name = V2_ROOT, "memory.max"
            elif "memory" in controllers.split(","):
                base, name = V1_ROOT / "memory", "memory.limit_in_bytes"
            else:
                continue
            here = base / path.lstrip("/")
            while True:
                with contextlib.suppress(OSError, ValueError):
                    found.append(int((here / name).read_text().split()[0]))  # "max" is no limit
                if here == base:
                    break
                here = here.parent
    return found


def memory_budget_bytes(configured: int, machine_bytes: int | None = None) -> int:
    """The slots' budget: ``configured`` when positive, none for -1, else the machine's memory less a reserve.

    The reserve (max(1 GiB, 20%)) is for the service, the page cache and the rest of the host.
    """
    if configured != 0:
        return configured
    machine = machine_memory_bytes() if machine_bytes is None else machine_bytes
    return max(machine - max(GiB, machine // 5), 256 * 2**20)


def apply_memory_budget(name: str, budget_bytes: int) -> None:
    """Limit the parent cgroup of every slot: together they never hold more than the budget.

    Over it, the kernel's OOM killer acts inside that parent only: it kills a submission,
    which reads as a memory kill of its slot (the slot's oom_kill counter), never the service.
    """
    limit = str(budget_bytes) if budget_bytes > 0 else None
    version = detect_version()
    if version == 2:
        parent = V2_ROOT / name
        _write(parent / "memory.max", limit or "max")
        with contextlib.suppress(OSError):
            _write(parent / "memory.swap.max", "0")
    elif version == 1:
        parent = V1_ROOT / "memory" / name
        memsw = parent / "memory.memsw.limit_in_bytes"
        # As for the slots: memory+swap must stay >= memory at every step.
        if memsw.exists():
            _write(memsw, "-1")
        _write(parent / "memory.limit_in_bytes", limit or "-1")
        if memsw.exists():
            _write(memsw, limit or "-1")
