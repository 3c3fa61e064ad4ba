"""Interactive stdin and signals for one sandboxed run stage (``/api/v2/connect``).

The program's stdin is a FIFO in the slot's io directory, which the launcher opens
like a stdin file: the prespawned sandbox is used unchanged. The server holds the
FIFO open read-write, so the program never sees EOF while the stage runs (as in
Piston, whose stdin stays open), and writes client data from a thread of its own,
so a program that does not read cannot block the WebSocket.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from backend.errors import ValidationError
from backend.executors.local.sandbox import Sandbox, Slot
from backend.interactive import MAX_STDIN_BACKLOG_BYTES, StageProcess

FIFO_NAME = "stdin-live"
SIGNAL_TRIES = 40


class LiveStage(StageProcess):
    """The run stage's live stdin; ``output`` receives each stdout/stderr chunk as it is read."""

    def __init__(self, slot: Slot, output: Callable[[str, bytes], None]) -> None:
        self.output = output
        self.path: Path = slot.io / FIFO_NAME
        os.mkfifo(self.path, 0o400)
        if slot.uid is not None:
            os.chown(self.path, slot.uid, slot.uid)
        self._fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self._backlog: deque[bytes] = deque()
        self._backlog_bytes = 0
        self._wake = threading.Condition()
        self._stopped = False
        self._sandbox: Sandbox | None = None
        self._writer = threading.Thread(target=self._write_loop, name="live-stdin", daemon=True)
        self._writer.start()

    def started(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    def write(self, data: bytes) -> None:
        with self._wake:
            if self._backlog_bytes + len(data) > MAX_STDIN_BACKLOG_BYTES:
                raise ValidationError(f"stdin backlog over {MAX_STDIN_BACKLOG_BYTES} bytes: the program is not reading")
            self._backlog.append(data)
            self._backlog_bytes += len(data)
            self._wake.notify()

    def signal(self, number: int) -> None:
        if self._sandbox is None:
            return
        # Right after the start the launcher may not have forked the program yet.
        for _ in range(SIGNAL_TRIES):
            pids = program_pids(self._sandbox.proc.pid)
            if pids or self._sandbox.proc.poll() is not None:
                break
            time.sleep(0.005)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, number)

    def close(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._writer.join(timeout=5)
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def _write_loop(self) -> None:
        while True:
            with self._wake:
                while not self._backlog and not self._stopped:
                    self._wake.wait()
                if self._stopped:
                    return
                data = memoryview(self._backlog.popleft())  # slices without copying
            while data and not self._stopped:
                # The pipe may be full (a program that does not read): wait for room, but wake up to stop.
                _, ready, _ = select.select([], [self._fd], [], 0.1)
                if not ready:
                    continue
                try:
                    written = os.write(self._fd, data)
                except BlockingIOError:
                    continue
                except OSError:
                    return
                data = data[written:]
                with self._wake:  # the backlog counts what the program has not been given yet
                    self._backlog_bytes -= written


def program_pids(sandbox_pid: int) -> list[int]:
    """The submitted program: the children of the in-sandbox launcher (``piston-launch inner``).

    Signals go to the program only; the launcher must live to report how the program ended.
    The launcher is the shallowest process of the sandbox's tree running ``inner``, so
    nothing the program starts can pose as it.
    """
    level = [sandbox_pid]
    for _ in range(3):  # bwrap -> its pid 1 -> launcher; without bwrap the sandbox is the launcher
        for pid in level:
            if _argv(pid)[1:2] == ["inner"]:
                return _children(pid)
        level = [child for pid in level for child in _children(pid)]
    return []


def _argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                found += [int(p) for p in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return found
