"""Access tokens for the session pool: one credential per process, observed.

Container Apps gives the app a managed identity through ``IDENTITY_ENDPOINT`` and
``IDENTITY_HEADER``; azure-identity reads those itself. azure-core's
BearerTokenCredentialPolicy caches the token and refreshes it at the ``refresh_on`` the
credential gives; ``ObservedCredential`` has a token refreshed before its last 5 min (its
last half, for short-lived tokens) and records fetches and the last error for /health and
/metrics. Tokens are never logged.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from azure.core.credentials import AccessTokenInfo, TokenCredential, TokenRequestOptions
from azure.core.exceptions import AzureError, ClientAuthenticationError

from backend.config import Settings

log = logging.getLogger(__name__)

REFRESH_MARGIN_S = 300.0  # never use a token this close to expiry (half its life, if shorter)
REFRESH_JITTER_S = 60.0  # azure-core's refresh jitter (MAX_REFRESH_JITTER_SECONDS)


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


class ObservedCredential:
    """A TokenCredential (and SupportsTokenInfo) around the real one: refresh timing and counts."""

    def __init__(self, credential: TokenCredential, scope: str) -> None:
        self.credential = credential
        self.scope = scope
        self.fetches = 0
        self.last_error: str | None = None
        self._expires_on: float | None = None
        self._lock = threading.Lock()

    def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        fetched_at = time.time()
        try:
            getter = getattr(self.credential, "get_token_info", None)
            access: Any = getter(*scopes, options=options) if getter else self.credential.get_token(*scopes)
        except (AzureError, ValueError, OSError) as exc:
            self.last_error = _describe(exc)
            raise ClientAuthenticationError(f"cannot obtain a token for {self.scope}: {self.last_error}") from exc
        lifetime = max(0.0, access.expires_on - fetched_at)
        margin = min(REFRESH_MARGIN_S, lifetime / 2)
        # The policy refreshes at refresh_on plus up to a minute of its own jitter, capped at the
        # expiry it is told: so it is told the end of our window, and refresh_on comes before it.
        usable_until = int(access.expires_on - margin)
        refresh_on = int(access.expires_on - margin - min(REFRESH_JITTER_S, margin / 2))
        with self._lock:
            self.fetches += 1
            self.last_error = None
            self._expires_on = float(access.expires_on)
        log.info("obtained a session pool token valid for %.0f s", lifetime)
        return AccessTokenInfo(access.token, usable_until, refresh_on=refresh_on)

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        info = self.get_token_info(*scopes)
        from azure.core.credentials import AccessToken

        return AccessToken(info.token, info.expires_on)

    def check(self) -> None:
        """Can a token be had (the readiness check)? Raises TokenUnavailable with the reason."""
        try:
            self.get_token_info(self.scope)
        except ClientAuthenticationError as exc:
            raise TokenUnavailable(str(exc.message)) from exc

    def expires_in(self) -> float | None:
        expires = self._expires_on
        return None if expires is None else expires - time.time()


def _describe(exc: BaseException) -> str:
    message: Any = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    text = " ".join(str(message).split())
    return text[:500]
