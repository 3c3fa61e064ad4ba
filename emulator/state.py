"""The emulator's state: live config, tokens, faults, counters, kernels and sessions (one per app)."""

from __future__ import annotations

import dataclasses
import itertools
import os
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from .auth import TokenService
from .containers import ContainerLauncher
from .faults import FaultStore
from .image import Box, Image
from .kernel import KernelProcess
from .pool import KernelPool, in_parallel
from .sessions import SessionRegistry
from .settings import KERNEL_UID_SPAN, RUNTIME_KEYS, Settings

# Secrets of the emulator's own environment must not leak into code running in a session.
_SCRUBBED_ENV_PREFIXES = ("IDENTITY_", "MSI_", "AZURE_")


def default_root_parent() -> Path:
    """Where a run's temporary root goes: NOT under /tmp, /var/tmp or /dev/shm.

    Sessions share the host's scratch directories here (in Azure each has its own), and code running in
    a session may legitimately wipe what appeared in them during its run (the backend's harness does);
    that must not take the emulator's own files with it.
    """
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    parent = cache / "aca-sessions-emulator"
    parent.mkdir(parents=True, exist_ok=True)
    return parent


class Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.calls: Counter[str] = Counter()
            self.routes: Counter[str] = Counter()
            self.tokens_issued = 0
            self.tokens: deque[dict[str, Any]] = deque(maxlen=200)

    def record_call(self, operation: str, route: str) -> None:
        with self._lock:
            self.calls[operation] += 1
            self.routes[route] += 1

    def record_route(self, route: str) -> None:
        with self._lock:
            self.routes[route] += 1

    def record_token(self, **details: Any) -> None:
        with self._lock:
            self.tokens_issued += 1
            self.tokens.append(details)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            by_resource = Counter(t["resource"] for t in self.tokens)
            return {
                "calls": dict(self.calls),
                "calls_by_route": dict(self.routes),
                "tokens_issued": self.tokens_issued,
                "tokens_by_resource": dict(by_resource),
                "tokens": list(self.tokens),
            }


