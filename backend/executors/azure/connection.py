"""What both pool kinds share: the credential and its token, the endpoint (resolved once and
validated by the first probe), session leases and their janitor, readiness, health, metrics,
and the one mapping of pool failures to the service's typed errors.

A pool kind (``executor.py`` for PythonLTS, ``custom.py`` for custom containers) says how a
round trip looks; this module says which session it runs on and what a failure means.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from azure.core.credentials import TokenCredential

from backend.config import PoolType, SessionStrategy, Settings
from backend.executors.azure.client import (
    SessionsAuthError,
    SessionsClient,
    SessionsError,
    SessionsNotFoundError,
    SessionsPoolFullError,
    SessionsRequestError,
    SessionsResponseError,
    SessionsThrottledError,
    SessionsTimeoutError,
    backoff,
)
from backend.executors.azure.credentials import ObservedCredential, TokenUnavailable, build_credential
from backend.executors.azure.endpoint import EndpointError, resolve_endpoint
from backend.executors.azure.leases import Lease, LeasePool
from backend.executors.base import Executor
from backend.executors.errors import ExecutorUnavailable, Overloaded, UpstreamError, UpstreamTimeout
from backend.runtimes import Runtime

log = logging.getLogger(__name__)
T = TypeVar("T")

READY_CACHE_S = 5.0
PROBE_RETRY_S = 5.0  # a failed probe is tried again on the next request after this long


def fingerprint(identifier: str) -> str:
    """A short, irreversible tag of an identifier for logs (identifiers themselves are secrets)."""
    return hashlib.sha256(identifier.encode()).hexdigest()[:10]


class SessionBroken(Exception):
    """The session gave nothing usable, or is gone: replace it and try once more."""


class Holder:
    """The lease a round trip uses; swapped when the session breaks, judged unhealthy on errors."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.healthy = True


