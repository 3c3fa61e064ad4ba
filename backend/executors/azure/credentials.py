"""Access tokens for the session pool: one credential per process, one cached token, refreshed early.

Container Apps gives the app a managed identity through ``IDENTITY_ENDPOINT`` and
``IDENTITY_HEADER``; azure-identity reads those itself. The token is cached here and
refreshed ahead of expiry (5 min before, or at half-life for short-lived tokens) by one
thread while the others keep using the still-valid one, so no request ever pays for a
token fetch except the very first. Tokens are never logged.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError

from backend.config import Settings

log = logging.getLogger(__name__)

REFRESH_MARGIN_S = 300.0  # refresh this long before expiry...
MIN_VALIDITY_S = 5.0  # ...and never hand out a token with less than this left


class TokenUnavailable(Exception):
    """No token could be obtained; the message says why (never contains a token)."""


def build_credential(settings: Settings) -> TokenCredential:
    """The azure-identity credential for this deployment.

    With ``IDENTITY_ENDPOINT`` set (Container Apps, App Service, the emulator) we build
    ``ManagedIdentityCredential`` directly rather than ``DefaultAzureCredential``: the
    latter would first try EnvironmentCredential and WorkloadIdentityCredential and, when
    the identity endpoint fails, go on to the developer credentials (shared cache, VS Code,
    Azure CLI and PowerShell subprocesses, azd), which costs seconds per attempt and buries
    the real error in a chain of "unavailable" messages. Elsewhere (a developer machine),
    DefaultAzureCredential is the right thing; the interactive browser stays excluded.
    ``AZURE_CLIENT_ID`` selects a user-assigned identity in both cases.
    """
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    client_id = settings.azure_client_id or None
    if settings.identity_endpoint:
        return ManagedIdentityCredential(client_id=client_id)
    return DefaultAzureCredential(managed_identity_client_id=client_id, exclude_interactive_browser_credential=True)


@dataclass(frozen=True)
class _Cached:
    token: str
    expires_on: float
    refresh_at: float


class TokenProvider:
    """Thread-safe cached bearer token for one scope."""

    def __init__(self, credential: TokenCredential, scope: str) -> None:
        self.credential = credential
        self.scope = scope
        self._cached: _Cached | None = None
        self._lock = threading.Lock()  # held while fetching
        self.fetches = 0
        self.last_error: str | None = None

    def token(self) -> str:
        cached = self._cached
        now = time.time()
        if cached is not None and now < cached.refresh_at:
            return cached.token
        if cached is not None and now < cached.expires_on - MIN_VALIDITY_S:
            # In the refresh window: one caller refreshes, the others go on with the valid token.
            if self._lock.acquire(blocking=False):
                try:
                    self._refresh_locked(keep_on_error=True)
                finally:
                    self._lock.release()
            return (self._cached or cached).token
        with self._lock:
            cached = self._cached
            if cached is not None and time.time() < cached.expires_on - MIN_VALIDITY_S:
                return cached.token  # another thread fetched it while we waited
            return self._refresh_locked(keep_on_error=False)

    def invalidate(self, token: str | None = None) -> None:
        """Forget the cached token (after a 401/403), unless another thread already replaced it."""
        with self._lock:
            if self._cached is not None and (token is None or self._cached.token == token):
                self._cached = None

    def expires_in(self) -> float | None:
        cached = self._cached
        return None if cached is None else cached.expires_on - time.time()

    def _refresh_locked(self, *, keep_on_error: bool) -> str:
        fetched_at = time.time()
        try:
            access = self.credential.get_token(self.scope)
        except (AzureError, ValueError, OSError) as exc:
            self.last_error = _describe(exc)
            if keep_on_error and self._cached is not None:
                log.warning("refreshing the session pool token failed (will retry): %s", self.last_error)
                return self._cached.token
            raise TokenUnavailable(f"cannot obtain a token for {self.scope}: {self.last_error}") from exc
        self.fetches += 1
        self.last_error = None
        lifetime = max(0.0, access.expires_on - fetched_at)
        margin = min(REFRESH_MARGIN_S, lifetime / 2)
        self._cached = _Cached(access.token, float(access.expires_on), access.expires_on - margin)
        log.info("obtained a session pool token valid for %.0f s", lifetime)
        return access.token


def _describe(exc: BaseException) -> str:
    message: Any = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    text = " ".join(str(message).split())
    return text[:500]