class Emulator:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._config = settings
        self._config_lock = threading.Lock()
        self.started_at = time.time()
        self.tokens = TokenService(settings.token_secret)
        self.faults = FaultStore()
        self.counters = Counters()
        self.metadata_cache: dict[str, Any] | None = None  # GET /metadata, computed once

        self._own_root = settings.data_root is None
        self.root = Path(settings.data_root or tempfile.mkdtemp(prefix="run-", dir=default_root_parent())).resolve()
        self.sessions_dir = self.root / "sessions"
        self.runtime_dir = self.root / "runtime"
        for directory in (self.sessions_dir, self.runtime_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self._kernel_env = self._build_kernel_env()
        # pythonlts: every kernel in a PythonLTS-like sandbox (emulator/image.py); host: this machine as is.
        self.image = (
            Image(
                self.root / "image",
                settings.kernel_python,
                toolchains=settings.image_toolchains,
                kernel_user=settings.kernel_user,
                userns=settings.kernel_userns,
            )
            if settings.profile == "pythonlts"
            else None
        )
        self._uids = itertools.count(secrets.randbelow(KERNEL_UID_SPAN))
        self._zmq = zmq.Context()
        self._kernels: set[KernelProcess] = set()
        self._kernels_lock = threading.Lock()
        self._closed = False

        self.containers: ContainerLauncher | None = None
        make_session: Callable[[Path | None], Any] = self._new_kernel
        if settings.pool_type == "CustomContainer":
            assert settings.session_app_dir is not None
            self.containers = ContainerLauncher(
                app_dir=settings.session_app_dir, sessions_dir=self.sessions_dir,
                extra_env=dict(item.split("=", 1) for item in settings.session_env),
                start_timeout_s=settings.kernel_start_timeout_s,
            )
            make_session = self.containers.start
        self.pool = KernelPool(lambda: make_session(None), settings.ready_sessions)
        self.sessions = SessionRegistry(
            pool=self.pool,
            make_kernel=make_session,
            config=self.config,
            alloc_timeout_s=settings.kernel_start_timeout_s + 5,
        )
        self.sessions.start_reaper()

    # -- config ------------------------------------------------------------------------------------
    def config(self) -> Settings:
        return self._config

    def configure(self, **overrides: Any) -> Settings:
        unknown = set(overrides) - RUNTIME_KEYS
        if unknown:
            raise ValueError(f"not changeable at run time: {sorted(unknown)}; allowed: {sorted(RUNTIME_KEYS)}")
        if "allowed_principals" in overrides:
            overrides["allowed_principals"] = tuple(overrides["allowed_principals"])
        with self._config_lock:
            self._config = dataclasses.replace(self._config, **overrides)  # validates in __post_init__
            return self._config

    # -- kernels -----------------------------------------------------------------------------------
    def _build_kernel_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_ENV_PREFIXES)}
        env.update(
            IPYTHONDIR=str(self.runtime_dir / "ipython"),  # keep kernels off the user's ~/.ipython
            MPLBACKEND="Agg",
            PYTHONUNBUFFERED="1",
            PYDEVD_DISABLE_FILE_VALIDATION="1",
        )
        return env

    def _new_box(self) -> Box:
        """A pristine container filesystem for a new session (what a fresh identifier gets)."""
        # Short names: the kernel's unix socket paths under the box must stay below 108 bytes.
        root = self.sessions_dir / uuid.uuid4().hex[:16]
        if self.image is None:
            box = Box(root, os.geteuid())
            for directory in (box.data, box.tmp, box.run):
                directory.mkdir(parents=True)
            return box
        # A uid of its own per session (the harness and other worktrees use other ranges, see README).
        uid = self.settings.kernel_uid_base + next(self._uids) % KERNEL_UID_SPAN
        box = Box(root, 0 if self.settings.kernel_user == "root" else uid)
        self.image.prepare_box(box)
        return box

    def _new_kernel(self, box: Box | None) -> KernelProcess:
        """Start a kernel; ``box`` None gives it a fresh, pristine one (a ready-pool kernel)."""
        fresh = box is None
        if box is None:
            box = self._new_box()
        kernel = KernelProcess(
            python=self.settings.kernel_python,
            box=box,
            runtime_dir=self.runtime_dir,
            context=self._zmq,
            env=self._kernel_env,
            image=self.image,
        )
        with self._kernels_lock:
            if self._closed:
                raise RuntimeError("the emulator is shutting down")
            self._kernels.add(kernel)
        try:
            kernel.start(self.settings.kernel_start_timeout_s)
        except BaseException:
            if fresh:
                kernel.discard()
            else:
                kernel.shutdown()  # a session's own box outlives a failed restart
            raise
        finally:
            self._forget_dead_kernels()
        return kernel

    def _forget_dead_kernels(self) -> None:
        with self._kernels_lock:
            self._kernels = {k for k in self._kernels if k.alive()}

    def kernel_pids(self) -> list[int]:
        if self.containers is not None:
            return self.containers.pids()
        with self._kernels_lock:
            return sorted(k.pid for k in self._kernels if k.pid is not None and k.alive())

    # -- control -----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget sessions, faults, counters and runtime config; the ready pool stays warm."""
        self.sessions.clear()
        self.faults.reset()
        self.counters.reset()
        with self._config_lock:
            self._config = self.settings

    def snapshot(self) -> dict[str, Any]:
        config = self.config()
        sessions = []
        for s in self.sessions.list():
            sessions.append(
                {
                    **s.to_json(config.cooldown_s),
                    "guid": s.guid,
                    "state": "Allocated" if s.ready.is_set() else "Allocating",
                    "busy": s.leases > 0,
                    "executions": s.execution_count,
                    "kernel_pid": s.kernel.pid if s.kernel else None,
                    "data_dir": str(s.data_dir) if s.data_dir else None,
                }
            )
        return {
            "settings": config.public(),
            "sessions": sessions,
            "sessions_created": self.sessions.created_total,
            "sessions_expired": self.sessions.expired_total,
            "sessions_deleted": self.sessions.deleted_total,
            "kernels": {**self.pool.counts(), "pids": self.kernel_pids()},
            "faults": self.faults.list(),
            "faults_fired": self.faults.fired_total,
            **self.counters.snapshot(),
        }

    def close(self) -> None:
        """Stop every kernel (pooled, in use, or still starting) and remove the temporary data root."""
        with self._kernels_lock:
            if self._closed:
                return
            self._closed = True
        self.pool.close()
        self.sessions.close()
        with self._kernels_lock:
            leftovers = list(self._kernels)
            self._kernels.clear()
        in_parallel(leftovers, lambda k: k.shutdown())
        if self.containers is not None:
            self.containers.close()
        self._zmq.destroy(linger=0)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)