class PoolConnection:
    def __init__(self, settings: Settings, pool_type: PoolType, *, endpoint: str | None = None,
                 credential: TokenCredential | None = None) -> None:
        """``endpoint``/``credential``: already made by the factory (it read ARM to learn the pool type)."""
        self.settings = settings
        self.pool_type = pool_type
        self._endpoint = endpoint
        self.credential = credential or build_credential(settings)  # also reads ARM, for the endpoint
        self.tokens = ObservedCredential(self.credential, settings.sessions_token_scope)
        self.endpoint_error: str | None = None  # resolving failed, or the first probe found no pool there
        self._client: SessionsClient | None = None
        self._client_lock = threading.Lock()
        self.leases = LeasePool(strategy=self._initial_strategy(), cooldown_s=settings.session_cooldown_s,
                                capacity=settings.max_concurrent_jobs)
        self._janitor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="session-cleanup")
        self._ready: tuple[float, bool, str] | None = None
        self.closed = False
        with contextlib.suppress(ExecutorUnavailable):
            self.client()  # resolve the endpoint once at start; retried lazily if ARM is down

    def _initial_strategy(self) -> SessionStrategy:
        chosen = self.settings.session_strategy
        if chosen is SessionStrategy.AUTO:
            # A custom container separates runs itself (a fresh sandbox per run); a code interpreter
            # is only trusted with reuse once its probe shows per-run isolation (set_isolation).
            return SessionStrategy.REUSE if self.pool_type is PoolType.CUSTOM_CONTAINER else SessionStrategy.FRESH
        return chosen

    def set_isolation(self, isolation: str) -> None:
        """What the probe found the session can separate: reuse identifiers only where runs are apart."""
        if self.settings.session_strategy is SessionStrategy.AUTO and self.pool_type is PoolType.PYTHON_LTS:
            self.leases.strategy = SessionStrategy.FRESH if isolation == "none" else SessionStrategy.REUSE
            log.info("session isolation %s: strategy %s", isolation, self.leases.strategy)

    # ------------------------------------------------------------ wiring

    def client(self) -> SessionsClient:
        if self._client is not None:
            return self._client
        with self._client_lock:
            if self._client is None:
                try:
                    endpoint = self._endpoint or resolve_endpoint(self.settings, self.credential)
                except EndpointError as exc:
                    self.endpoint_error = str(exc)
                    raise ExecutorUnavailable(f"session pool endpoint unavailable: {exc}") from exc
                self.endpoint_error = None
                self._client = SessionsClient(
                    endpoint, self.tokens, scope=self.settings.sessions_token_scope,
                    api_version=self.settings.sessions_api_version,
                    request_timeout=self.settings.session_request_timeout_s,
                    max_retries=self.settings.session_max_retries,
                    pool_size=self.settings.max_concurrent_jobs + 4,
                )
            return self._client

    def queue_deadline(self) -> float:
        return time.monotonic() + self.settings.queue_timeout_ms / 1000

    def check_validation(self, exc: SessionsPoolFullError) -> None:
        """At the first probe, a bare 404 for a new identifier says the endpoint is wrong, not the pool full."""
        if not exc.stated:
            raise ExecutorUnavailable(self.invalid_endpoint(exc)) from exc

    def invalid_endpoint(self, exc: SessionsResponseError) -> str:
        """Record that the endpoint answers 404 for a new session; the message /ready shows."""
        where = "resolved through ARM" if not self.settings.pool_management_endpoint else "as configured"
        client = self._client
        self.endpoint_error = (
            f"POOL_MANAGEMENT_ENDPOINT ({client.endpoint if client else '?'}, {where}) answered {exc.status} "
            f"{exc.code or ''} for a new session: check the pool's name, region and path "
            f"(SESSION_POOL_TYPE={self.pool_type.value})"
        ).replace("  ", " ")
        self._ready = None
        return self.endpoint_error

    # ------------------------------------------------------------ sessions

    def lease(self) -> Lease:
        return self.leases.acquire(self.settings.queue_timeout_ms / 1000)

    def round_trip(self, call: Callable[[Lease], T], holder: Holder | None = None) -> T:
        """``call`` on the holder's session; without a holder (a probe) a lease is taken here."""
        if holder is not None:
            return self._attempt_twice(call, holder)
        holder = Holder(self.lease())
        try:
            return self._attempt_twice(call, holder)
        finally:
            self.finish(holder.lease, keep=holder.healthy)

    def _attempt_twice(self, call: Callable[[Lease], T], holder: Holder) -> T:
        deadline = self.queue_deadline()
        for attempt in (1, 2):
            try:
                with self.translated(holder.lease):
                    return self._call_with_room(call, holder, deadline)
            except SessionBroken as exc:
                # The session died (a submission can kill it), vanished or answered garbage: never reuse it.
                log.warning("session %s broke (%s)", fingerprint(holder.lease.identifier), exc)
                old, holder.lease = holder.lease, self.leases.replace(holder.lease)
                self.delete_later(old.identifier)
                if attempt == 2:
                    holder.healthy = False
                    raise UpstreamError(f"the session pool returned no usable result: {exc}") from exc
            except BaseException:
                holder.healthy = False
                raise
        raise AssertionError("unreachable")

    def _call_with_room(self, call: Callable[[Lease], T], holder: Holder, deadline: float) -> T:
        """A full pool is back-pressure: move to a warm session of ours that has freed up meanwhile, or
        wait for room until the queue deadline (the last wait is cut short so the final try lands on it)."""
        waits = 0
        while True:
            try:
                return call(holder.lease)
            except SessionsPoolFullError as exc:
                holder.lease.uses = max(0, holder.lease.uses - 1)  # nothing was allocated for it
                if holder.lease.uses == 0:
                    warm = self.leases.swap_for_idle(holder.lease)
                    if warm is not None:
                        holder.lease = warm
                        continue
                remaining = deadline - time.monotonic()
                if remaining < 0.05:
                    raise
                time.sleep(min(backoff(waits, exc.retry_after), remaining))
                waits += 1

    @contextlib.contextmanager
    def translated(self, lease: Lease) -> Iterator[None]:
        """Pool failures as the service's errors; a 404 for a session that has worked means it is gone."""
        try:
            yield
        except TokenUnavailable as exc:
            raise ExecutorUnavailable(str(exc)) from exc
        except SessionsNotFoundError as exc:
            if exc.what == "pool":
                raise ExecutorUnavailable(self.invalid_endpoint(exc)) from exc
            raise SessionBroken(f"the session is gone ({exc.status} {exc.code})") from exc
        except SessionsError as exc:
            client = self._client
            raise api_error(exc, client.host if client else "?", self.settings) from exc

    def finish(self, lease: Lease, *, keep: bool) -> None:
        keep = keep and self.leases.strategy is SessionStrategy.REUSE
        self.leases.release(lease, keep=keep)
        if not keep and lease.uses:
            # Fresh strategy (or a broken session): delete it so it does not hold a pool slot until cooldown.
            self.delete_later(lease.identifier)

    def delete_later(self, identifier: str) -> None:
        try:
            self._janitor.submit(self._delete_session, identifier)
        except RuntimeError:  # shutting down: the pool's cooldown will reclaim it
            pass

    def _delete_session(self, identifier: str, retries: int = 1) -> None:
        try:
            client = self.client()
            if self.pool_type is PoolType.CUSTOM_CONTAINER:
                client.stop_session(identifier, retries=retries)
            else:
                client.delete_session(identifier, retries=retries)
        except (SessionsError, ExecutorUnavailable, TokenUnavailable) as exc:
            log.info("deleting session %s failed: %s", fingerprint(identifier), exc)

    # ------------------------------------------------------------ readiness, health, metrics

    def ready(self, reach: Callable[[SessionsClient], str]) -> tuple[bool, str]:
        """``reach`` asks the pool something cheap and says what it answered; cached a few seconds."""
        cached = self._ready
        if cached is not None and time.monotonic() - cached[0] < READY_CACHE_S:
            return cached[1], cached[2]
        ok, detail = self._check_ready(reach)
        self._ready = (time.monotonic(), ok, detail)
        return ok, detail

    def _check_ready(self, reach: Callable[[SessionsClient], str]) -> tuple[bool, str]:
        try:
            client = self.client()
            if self.endpoint_error:
                return False, self.endpoint_error
            self.tokens.check()
            return True, reach(client)
        except ExecutorUnavailable as exc:
            return False, exc.message
        except TokenUnavailable as exc:
            return False, str(exc)
        except SessionsResponseError as exc:
            return False, f"session pool answered {exc}"
        except SessionsError as exc:
            return False, f"session pool unreachable: {exc}"

    def health(self) -> dict[str, Any]:
        client = self._client
        expires_in = self.tokens.expires_in()
        return {
            "pool_type": self.pool_type.value,
            "endpoint_host": client.host if client else None,
            "endpoint_error": self.endpoint_error,
            "strategy": self.leases.strategy.value,
            "strategy_setting": self.settings.session_strategy.value,
            "leases": self.leases.stats(),
            "token": {"cached": expires_in is not None,
                      "expires_in": None if expires_in is None else int(expires_in),
                      "fetches": self.tokens.fetches, "last_error": self.tokens.last_error},
        }

    def stats(self) -> dict[str, Any]:
        client = self._client
        return {
            "session_leases": self.leases.stats(),
            "upstream_retries": dict(client.retries) if client else {},
            "upstream_faults": dict(client.faults) if client else {},
            "token_fetches": self.tokens.fetches,
        }

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        client = self._client
        if client is not None and self.leases.strategy is SessionStrategy.REUSE:
            for lease in self.leases.drain_idle():
                self._delete_session(lease.identifier, retries=0)
        self._janitor.shutdown(wait=True, cancel_futures=False)
        if client is not None:
            client.close()


