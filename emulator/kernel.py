"""One real IPython kernel (ipykernel) process, driven over ZMQ with jupyter_client.

Why not ``jupyter_client.KernelManager``: its synchronous facade runs an asyncio loop in whichever
thread calls it, and the HTTP server calls from a new thread per connection. So the process is launched
here with ``subprocess`` (own session, so a signal reaches user code's children too) and only
jupyter_client's pure-ZMQ pieces are used (``BlockingKernelClient`` channels, whose ``get_msg`` is a
plain socket poll). ipykernel picks its own free ports and writes the connection file, so parallel
starts cannot race for a port.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from typing import Any

import zmq
from jupyter_client.blocking.client import BlockingKernelClient

from .image import RUN_DIR, VENV, Box, Image
from .outputs import OutputCollector

INTERRUPT_GRACE_S = 5.0  # after SIGINT, how long the kernel gets to report back before it is replaced
IDLE_SETTLE_S = 1.0  # after the shell reply, how long trailing iopub output may still arrive
POLL_S = 0.25


# bwrap's --die-with-parent is a parent-death signal, which Linux ties to the *thread* that forked: a
# kernel started from a short-lived pool thread would die with that thread. So every kernel is forked by
# this one thread, which lives as long as the emulator process.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kernel-spawn")


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
        box: Box,
        runtime_dir: Path,
        context: zmq.Context,
        env: Mapping[str, str],
        image: Image | None = None,
    ) -> None:
        self.guid = uuid.uuid4().hex
        self.box = box
        self.data_dir = box.data
        self.tmp_dir = box.tmp  # TMPDIR on the host profile; /tmp in the pythonlts sandbox
        self.image = image
        # pythonlts: the connection file and ipc sockets live in the box's run dir, bound into the sandbox.
        self.connection_file = (box.run / "kernel.json") if image else runtime_dir / f"kernel-{self.guid}.json"
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
        program = self.image.seccomp_program(self.box) if self.image is not None else None
        seccomp_fd = _pipe_with(program) if program is not None else None
        try:
            if self.image is None:
                argv, env, cwd = self._host_launch()
            else:
                argv, env, cwd = self._sandbox_launch(seccomp_fd)
            with self._state_lock:
                if self._closed:
                    raise KernelStartError("kernel was shut down before it started")
                with open(self.log_file, "ab") as log:
                    popen = functools.partial(
                        subprocess.Popen,
                        argv,
                        cwd=cwd,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=log,
                        start_new_session=True,
                        pass_fds=() if seccomp_fd is None else (seccomp_fd,),
                    )
                    self._proc = _SPAWNER.submit(popen).result()
        finally:
            if seccomp_fd is not None:
                os.close(seccomp_fd)
        info = self._wait_connection_file(deadline)
        if self.image is not None:
            info = dict(info, ip=str(self.box.run / "k"))  # the same sockets, seen from the host
        with self._use_lock:
            client = BlockingKernelClient(context=self._context)
            client.load_connection_info(info)
            client.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=True)
            self._client = client
            self._wait_ready(deadline)

    def _host_launch(self) -> tuple[list[str], dict[str, str], Path]:
        """--profile host: ipykernel on this machine, TCP on 127.0.0.1, cwd = the data dir."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        env = dict(self._env, SESSION_DATA_DIR=str(self.data_dir), TMPDIR=str(self.tmp_dir))
        # JPY_PARENT_PID makes ipykernel exit by itself if the emulator dies without cleaning up (SIGKILL).
        env["JPY_PARENT_PID"] = str(os.getpid())
        argv = [self._python, "-m", "ipykernel_launcher", "-f", str(self.connection_file), "--HistoryManager.enabled=False"]
        return argv, env, self.data_dir

    def _sandbox_launch(self, seccomp_fd: int | None) -> tuple[list[str], dict[str, str], Path]:
        """--profile pythonlts: ipykernel in the image sandbox, ZMQ over unix sockets in the run dir.

        The emulator writes the connection file (ipc transport, fixed socket names) and the kernel binds
        what it says; bwrap's --die-with-parent replaces JPY_PARENT_PID (ppid is the sandbox's init).
        """
        assert self.image is not None
        info = {
            "transport": "ipc",
            "ip": f"{RUN_DIR}/k",
            "shell_port": 1,
            "iopub_port": 2,
            "stdin_port": 3,
            "control_port": 4,
            "hb_port": 5,
            "key": uuid.uuid4().hex,
            "signature_scheme": "hmac-sha256",
            "kernel_name": "python3",
        }
        self.connection_file.write_text(json.dumps(info))
        os.chown(self.connection_file, self.box.uid, self.box.uid)
        os.chmod(self.connection_file, 0o600)
        kernel_argv = [
            f"{VENV}/bin/python",
            "-m",
            "ipykernel_launcher",
            "-f",
            f"{RUN_DIR}/kernel.json",
            "--HistoryManager.enabled=False",
        ]
        return self.image.argv(self.box, kernel_argv, seccomp_fd), self.image.env(self.box), self.box.root

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
        if self.image is None:
            # ipykernel's default interrupt_mode is "signal": SIGINT raises KeyboardInterrupt in user code.
            self._signal(signal.SIGINT)
            return
        # In the sandbox the kernel leads its own process group, out of reach of the host's killpg on
        # bwrap: ask it on the control channel, and it sends itself (and its group) SIGINT.
        with self._use_lock:
            if self._client is not None:
                self._client.control_channel.send(self._client.session.msg("interrupt_request", {}))

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
        for path in (self.connection_file, self.log_file, *(self.box.run.glob("k-*") if self.image else ())):
            path.unlink(missing_ok=True)
        # The box (data, home, tmp) stays: a restarted kernel is the same container. Its owner removes it.


def _pipe_with(data: bytes) -> int:
    """The read end of a pipe holding ``data`` (a seccomp program is ~100 bytes: far below the pipe buffer)."""
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, data)
    finally:
        os.close(write_fd)
    return read_fd


def _close_channels(client: BlockingKernelClient) -> None:
    # Not client.stop_channels(): it touches the stdin and heartbeat channel properties, which would
    # first *create* (connect) those sockets on the shared ZMQ context.
    for name in ("_shell_channel", "_iopub_channel", "_control_channel"):
        channel = getattr(client, name, None)
        if channel is not None:
            channel.close()
