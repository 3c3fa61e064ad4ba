"""The pool management endpoint: configured, or read once from ARM (``Microsoft.App/sessionPools``)."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceNotFoundError

from backend.config import Settings

log = logging.getLogger(__name__)


class EndpointError(Exception):
    """The endpoint could not be resolved; the message names the pool and the reason."""


def resolve_endpoint(settings: Settings, credential: TokenCredential) -> str:
    """``POOL_MANAGEMENT_ENDPOINT`` if set, else ``properties.poolManagementEndpoint`` of the pool."""
    if settings.pool_management_endpoint:
        return settings.pool_management_endpoint.rstrip("/")
    from azure.mgmt.appcontainers import ContainerAppsAPIClient

    pool = f"{settings.azure_resource_group}/{settings.session_pool_name}"
    kwargs: dict[str, Any] = {}
    if settings.azure_resource_manager_url:
        kwargs["base_url"] = settings.azure_resource_manager_url
    call: dict[str, Any] = {}
    if urlsplit(settings.azure_resource_manager_url).scheme == "http":
        # azure-core refuses to send a bearer token over plain http; only a local ARM
        # stand-in (the emulator) is ever http, so relax it for exactly that case.
        call["enforce_https"] = False
    try:
        with ContainerAppsAPIClient(credential, settings.azure_subscription_id, **kwargs) as client:
            resource = client.container_apps_session_pools.get(
                settings.azure_resource_group, settings.session_pool_name, **call
            )
    except ResourceNotFoundError as exc:
        raise EndpointError(f"session pool {pool} not found in subscription {settings.azure_subscription_id}") from exc
    except (AzureError, ValueError, OSError) as exc:
        message = " ".join(str(getattr(exc, "message", None) or exc).split())[:500]
        raise EndpointError(f"reading session pool {pool} from ARM failed: {message}") from exc
    properties = getattr(resource, "properties", None)
    endpoint = getattr(properties, "pool_management_endpoint", None) or getattr(
        resource, "pool_management_endpoint", None
    )
    if not endpoint:
        raise EndpointError(f"session pool {pool} has no poolManagementEndpoint (still provisioning?)")
    log.info("session pool %s resolved through ARM", pool)
    return str(endpoint).rstrip("/")
