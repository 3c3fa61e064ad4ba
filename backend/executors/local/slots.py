"""Sandbox slots: claimed per process, handed to one job at a time, recycled in the background.

Each slot has its own uid (``SANDBOX_UID_BASE + index``), directory and cgroups.
A process claims its slots at start with ``flock`` on ``slot-<index>.lock`` in the
state directory, so several gunicorn workers, or several services on one machine,
never share a uid or a cgroup. Between jobs a slot is wiped and a fresh sandbox is
spawned for it before it is handed out again.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import shutil
import subprocess
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from backend import runrules
from backend.executors.errors import Overloaded
from backend.executors.local.cgroups import SlotCgroup
from backend.executors.local.sandbox import Sandbox, SandboxPlan, Slot, open_netns

log = logging.getLogger(__name__)
MAX_SLOT_INDEX = 4096


class SlotPool:
    def __init__(
        self, plan: SandboxPlan, *, count: int, work_dir: str, state_dir: str,
        uid_base: int, cgroup_name: str | None, box_size: int = 0,
    ) -> None:
        self.plan = plan
        self.box_size = box_size
        self._locks: list[int] = []
        self._free: queue.Queue[Slot] = queue.Queue()
        self._warm: dict[int, Future[Sandbox]] = {}
        self._warm_lock = threading.Lock()
        self._closed = False
        # Recycling (wipe + spawn) runs off the request path.
        self._recycler = ThreadPoolExecutor(max_workers=max(2, min(count, 8)), thread_name_prefix="slot-recycle")
        work = Path(work_dir)
        work.mkdir(parents=True, exist_ok=True)
        os.chmod(work, 0o711)
        state = Path(state_dir)
        state.mkdir(parents=True, exist_ok=True)
        self.slots: list[Slot] = []
        for index in range(MAX_SLOT_INDEX):
            if len(self.slots) == count:
                break
            fd = _try_lock(state / f"slot-{index}.lock")
            if fd is None:
                continue
            self._locks.append(fd)
            slot = Slot(
                index=index,
                uid=uid_base + index if plan.uid_separation else None,
                root=work / f"slot-{index}",
                cgroup=SlotCgroup(cgroup_name, index) if cgroup_name else None,
            )
            self._prepare_dirs(slot)
            if plan.keep_netns:
                try:
                    slot.netns_fd = open_netns(plan.launcher, slot.netns_reference)
                except OSError as exc:
                    log.warning("slot %d: a fresh network namespace per stage (%s)", index, exc)
            if slot.cgroup is not None:
                slot.cgroup.kill_all()  # leftovers of a crashed earlier owner
            self.slots.append(slot)
        if len(self.slots) < count:
            raise OSError(f"could claim only {len(self.slots)} of {count} sandbox slots in {state_dir}")
        for slot in self.slots:
            self._spawn_warm(slot)
            self._free.put(slot)

    # -- handing out

    def acquire(self, timeout: float) -> Slot:
        try:
            return self._free.get(timeout=timeout)
        except queue.Empty:
            raise Overloaded("timed out waiting for a free sandbox; try again later") from None

    def stats(self) -> dict[str, int]:
        return {"total": len(self.slots), "free": self._free.qsize()}

    def try_acquire(self, count: int) -> list[Slot]:
        """Up to ``count`` slots that are free right now, without waiting (parallel test cases)."""
        taken: list[Slot] = []
        while len(taken) < count:
            try:
                taken.append(self._free.get_nowait())
            except queue.Empty:
                break
        return taken

    def release(self, slot: Slot) -> None:
        """Give the slot back once it is wiped and has a fresh sandbox waiting."""
        if self._closed:
            return
        if slot.uid is not None and self.plan.bwrap is None:
            # Without namespaces a run writes to the host's scratch directories, where another slot's
            # next run would find it: removed now, before the answer goes out, not on the recycler.
            _remove_owned(SHARED_SCRATCH, slot.uid)
        self._recycler.submit(self._recycle, slot)

    def take_sandbox(self, slot: Slot) -> Sandbox:
        """The slot's waiting sandbox (spawning one if none is waiting); the next one starts spawning later."""
        with self._warm_lock:
            future = self._warm.pop(slot.index, None)
        if future is not None:
            try:
                sandbox = future.result()
                if sandbox.proc.poll() is None:
                    return sandbox
                log.warning("the waiting sandbox of slot %d had died; spawning another", slot.index)
                sandbox.destroy()
            except OSError:
                log.exception("spawning a sandbox for slot %d failed; retrying", slot.index)
        return Sandbox(self.plan, slot)

    def prewarm(self, slot: Slot) -> None:
        """Start spawning the slot's next sandbox now (a job that runs several stages)."""
        self._spawn_warm(slot)

    # -- internals

    def _spawn_warm(self, slot: Slot) -> None:
        with self._warm_lock:
            if slot.index not in self._warm and not self._closed:
                self._warm[slot.index] = self._recycler.submit(Sandbox, self.plan, slot)

    def _recycle(self, slot: Slot) -> None:
        try:
            # No sweep of the cgroup here: every stage's destroy() emptied it before the next
            # sandbox was spawned into it. That waiting sandbox has run nothing, and its /box
            # binds the box directory, wiped here in place (same inode): it serves the next job.
            self._wipe(slot)
            self._spawn_warm(slot)
        except Exception:
            log.exception("recycling sandbox slot %d failed", slot.index)
        finally:
            if not self._closed:
                self._free.put(slot)

    def _prepare_dirs(self, slot: Slot) -> None:
        slot.root.mkdir(parents=True, exist_ok=True)
        if self.box_size and not os.path.ismount(slot.root):
            _mount_tmpfs(slot.root, self.box_size)
        os.chmod(slot.root, 0o711)
        for path in (slot.box, slot.io):
            if path.is_symlink() or path.is_file():
                path.unlink()
            path.mkdir(exist_ok=True)
        self._wipe(slot)

    def _wipe(self, slot: Slot) -> None:
        """Empty the slot's directories in place and reset their owner and mode."""
        for path, mode in ((slot.box, 0o700), (slot.io, 0o500)):
            for entry in os.scandir(path):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
            if slot.uid is not None:
                os.chown(path, slot.uid, slot.uid)
            os.chmod(path, mode)

    def close(self) -> None:
        """Kill every sandbox and release the slots (workers call this at exit)."""
        self._closed = True
        self._recycler.shutdown(wait=True, cancel_futures=True)
        with self._warm_lock:
            futures = list(self._warm.values())
            self._warm.clear()
        for future in futures:
            with contextlib.suppress(Exception):
                future.result(timeout=5).destroy()
        for slot in self.slots:
            if slot.cgroup is not None:
                slot.cgroup.kill_all()
                slot.cgroup.close()
            if slot.netns_fd is not None:
                with contextlib.suppress(OSError):
                    os.close(slot.netns_fd)
                slot.netns_fd = None
            if os.path.ismount(slot.root):
                subprocess.run(["umount", "--lazy", str(slot.root)], check=False, capture_output=True, timeout=30)
            with contextlib.suppress(OSError):
                shutil.rmtree(slot.root)
        for fd in self._locks:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._locks.clear()


SHARED_SCRATCH = ("/tmp", "/var/tmp", "/dev/shm")


def _remove_owned(directories: tuple[str, ...], uid: int) -> None:
    for directory in directories:
        for path in runrules.owned_by(directory, [uid]):
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
            except OSError:
                continue


def _mount_tmpfs(path: Path, size: int) -> None:
    """A size-limited tmpfs for the slot: RLIMIT_FSIZE bounds one file, not how many a run writes."""
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0711,nosuid,nodev", "tmpfs", str(path)],
        check=False, capture_output=True, text=True, timeout=30,
    )
    if result.returncode != 0:
        log.warning("slot %s stays on the host disk (no tmpfs: %s)", path, result.stderr.strip() or result.returncode)


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
