"""Sessions: identifier -> kernel + data directory, allocated from the ready pool, and the idle reaper.

Lifecycle as documented [DOC session-pool.md]: a new identifier allocates a session implicitly (taken
from the ready pool, like ``readySessionInstances``), every call resets the idle timer, and a session
idle for the cooldown period is destroyed. Requests hold a *lease* on their session while they run,
so the reaper never destroys a session in use.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .image import Box
from .kernel import KernelProcess
from .pool import AllocationFailed, KernelPool, in_parallel
from .settings import Settings

log = logging.getLogger(__name__)
MAX_EXECUTION_RECORDS = 200  # per session, for GET /executions/{id}


class PoolFull(Exception):
    pass


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(eq=False)
class Session:
    identifier: str
    created_at: float = field(default_factory=time.time)
    last_accessed: float = field(default_factory=time.time)
    last_accessed_mono: float = field(default_factory=time.monotonic)
    etag: str = field(default_factory=lambda: str(uuid.uuid4()))
    kernel: KernelProcess | None = None
    box: Box | None = None
    data_dir: Path | None = None
    guid: str = ""
    ready: threading.Event = field(default_factory=threading.Event)
    alloc_error: str | None = None
    exec_lock: threading.Lock = field(default_factory=threading.Lock)
    leases: int = 0
    closed: bool = False
    executions: OrderedDict[str, Any] = field(default_factory=OrderedDict)
    execution_count: int = 0

    def touch(self) -> None:
        self.last_accessed = time.time()
        self.last_accessed_mono = time.monotonic()

    def attach(self, kernel: KernelProcess, pool_name: str) -> None:
        self.kernel = kernel
        self.box = kernel.box  # None for a custom container: its own service holds its files
        self.data_dir = kernel.data_dir
        # X-Ms-Session-Guid is the pod name in the real service [MS-SAMPLE]; make it look like one.
        where = kernel.box.root if kernel.box is not None else kernel.data_dir
        self.guid = f"{pool_name}-{where.name[:10]}"

    def remember(self, record_id: str, record: Any) -> None:
        self.executions[record_id] = record
        self.executions.move_to_end(record_id)
        while len(self.executions) > MAX_EXECUTION_RECORDS:
            self.executions.popitem(last=False)

    def to_json(self, cooldown_s: float) -> dict[str, Any]:
        # Field names as in the 2025-02-02-preview SessionManagement_Get example [SPEC] (expireAt, not expiresAt).
        return {
            "identifier": self.identifier,
            "expireAt": iso(self.last_accessed + cooldown_s),
            "createdAt": iso(self.created_at),
            "lastAccessedAt": iso(self.last_accessed),
            "etag": self.etag,
        }


class SessionRegistry:
    def __init__(
        self,
        *,
        pool: KernelPool,
        make_kernel: Callable[[Box], KernelProcess],
        config: Callable[[], Settings],
        alloc_timeout_s: float,
    ) -> None:
        self._pool = pool
        self._make_kernel = make_kernel
        self._config = config
        self._alloc_timeout_s = alloc_timeout_s
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None
        self.created_total = 0
        self.expired_total = 0
        self.deleted_total = 0

    # -- leases ------------------------------------------------------------------------------------
    def acquire(self, identifier: str, *, create: bool) -> Session | None:
        """Lease the session (allocating it if ``create``); pair with ``release``. Raises PoolFull."""
        allocate = False
        with self._lock:
            session = self._sessions.get(identifier)
            if session is None:
                if not create:
                    return None
                if len(self._sessions) >= self._config().max_sessions:
                    raise PoolFull(identifier)
                session = Session(identifier)
                self._sessions[identifier] = session
                self.created_total += 1
                allocate = True
            session.leases += 1
            session.touch()
        if allocate:
            self._allocate(session)
        elif not session.ready.wait(self._alloc_timeout_s) or session.alloc_error:
            self.release(session)
            raise AllocationFailed(session.alloc_error or "timed out waiting for the session")
        return session

    def _allocate(self, session: Session) -> None:
        try:
            kernel = self._pool.acquire(self._alloc_timeout_s)
        except AllocationFailed as exc:
            session.alloc_error = str(exc)
            with self._lock:
                if self._sessions.get(session.identifier) is session:
                    del self._sessions[session.identifier]
            session.ready.set()
            raise
        session.attach(kernel, self._config().pool_name)
        session.ready.set()
        if session.closed:  # deleted while it was being allocated
            self._dispose(session)

    def release(self, session: Session) -> None:
        with self._lock:
            session.leases -= 1
            session.touch()

    @contextmanager
    def lease(self, identifier: str, *, create: bool = True) -> Iterator[Session | None]:
        session = self.acquire(identifier, create=create)
        try:
            yield session
        finally:
            if session is not None:
                self.release(session)

    def replace_kernel(self, session: Session) -> None:
        """Give a session whose kernel died a fresh kernel in the same box (Python state is lost).

        Guess: like Jupyter restarting a dead kernel inside the same container, /mnt/data, the home
        directory (venv included) and /tmp stay as the last kernel left them.
        """
        old = session.kernel
        if old is not None:
            old.shutdown()
        where = session.box if session.box is not None else session.data_dir
        if session.closed or where is None:
            return
        session.kernel = self._make_kernel(where)
        if session.closed:
            session.kernel.shutdown()

    # -- queries -----------------------------------------------------------------------------------
    def get(self, identifier: str) -> Session | None:
        with self._lock:
            return self._sessions.get(identifier)

    def list(self) -> list[Session]:
        with self._lock:
            return sorted(self._sessions.values(), key=lambda s: s.created_at)

    # -- removal -----------------------------------------------------------------------------------
    def delete(self, identifier: str) -> bool:
        with self._lock:
            session = self._sessions.pop(identifier, None)
            if session is None:
                return False
            session.closed = True
            self.deleted_total += 1
        if session.ready.is_set():
            self._dispose(session)
        return True

    def reap(self) -> list[str]:
        cooldown = self._config().cooldown_s
        now = time.monotonic()
        with self._lock:
            expired = [
                s
                for s in self._sessions.values()
                if s.leases == 0 and s.ready.is_set() and now - s.last_accessed_mono >= cooldown
            ]
            for session in expired:
                del self._sessions[session.identifier]
                session.closed = True
            self.expired_total += len(expired)
        for session in expired:
            self._dispose(session)
        return [s.identifier for s in expired]

    @staticmethod
    def _dispose(session: Session) -> None:
        if session.kernel is not None:
            session.kernel.shutdown()
        where = session.box.root if session.box is not None else session.data_dir
        if where is not None:
            shutil.rmtree(where, ignore_errors=True)  # the container is gone with the session

    def clear(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
            for session in sessions:
                session.closed = True
            self.created_total = self.expired_total = self.deleted_total = 0
        in_parallel([s for s in sessions if s.ready.is_set()], self._dispose)

    # -- reaper ------------------------------------------------------------------------------------
    def start_reaper(self) -> None:
        self._reaper = threading.Thread(target=self._reap_loop, name="session-reaper", daemon=True)
        self._reaper.start()

    def _reap_loop(self) -> None:
        while not self._stop.wait(min(1.0, max(0.05, self._config().cooldown_s / 4))):
            try:
                self.reap()
            except Exception:  # the reaper must survive anything
                log.exception("session reaper failed")

    def close(self) -> None:
        self._stop.set()
        if self._reaper is not None:
            self._reaper.join(timeout=5)
        self.clear()
