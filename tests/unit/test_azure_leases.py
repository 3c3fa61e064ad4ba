"""Lease pool, token cache and the pure parts of the session pool client (no network)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from backend.executors.azure import client as client_mod
from backend.executors.azure.credentials import ObservedCredential, TokenUnavailable
from backend.executors.azure.executor import _chunks, fingerprint
from backend.executors.azure.leases import LeasePool, new_identifier
from backend.executors.errors import Overloaded
from backend.models import Limits, RunSpec


def test_identifiers_are_unpredictable_and_in_the_safe_charset() -> None:
    ids = {new_identifier() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"^[a-z0-9-]+$", i) and 4 <= len(i) <= 128 for i in ids)


def test_reuse_keeps_one_execution_per_identifier() -> None:
    pool = LeasePool(strategy="reuse", cooldown_s=300, capacity=2)
    a = pool.acquire(1)
    b = pool.acquire(1)
    assert a.identifier != b.identifier
    with pytest.raises(Overloaded, match="session slots"):
        pool.acquire(0.05)
    pool.release(a, keep=True)
    again = pool.acquire(1)
    assert again.identifier == a.identifier and again.warm
    pool.release(again, keep=False)  # broken: forgotten
    pool.release(b, keep=True)
    assert pool.acquire(1).identifier == b.identifier
    assert pool.stats()["busy"] == 1


def test_idle_identifiers_expire_before_the_cooldown() -> None:
    pool = LeasePool(strategy="reuse", cooldown_s=2, capacity=1)
    assert pool.max_idle_s < 2
    lease = pool.acquire(1)
    pool.release(lease, keep=True)
    lease.last_used -= pool.max_idle_s + 0.01
    fresh = pool.acquire(1)
    assert fresh.identifier != lease.identifier and not fresh.warm


def test_fresh_strategy_never_repeats() -> None:
    pool = LeasePool(strategy="fresh", cooldown_s=300, capacity=1)
    seen = set()
    for _ in range(20):
        lease = pool.acquire(1)
        assert lease.identifier not in seen
        seen.add(lease.identifier)
        pool.release(lease, keep=True)
    assert pool.stats()["idle"] == 0


def test_replace_swaps_the_identifier_and_keeps_the_slot() -> None:
    pool = LeasePool(strategy="reuse", cooldown_s=300, capacity=1)
    lease = pool.acquire(1)
    other = pool.replace(lease)
    assert other.identifier != lease.identifier
    assert pool.stats()["busy"] == 1
    pool.release(other, keep=True)
    assert pool.acquire(1).identifier == other.identifier


class FakeCredential:
    """A TokenCredential stand-in: counts calls, hands out tokens of a chosen lifetime."""

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self.calls = 0
        self.fail = False

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        assert scopes == ("https://dynamicsessions.io/.default",)
        self.calls += 1
        if self.fail:
            raise ClientAuthenticationError("identity endpoint said no")
        time.sleep(0.01)
        return AccessToken(f"token-{self.calls}", int(time.time() + self.lifetime))

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessToken:
        return self.get_token(*scopes)


SCOPE = "https://dynamicsessions.io/.default"


def test_long_tokens_refresh_five_minutes_early_and_are_counted() -> None:
    cred = FakeCredential(3600)
    observed = ObservedCredential(cred, SCOPE)  # type: ignore[arg-type]
    info = observed.get_token_info(SCOPE)
    now = time.time()
    assert info.token == "token-1" and observed.fetches == 1 and observed.last_error is None
    assert abs(info.expires_on - (now + 3600 - 300)) < 3  # never used in its last 5 minutes
    assert abs(info.refresh_on - (now + 3600 - 360)) < 3  # type: ignore[operator] - before, by the jitter
    assert 3500 < (observed.expires_in() or 0) <= 3600


def test_short_tokens_refresh_at_half_life_and_failures_say_why_without_the_token() -> None:
    cred = FakeCredential(12)
    observed = ObservedCredential(cred, SCOPE)  # type: ignore[arg-type]
    info = observed.get_token_info(SCOPE)
    now = time.time()
    assert abs(info.refresh_on - (now + 3)) < 2  # type: ignore[operator]
    assert abs(info.expires_on - (now + 6)) < 2  # half its life
    cred.fail = True
    with pytest.raises(ClientAuthenticationError, match="said no") as info_:
        observed.get_token_info(SCOPE)
    assert "token-" not in str(info_.value) and observed.last_error and "said no" in observed.last_error
    with pytest.raises(TokenUnavailable, match="said no"):
        observed.check()


def test_the_pipeline_caches_the_token_across_threads() -> None:
    """azure-core's BearerTokenCredentialPolicy over the observed credential: one fetch, then cached."""
    from azure.core.pipeline import PipelineContext, PipelineRequest
    from azure.core.pipeline.policies import HTTPPolicy
    from azure.core.rest import HttpRequest

    from backend.executors.azure.transport import SessionsAuthPolicy

    class Stop(HTTPPolicy):  # the end of this pipeline: no network, records what would be sent
        sent: list[str] = []

        def send(self, request: PipelineRequest) -> Any:
            Stop.sent.append(request.http_request.headers["Authorization"])
            raise ConnectionAbortedError

    cred = FakeCredential(3600)
    policy = SessionsAuthPolicy(ObservedCredential(cred, SCOPE), SCOPE)  # type: ignore[arg-type]
    policy.next = Stop()  # type: ignore[assignment]
    for _ in range(8):
        with pytest.raises(ConnectionAbortedError):
            policy.send(PipelineRequest(HttpRequest("GET", "https://x/p"), PipelineContext(None)))
    assert cred.calls == 1 and set(Stop.sent) == {"Bearer token-1"}


