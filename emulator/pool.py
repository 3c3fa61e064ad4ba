"""The ready pool: kernels started ahead of demand, like ``scaleConfiguration.readySessionInstances``.

A new identifier takes a started kernel (each with its own empty data directory) instead of paying the
~0.5-1 s kernel start; the pool refills in the background.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .kernel import KernelProcess

log = logging.getLogger(__name__)


# A waiter gives up after this many failed starts: one failure can be the machine (a kernel killed on a
# loaded host), three in a row are the configuration.
START_ATTEMPTS = 3


class AllocationFailed(Exception):
    pass


class KernelPool:
    """Keeps ``target`` started kernels ready; starts at most ``max_parallel`` at a time (2 cores here)."""

    def __init__(self, factory: Callable[[], KernelProcess], target: int, max_parallel: int = 2) -> None:
        self._factory = factory
        self._target = target
        self._max_parallel = max(1, max_parallel)
        self._cond = threading.Condition()
        self._ready: deque[KernelProcess] = deque()
        self._starting = 0
        self._waiters = 0
        self._failures = 0
        self._last_error = ""
        self._closed = False
        with self._cond:
            self._schedule_locked()

    def _schedule_locked(self) -> None:
        if self._closed:
            return
        want = self._target + self._waiters - len(self._ready) - self._starting
        for _ in range(max(0, min(want, self._max_parallel - self._starting))):
            self._starting += 1
            threading.Thread(target=self._start_one, name="kernel-start", daemon=True).start()

    def _start_one(self) -> None:
        kernel: KernelProcess | None = None
        error = ""
        try:
            kernel = self._factory()
        except Exception as exc:
            if not self._closed:  # during shutdown, starts are cut short on purpose
                log.warning("kernel start failed: %s", exc)
            error = str(exc)
        orphan = None
        with self._cond:
            self._starting -= 1
            if kernel is None:
                self._failures += 1
                self._last_error = error
            elif self._closed:
                orphan = kernel
            else:
                self._ready.append(kernel)
                self._schedule_locked()  # after a failure only a waiter restarts it: no hot retry loop
            self._cond.notify_all()
        if orphan is not None:
            orphan.discard()

    def acquire(self, timeout_s: float) -> KernelProcess:
        deadline = time.monotonic() + timeout_s
        dead: list[KernelProcess] = []
        try:
            with self._cond:
                failures_before = self._failures
                self._waiters += 1
                try:
                    while True:
                        if self._closed:
                            raise AllocationFailed("the emulator is shutting down")
                        while self._ready:
                            kernel = self._ready.popleft()
                            if kernel.alive():
                                return kernel
                            dead.append(kernel)
                        if self._failures - failures_before >= START_ATTEMPTS:
                            raise AllocationFailed(f"kernel start failed: {self._last_error}")
                        self._schedule_locked()
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise AllocationFailed("timed out waiting for a kernel")
                        self._cond.wait(left)
                finally:
                    self._waiters -= 1
                    self._schedule_locked()  # replenish what was taken
        finally:
            for kernel in dead:
                kernel.discard()

    def counts(self) -> dict[str, int]:
        with self._cond:
            return {"ready": len(self._ready), "starting": self._starting, "start_failures": self._failures}

    def close(self) -> None:
        with self._cond:
            self._closed = True
            ready = list(self._ready)
            self._ready.clear()
            self._cond.notify_all()
        for kernel in ready:
            kernel.discard()


def in_parallel(items: list[Any], action: Callable[[Any], None]) -> None:
    """Shut many kernels down at once: each takes up to ~1 s of grace, SIGTERM must not wait for all."""
    threads = [threading.Thread(target=action, args=(item,), daemon=True) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=15)
