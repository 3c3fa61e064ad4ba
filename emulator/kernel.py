"""One real IPython kernel (ipykernel) process, driven over ZMQ with jupyter_client.

Why not ``jupyter_client.KernelManager``: its synchronous facade runs an asyncio loop in whichever
thread calls it, and the HTTP server calls from a new thread per connection. So the process is launched
here with ``subprocess`` (own session, so a signal reaches user code's children too) and only
jupyter_client's pure-ZMQ pieces are used (``BlockingKernelClient`` channels, whose ``get_msg`` is a
plain socket poll). ipykernel picks its own free ports and writes the connection file, so parallel
starts cannot race for a port.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from typing import Any

import zmq
from jupyter_client.blocking.client import BlockingKernelClient

from .outputs import OutputCollector

INTERRUPT_GRACE_S = 5.0  # after SIGINT, how long the kernel gets to report back before it is replaced
IDLE_SETTLE_S = 1.0  # after the shell reply, how long trailing iopub output may still arrive
POLL_S = 0.25


class KernelStartError(RuntimeError):
    pass


@dataclass(frozen=True)
class ExecOutcome:
    succeeded: bool
    stdout: str
    stderr: str
    result: Any
    duration_ms: int
    timed_out: bool = False
    kernel_lost: bool = False  # the process died or stopped answering: the session needs a new kernel


class KernelProcess:
    def __init__(
        self,
        *,
        python: str,
        data_dir: Path,
        tmp_dir: Path,
        runtime_dir: Path,
        context: zmq.Context,
        env: Mapping[str, str],
    ) -> None:
        self.guid = uuid.uuid4().hex
        self.data_dir = data_dir
        self.tmp_dir = tmp_dir  # TMPDIR: a private, per-kernel temp dir (a session's /tmp is its own)
        self.connection_file = runtime_dir / f"kernel-{self.guid}.json"
        self.log_file = runtime_dir / f"kernel-{self.guid}.log"
        self._python = python
        self._context = context
        self._env = dict(env)
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: BlockingKernelClient | None = None
        self._state_lock = threading.Lock()  # guards _closed vs. launching the process
        self._use_lock = threading.RLock()  # held while the ZMQ sockets are in use
        self._closed = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and not self._closed

    # -- start ---------------------------------------------------------------------------------------
    def start(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        env = dict(self._env, SESSION_DATA_DIR=str(self.data_dir), TMPDIR=str(self.tmp_dir))
        # JPY_PARENT_PID makes ipykernel exit by itself if the emulator dies without cleaning up (SIGKILL).
        env["JPY_PARENT_PID"] = str(os.getpid())
        argv = [
            self._python,
            "-m",
            "ipykernel_launcher",
            "-f",
            str(self.connection_file),
            "--HistoryManager.enabled=False",
        ]
        with self._state_lock:
            if self._closed:
                raise KernelStartError("kernel was shut down before it started")
            with open(self.log_file, "ab") as log:
                self._proc = subprocess.Popen(
                    argv,
                    cwd=self.data_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
        info = self._wait_connection_file(deadline)
        with self._use_lock:
            client = BlockingKernelClient(context=self._context)
            client.load_connection_info(info)
            client.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=True)
            self._client = client
            self._wait_ready(deadline)

    def _wait_connection_file(self, deadline: float) -> dict[str, Any]:
        while True:
            self._check_started(deadline)
            try:
                info = json.loads(self.connection_file.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                time.sleep(0.02)
                continue
            if isinstance(info, dict) and info.get("key") is not None and info.get("shell_port"):
                return info
            time.sleep(0.02)

    def _check_started(self, deadline: float) -> None:
        if self._closed:
            raise KernelStartError("kernel was shut down while starting")
        if self._proc is None or self._proc.poll() is not None:
            raise KernelStartError(f"kernel process exited during start; log tail: {self._log_tail()}")
        if time.monotonic() > deadline:
            raise KernelStartError("kernel did not become ready in time")

    def _wait_ready(self, deadline: float) -> None:
        # Same handshake as jupyter_client's wait_for_ready: a kernel_info reply on shell AND a message on
        # iopub, which proves the SUB socket is subscribed (else the first outputs could be lost).
        client = self._client
        assert client is not None
        while True:
            self._check_started(deadline)
            client.kernel_info()
            try:
                reply = client.shell_channel.get_msg(timeout=1)
            except Empty:
                continue
            if reply["msg_type"] != "kernel_info_reply":
                continue
            try:
                client.iopub_channel.get_msg(timeout=0.2)
            except Empty:
                continue
            break
        while True:  # drain the handshake's status messages
            try:
                client.iopub_channel.get_msg(timeout=0.05)
            except Empty:
                return

    def _log_tail(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-1500:]
        except OSError:
            return "<no log>"

    # -- execute -------------------------------------------------------------------------------------
    def execute(self, code: str, *, timeout_s: float, output_limit: int) -> ExecOutcome:
        collector = OutputCollector(output_limit)
        started = time.monotonic()
        with self._use_lock:
            client = self._client
            if client is None or not self.alive():
                return self._lost(collector, started, "The session's kernel is not running.")
            msg_id = client.execute(code, silent=False, store_history=True, allow_stdin=False, stop_on_error=True)
            deadline = started + timeout_s
            timed_out = False
            reply: dict[str, Any] | None = None
            settle = 0.0
            while True:
                now = time.monotonic()
                if reply is not None and now >= settle:
                    # The reply came but the iopub "idle" did not: PUB sockets drop messages when a flood
                    # of output exceeds their high-water mark. The shell reply is authoritative.
                    break
                if reply is None and now >= deadline:
                    if timed_out:  # the interrupt did not bring it back: give up on this kernel
                        collector.add_stderr(
                            f"TimeoutError: execution exceeded the {timeout_s:g} second limit; the kernel did not "
                            "respond to the interrupt and was restarted.\n"
                        )
                        return self._outcome(collector, started, timed_out=True, kernel_lost=True)
                    timed_out = True
                    self.interrupt()
                    deadline = now + INTERRUPT_GRACE_S
                    continue
                wait = max(0.0, min(POLL_S, (settle if reply is not None else deadline) - now))
                try:
                    msg = client.iopub_channel.get_msg(timeout=wait)
                except Empty:
                    if not self.alive():
                        return self._lost(collector, started, "The session's kernel died during execution.")
                    if reply is None and (reply := self._reply(msg_id, 0.0)) is not None:
                        settle = time.monotonic() + IDLE_SETTLE_S
                    continue
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue  # late output of an earlier, abandoned execution
                msg_type = msg["msg_type"]
                if msg_type == "status" and msg["content"].get("execution_state") == "idle":
                    break
                collector.feed(msg_type, msg["content"])
            if reply is None:
                reply = self._reply(msg_id, 2.0)
        if reply is not None and reply["content"].get("status") == "error" and collector.error_name is None:
            collector.feed("error", reply["content"])  # its iopub "error" message was dropped
        if timed_out:
            collector.add_stderr(f"TimeoutError: execution exceeded the {timeout_s:g} second limit.\n")
        return self._outcome(collector, started, timed_out=timed_out)

    def _reply(self, msg_id: str, timeout_s: float) -> dict[str, Any] | None:
        """The execute_reply for ``msg_id``; replies to abandoned executions are read and discarded."""
        assert self._client is not None
        end = time.monotonic() + timeout_s
        while True:
            try:
                reply = self._client.shell_channel.get_msg(timeout=max(0.0, end - time.monotonic()))
            except Empty:
                return None
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                return reply

    def _lost(self, collector: OutputCollector, started: float, why: str) -> ExecOutcome:
        collector.add_stderr(why + "\n")
        return self._outcome(collector, started, kernel_lost=True)

    @staticmethod
    def _outcome(
        collector: OutputCollector, started: float, *, timed_out: bool = False, kernel_lost: bool = False
    ) -> ExecOutcome:
        return ExecOutcome(
            succeeded=collector.error_name is None and not timed_out and not kernel_lost,
            stdout=collector.stdout,
            stderr=collector.stderr,
            result=collector.result,
            duration_ms=int((time.monotonic() - started) * 1000),
            timed_out=timed_out,
            kernel_lost=kernel_lost,
        )

    def interrupt(self) -> None:
        # ipykernel's default interrupt_mode is "signal": SIGINT raises KeyboardInterrupt in user code.
        self._signal(signal.SIGINT)

    def _signal(self, signum: int) -> None:
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    # -- stop ----------------------------------------------------------------------------------------
    def shutdown(self, grace_s: float = 1.0) -> None:
        """Stop the kernel and everything it started; idempotent and safe from any thread."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        proc = self._proc
        if proc is not None and proc.poll() is None:
            # Ask politely when nobody is using the sockets, as a Jupyter frontend would.
            if self._use_lock.acquire(blocking=False):
                try:
                    if self._client is not None:
                        self._client.shutdown()
                finally:
                    self._use_lock.release()
                try:
                    proc.wait(grace_s)
                except subprocess.TimeoutExpired:
                    pass
            if proc.poll() is None:
                self._signal(signal.SIGTERM)
                try:
                    proc.wait(grace_s)
                except subprocess.TimeoutExpired:
                    pass
        if proc is not None:
            self._signal(signal.SIGKILL)  # also reaps whatever user code left in the process group
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        with self._use_lock:  # an execute() in flight notices the dead process within POLL_S
            if self._client is not None:
                _close_channels(self._client)
                self._client = None
        for path in (self.connection_file, self.log_file):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.tmp_dir, ignore_errors=True)  # a restarted session gets a fresh /tmp too


def _close_channels(client: BlockingKernelClient) -> None:
    # Not client.stop_channels(): it touches the stdin and heartbeat channel properties, which would
    # first *create* (connect) those sockets on the shared ZMQ context.
    for name in ("_shell_channel", "_iopub_channel", "_control_channel"):
        channel = getattr(client, name, None)
        if channel is not None:
            channel.close()