def test_execute_modes_and_read_timeouts() -> None:
    modes = client_mod.execute_modes("2025-10-02-preview")
    assert [str(m) for m in modes] == [
        "executions/flat@2025-10-02-preview", "executions/wrapped@2025-10-02-preview",
        "code/execute/wrapped@2024-02-02-preview",
    ]
    assert [str(m) for m in client_mod.execute_modes("2024-08-02-preview")] == ["code/execute/wrapped@2024-08-02-preview"]
    c = client_mod.SessionsClient("http://x/pool", None, api_version="2025-10-02-preview",  # type: ignore[arg-type]
                                  request_timeout=240)
    assert c.execute_read_timeout(10) == 25
    c.request_timeout = 8
    assert c.execute_read_timeout(5) == 8 and c.execute_read_timeout(10) == 12


def test_backoff_is_bounded_and_honours_retry_after() -> None:
    for attempt in range(10):
        wait = client_mod.backoff(attempt, None)
        assert 0.2 <= wait <= client_mod.BACKOFF_CAP_S
    assert 3 <= client_mod.backoff(0, 3.0) <= 3.5
    assert client_mod._retry_after("2") == 2.0
    assert client_mod._retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert client_mod._retry_after("100000") == client_mod.RETRY_AFTER_CAP_S


def test_long_batches_are_split_under_the_execution_cap() -> None:
    lim = Limits(timeout_ms=3000, cpu_time_ms=3000, memory_bytes=-1, output_max_size=1024, max_processes=8,
                 max_open_files=64, max_file_size=10)
    specs = [RunSpec("", (), lim)] * 100
    chunks = _chunks(specs)
    assert sum(len(c) for c in chunks) == 100 and len(chunks) > 1
    assert all(sum(s.limits.timeout_ms + 500 for s in c) <= 110_000 for c in chunks)
    assert _chunks([RunSpec("", (), lim)]) == [[RunSpec("", (), lim)]]


def test_fingerprint_hides_the_identifier() -> None:
    ident = new_identifier()
    assert ident not in fingerprint(ident) and len(fingerprint(ident)) == 10
