"""Session identifiers: minted here, leased one execution at a time, kept warm within the cooldown.

An identifier IS the session (same identifier = same sandbox), so identifiers are
unguessable (``secrets``), never come from users, and are random per process: gunicorn
workers and replicas can never share one. ``reuse`` keeps an idle identifier for the
next execution while the pool would still keep its session (idle < cooldown - margin);
``fresh`` mints a new identifier for every execution. The executor may switch the
strategy once it knows what the pool's sessions can separate (SESSION_STRATEGY=auto).
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from backend.config import SessionStrategy
from backend.executors.errors import Overloaded

PREFIX = "pst-"
# Lower-case hex and hyphens: inside every documented rule (Learn's letters, digits and
# hyphens; the swagger patterns' [A-Za-z0-9-_]; 4-128 characters).
IDENTIFIER_PATTERN = r"^[a-z0-9-]{4,128}$"
STRATEGIES = (SessionStrategy.REUSE, SessionStrategy.FRESH)  # what AUTO resolves to


def new_identifier() -> str:
    return PREFIX + secrets.token_hex(16)  # 4 + 32 chars, 128 random bits


@dataclass
class Lease:
    identifier: str
    warm: bool  # the session has run at least one of our executions
    last_used: float = field(default_factory=time.monotonic)
    uses: int = 0

    def use(self) -> bool:
        """Count a call on this session; True when it is the first (the pool allocates it then)."""
        self.uses += 1
        return self.uses == 1


class LeasePool:
    """At most ``capacity`` identifiers in use at once; idle ones reused newest first."""

    def __init__(self, *, strategy: SessionStrategy | str, cooldown_s: float, capacity: int) -> None:
        self.strategy = strategy
        self.cooldown_s = cooldown_s
        # Reuse only well inside the cooldown: the pool may already be destroying a session
        # that sits exactly at it, and an execution itself takes time.
        self.max_idle_s = max(1.0, cooldown_s - min(30.0, cooldown_s * 0.2))
        self.capacity = capacity
        self._idle: deque[Lease] = deque()
        self._busy: set[str] = set()
        self._slots = threading.BoundedSemaphore(capacity)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.minted = 0

    @property
    def strategy(self) -> SessionStrategy:
        return self._strategy

    @strategy.setter
    def strategy(self, value: SessionStrategy | str) -> None:
        if value not in STRATEGIES:
            raise ValueError(f"unknown session strategy {value!r}")
        self._strategy = SessionStrategy(value)

    def acquire(self, timeout_s: float) -> Lease:
        """A lease for one execution; Overloaded when no slot frees up within ``timeout_s``."""
        if not self._slots.acquire(timeout=max(0.0, timeout_s)):
            raise Overloaded(
                f"all {self.capacity} session slots of this worker are busy; waited {timeout_s:g} s"
            )
        with self._lock:
            lease = self._take_idle() if self.strategy is SessionStrategy.REUSE else None
            if lease is None:
                lease = Lease(new_identifier(), warm=False)
                self.minted += 1
            self._busy.add(lease.identifier)
        return lease

    def release(self, lease: Lease, *, keep: bool) -> None:
        """Return the lease; ``keep`` False (or the fresh strategy) forgets its identifier."""
        with self._lock:
            self._busy.discard(lease.identifier)
            if keep and self.strategy is SessionStrategy.REUSE:
                lease.last_used = time.monotonic()
                lease.warm = True
                self._idle.append(lease)
        self._slots.release()

    def replace(self, lease: Lease) -> Lease:
        """Swap a broken session's identifier for a fresh one, keeping the slot."""
        with self._lock:
            self._busy.discard(lease.identifier)
            fresh = Lease(new_identifier(), warm=False)
            self.minted += 1
            self._busy.add(fresh.identifier)
        return fresh

    def swap_for_idle(self, lease: Lease) -> Lease | None:
        """An idle warm lease in place of ``lease`` (whose identifier is dropped), keeping the slot."""
        with self._lock:
            if self.strategy is not SessionStrategy.REUSE:
                return None
            self._expire()
            if not self._idle:
                return None
            warm = self._idle.pop()
            self._busy.discard(lease.identifier)
            self._busy.add(warm.identifier)
        return warm

    def drain_idle(self) -> list[Lease]:
        """Take every idle lease out (at shutdown, to delete their sessions)."""
        with self._lock:
            idle = list(self._idle)
            self._idle.clear()
        return idle

    def stats(self) -> dict[str, int]:
        with self._lock:
            self._expire()
            return {"busy": len(self._busy), "idle": len(self._idle), "minted": self.minted,
                    "capacity": self.capacity}

    def _take_idle(self) -> Lease | None:
        if os.getpid() != self._pid:
            # Inherited through fork (a preloading server): the parent may use these too.
            self._idle.clear()
            self._pid = os.getpid()
        self._expire()
        return self._idle.pop() if self._idle else None  # newest: the most time left before cooldown

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.max_idle_s
        while self._idle and self._idle[0].last_used < cutoff:
            self._idle.popleft()