class PoolExecutor(Executor):
    """What both pool kinds' executors share: the connection, the probed runtimes, readiness."""

    def __init__(self, settings: Settings, connection: PoolConnection) -> None:
        self.settings = settings
        self.connection = connection
        self.leases = connection.leases
        self.tokens = connection.tokens
        self.probed = ProbedRuntimes(self._probe)
        self.probed.start()

    @abstractmethod
    def _probe(self) -> list[Runtime]:
        """Ask a session what it offers (on a new identifier: this validates the endpoint too)."""

    @abstractmethod
    def _reachable(self, client: SessionsClient) -> str:
        """Ask the pool something cheap; what it answered."""

    def client(self) -> SessionsClient:
        return self.connection.client()

    def runtimes(self) -> list[Runtime]:
        """What the pool really offers; ExecutorUnavailable (503) until its probe answered."""
        return self.probed.get()

    def check_open(self) -> None:
        if self.connection.closed:
            raise ExecutorUnavailable("the session pool executor is shut down")
        self.client()

    def stats(self) -> dict[str, Any]:
        """For /metrics (piston_executor_*): session leases, upstream retries and faults, token fetches."""
        return self.connection.stats()

    def ready(self) -> tuple[bool, str]:
        return self.connection.ready(self._ready_answer)

    def _ready_answer(self, client: SessionsClient) -> str:
        self.probed.get()  # not ready before the runtimes are known: nothing could be validated
        return self._reachable(client)

    def close(self) -> None:
        self.connection.close()


