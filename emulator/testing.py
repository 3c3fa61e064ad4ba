"""Run the emulator as a real subprocess from tests.

    from emulator.testing import EmulatorProcess

    with EmulatorProcess(max_sessions=3, cooldown=2) as emu:        # CLI flags as keyword arguments
        emu.base_url          # "http://127.0.0.1:<free port>"
        emu.pool_endpoint     # POOL_MANAGEMENT_ENDPOINT: <base_url>/subscriptions/.../sessionPools/<pool>
        emu.identity_env()    # {"IDENTITY_ENDPOINT": ..., "IDENTITY_HEADER": ...} (+ AZURE_CLIENT_ID=client_id
                              #  when a client_id is passed): monkeypatch these and DefaultAzureCredential works
        emu.env               # every KEY=value line the emulator printed (POOL_MANAGEMENT_ENDPOINT, ...)
        emu.set_fault(operation="execute", status=429, retry_after=1, count=1)   # -> stored rule (with "id")
        emu.clear_faults()
        emu.configure(executions_body="wrapped")   # runtime overrides (see settings.RUNTIME_KEYS)
        emu.token()           # a data-plane token minted directly (no /msi/token call is counted)
        emu.state()           # sessions, calls per operation, tokens issued, faults, kernel pids...
        emu.reset()           # drop sessions, faults, counters and runtime overrides
    # leaving the block sends SIGTERM (SIGKILL after a grace period); all kernels die with it

Sessions use the default ``--profile pythonlts`` (the PythonLTS image view; needs root): pass
``profile="host"``, ``kernel_user="root"``, ``kernel_userns="allow"`` or ``image_toolchains=["gcc"]`` to change it.
Keyword options map to flags: ``max_sessions=3`` -> ``--max-sessions 3``; ``True`` -> a bare flag;
``None``/``False`` -> omitted; a list/tuple -> the flag followed by each value. The port is always
chosen by the emulator (``--port 0``) and read from its ``EMULATOR_READY`` line, so nothing races for it.
stderr goes to ``log_path`` (a temp file, removed after a clean exit unless ``keep_log=True``).
The emulator is started with ``--exit-with-parent``: if the test process is killed, it still stops
and takes its kernels with it.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

import requests

from .server import CLIENT_ENV_KEYS
from .settings import DATA_PLANE_AUDIENCE
from .state import default_root_parent

_REPO_ROOT = Path(__file__).resolve().parent.parent


def _cli_args(options: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            args.append(flag)
        elif isinstance(value, list | tuple):
            args.extend([flag, *(str(v) for v in value)])
        else:
            args.extend([flag, str(value)])
    return args


class EmulatorError(RuntimeError):
    pass


class EmulatorProcess:
    """A ``python -m emulator`` subprocess on a free port; see the module docstring for the API."""

    def __init__(
        self, *, startup_timeout_s: float = 60.0, python: str = sys.executable, keep_log: bool = False, **options: Any
    ) -> None:
        options.pop("port", None)
        options.setdefault("host", "127.0.0.1")
        options.setdefault("exit_with_parent", True)  # never outlive a killed test run
        self._argv = [python, "-m", "emulator", "--port", "0", *_cli_args(options)]
        self._startup_timeout_s = startup_timeout_s
        self._keep_log = keep_log
        self._proc: subprocess.Popen[str] | None = None
        self._log: IO[bytes] | None = None
        self._reader: threading.Thread | None = None
        self.base_url = ""
        self.pool_endpoint = ""
        self.env: dict[str, str] = {}
        self.log_path = ""

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> EmulatorProcess:
        if self._proc is not None:
            raise EmulatorError("already started")
        # Not in /tmp: code running in sessions may wipe new entries there (see state.default_root_parent).
        log_dir = default_root_parent() / "logs"
        log_dir.mkdir(exist_ok=True)
        self._log = tempfile.NamedTemporaryFile(prefix="emulator-", suffix=".log", dir=log_dir, delete=False)  # noqa: SIM115
        self.log_path = self._log.name
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        self._proc = subprocess.Popen(
            self._argv,
            cwd=_REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,  # a Ctrl-C in the test terminal must not hit it half-way
        )
        lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read_stdout, args=(lines,), daemon=True)
        self._reader.start()
        try:
            self._await_ready(lines)
        except BaseException:
            self.stop()
            raise
        return self

    def _read_stdout(self, lines: queue.Queue[str | None]) -> None:
        # Keeps draining after the READY block so the child can never block on a full pipe.
        assert self._proc is not None and self._proc.stdout is not None
        try:
            for line in self._proc.stdout:
                lines.put(line.rstrip("\n"))
        except (OSError, ValueError):
            pass
        lines.put(None)

    def _await_ready(self, lines: queue.Queue[str | None]) -> None:
        deadline = time.monotonic() + self._startup_timeout_s
        while not all(k in self.env for k in CLIENT_ENV_KEYS):
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise EmulatorError(f"emulator not ready in {self._startup_timeout_s}s; log: {self._tail()}") from None
            if line is None:
                raise EmulatorError(f"emulator exited during start-up; log: {self._tail()}")
            if line.startswith("EMULATOR_READY "):
                self.base_url = line.split(" ", 1)[1].strip()
            elif "=" in line and self.base_url:
                key, value = line.split("=", 1)
                self.env[key] = value
        self.pool_endpoint = self.env["POOL_MANAGEMENT_ENDPOINT"]

    def _tail(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-3000:]
        except OSError:
            return "<no log>"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, wait (the emulator stops its kernels), SIGKILL as a last resort. Returns the exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
        if self._log is not None:
            self._log.close()
            if proc.returncode == 0 and not self._keep_log:
                Path(self.log_path).unlink(missing_ok=True)  # a clean run leaves nothing behind
        return proc.returncode

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- client helpers ----------------------------------------------------------------------------
    def identity_env(self, client_id: str | None = None) -> dict[str, str]:
        env = {"IDENTITY_ENDPOINT": self.env["IDENTITY_ENDPOINT"], "IDENTITY_HEADER": self.env["IDENTITY_HEADER"]}
        if client_id:
            env["AZURE_CLIENT_ID"] = client_id
        return env

    def _control(self, method: str, path: str, body: Any = None) -> Any:
        response = requests.request(method, f"{self.base_url}/_emulator{path}", json=body, timeout=60)
        if response.status_code >= 400:
            raise EmulatorError(f"{method} /_emulator{path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    def set_fault(self, **rule: Any) -> dict[str, Any]:
        """Add one fault rule (see emulator.faults); returns it with its "id"."""
        return self._control("POST", "/faults", rule)["faults"][0]

    def clear_faults(self) -> None:
        self._control("DELETE", "/faults")

    def reset(self) -> None:
        self._control("POST", "/reset")

    def state(self) -> dict[str, Any]:
        return self._control("GET", "/state")

    def configure(self, **overrides: Any) -> dict[str, Any]:
        return self._control("POST", "/config", overrides)

    def token(self, resource: str = DATA_PLANE_AUDIENCE, **options: Any) -> str:
        """Mint a token directly: options client_id, principal_id, lifetime_s, claims."""
        return self._control("POST", "/tokens", {"resource": resource, **options})["access_token"]
