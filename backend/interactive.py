"""The executor-neutral half of an interactive run (``/api/v2/connect``).

An ``InteractiveSession`` sits between the WebSocket (backend/connect.py) and an
executor that can stream. Outward, the executor reports stages, output chunks and
exits, which become Piston's messages. Inward, client stdin and signals are handed to
whatever stage process is attached right now. Stdin that arrives before the run
stage starts is kept and written to it when it starts; Piston drops it.
"""

from __future__ import annotations

import codecs
import threading
from collections.abc import Callable
from typing import Any

from backend.errors import ValidationError
from backend.models import StageResult

# Stdin sent but not yet taken by the program (kept before the run starts, or unread during it).
MAX_STDIN_BACKLOG_BYTES = 16 * 1024 * 1024

# Piston's signal table (api/src/globals.js): the names a client may send, by Linux number.
_NAMED = (
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL", "SIGUSR1",
    "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD", "SIGCONT", "SIGSTOP",
    "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH",
    "SIGIO", "SIGPWR", "SIGSYS",
)
SIGNALS: dict[str, int] = {
    **{name: number for number, name in enumerate(_NAMED, start=1)},
    "SIGRTMIN": 34, **{f"SIGRTMIN+{n}": 34 + n for n in range(1, 16)},
    **{f"SIGRTMAX-{n}": 64 - n for n in range(1, 15)}, "SIGRTMAX": 64,
}

Send = Callable[[dict[str, Any]], None]


class StageProcess:
    """What an executor attaches while a stage runs: where stdin goes and how signals reach the program."""

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def signal(self, number: int) -> None:
        raise NotImplementedError


class InteractiveSession:
    """One /connect job. ``send`` delivers a Piston message to the client (thread-safe)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._process: StageProcess | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._decoders: dict[str, codecs.IncrementalDecoder] = {}
        self.cancelled = threading.Event()

    # -- executor -> client

    def runtime(self, language: str, version: str) -> None:
        self._send({"type": "runtime", "language": language, "version": version})

    def stage(self, name: str) -> None:
        self._decoders = {s: codecs.getincrementaldecoder("utf-8")("replace") for s in ("stdout", "stderr")}
        self._send({"type": "stage", "stage": name})

    def output(self, stream: str, chunk: bytes) -> None:
        # Incremental decoding: a UTF-8 character split across two reads arrives whole.
        text = self._decoders[stream].decode(chunk)
        if text:
            self._send({"type": "data", "stream": stream, "data": text})

    def exit(self, name: str, result: StageResult) -> None:
        for stream, decoder in self._decoders.items():
            if rest := decoder.decode(b"", final=True):
                self._send({"type": "data", "stream": stream, "data": rest})
        # Piston sends `{type, stage, code, signal}` (its `error` field is always undefined).
        self._send({"type": "exit", "stage": name, "code": result.code, "signal": result.signal})

    def attach(self, process: StageProcess) -> None:
        """The run stage started: stdin kept so far goes to it first."""
        with self._lock:
            self._process = process
            pending, self._pending, self._pending_bytes = self._pending, [], 0
            for data in pending:
                process.write(data)
            if self.cancelled.is_set():
                process.signal(SIGNALS["SIGKILL"])

    def detach(self) -> None:
        with self._lock:
            self._process = None

    # -- client -> executor

    def feed(self, text: str) -> None:
        data = text.encode("utf-8", "surrogatepass")
        with self._lock:
            if self._process is None:
                if self._pending_bytes + len(data) > MAX_STDIN_BACKLOG_BYTES:
                    raise ValidationError(f"stdin backlog over {MAX_STDIN_BACKLOG_BYTES} bytes before the program started")
                self._pending.append(data)
                self._pending_bytes += len(data)
            else:
                self._process.write(data)

    def signal(self, name: str) -> None:
        """Deliver one of Piston's signals to the running program; ignored between stages."""
        with self._lock:
            if self._process is not None:
                self._process.signal(SIGNALS[name])

    def cancel(self) -> None:
        """The client went away: kill what runs and start nothing more."""
        self.cancelled.set()
        with self._lock:
            if self._process is not None:
                self._process.signal(SIGNALS["SIGKILL"])