class ProbedRuntimes:
    """The runtimes a pool's probe found: asked once, cached for the process; a failure is remembered
    for a few seconds (so /api/v2/runtimes answers 503 at once) and then tried again."""

    def __init__(self, probe: Callable[[], list[Runtime]]) -> None:
        self._probe = probe
        self._runtimes: list[Runtime] | None = None
        self._failure: tuple[float, str] | None = None
        self._lock = threading.Lock()

    @property
    def known(self) -> bool:
        return self._runtimes is not None

    @property
    def failure(self) -> str | None:
        return self._failure[1] if self._failure else None

    def get(self) -> list[Runtime]:
        if self._runtimes is not None:
            return list(self._runtimes)
        with self._lock:
            if self._runtimes is None:
                failed = self._failure
                if failed is not None and time.monotonic() - failed[0] < PROBE_RETRY_S:
                    raise ExecutorUnavailable(failed[1])
                try:
                    self._runtimes = self._probe()
                    self._failure = None
                except (ExecutorUnavailable, UpstreamError, Overloaded) as exc:
                    message = (f"the session pool's runtimes are not known yet (its probe failed: {exc.message}); "
                               f"try again in a few seconds")
                    log.warning("%s", message)
                    self._failure = (time.monotonic(), message)
                    raise ExecutorUnavailable(message) from exc
        return list(self._runtimes)

    def start(self) -> None:
        """Probe once now, at start (as the worker boots, before it takes requests); a failure is
        remembered, shown on /ready and /api/v2/runtimes, and retried on use."""
        with contextlib.suppress(ExecutorUnavailable):
            self.get()


def api_error(exc: SessionsError, host: str, settings: Settings) -> Exception:
    if isinstance(exc, SessionsPoolFullError):
        return Overloaded(
            f"the session pool is full ({exc.code}) and no session freed up within "
            f"{settings.queue_timeout_ms / 1000:g} s; try again later"
        )
    if isinstance(exc, SessionsTimeoutError):
        return UpstreamTimeout(f"the session pool did not answer in time: {exc}")
    if isinstance(exc, SessionsRequestError):
        return ExecutorUnavailable(f"the session pool is unreachable: {exc}")
    if isinstance(exc, SessionsThrottledError):
        return ExecutorUnavailable(f"the session pool keeps throttling requests (429 {exc.code}); try again later")
    if isinstance(exc, SessionsAuthError):
        hint = " (does the identity hold the Azure ContainerApps Session Executor role on the pool?)" \
            if exc.status == 403 else ""
        return ExecutorUnavailable(f"the session pool refused our identity: {exc.status} {exc.code}{hint}")
    if isinstance(exc, SessionsResponseError):
        return UpstreamError(f"the session pool at {host} answered {exc.status} {exc.code}: {exc.message[:300]}")
    return UpstreamError(f"session pool error: {exc}")
