"""The pool management endpoint and kind: configured, or read once from ARM (``Microsoft.App/sessionPools``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceNotFoundError

from backend.config import PoolType, Settings

log = logging.getLogger(__name__)


class EndpointError(Exception):
    """The endpoint could not be resolved; the message names the pool and the reason."""


# [DOC sessions-custom-container.md] custom-container pools answer at
# https://<pool>.<environment-id>.<region>.azurecontainerapps.io; code interpreters at
# https://<region>.dynamicsessions.io/subscriptions/...
CUSTOM_CONTAINER_HOST_SUFFIX = ".azurecontainerapps.io"


@dataclass(frozen=True)
class PoolTarget:
    endpoint: str
    pool_type: PoolType  # never AUTO


def resolve_endpoint(settings: Settings, credential: TokenCredential) -> str:
    return resolve_pool(settings, credential).endpoint


def resolve_pool(settings: Settings, credential: TokenCredential) -> PoolTarget:
    """The endpoint (``POOL_MANAGEMENT_ENDPOINT`` or ARM's ``poolManagementEndpoint``) and the pool type
    (``SESSION_POOL_TYPE``, else ARM's ``containerType``, else the endpoint's documented form)."""
    configured = settings.session_pool_type
    if settings.pool_management_endpoint:
        endpoint = settings.pool_management_endpoint.rstrip("/")
        if configured is PoolType.AUTO:
            host = urlsplit(endpoint).hostname or ""
            configured = PoolType.CUSTOM_CONTAINER if host.endswith(CUSTOM_CONTAINER_HOST_SUFFIX) \
                else PoolType.PYTHON_LTS
        return PoolTarget(endpoint, configured)
    endpoint, container_type = _read_arm(settings, credential)
    if configured is PoolType.AUTO:
        configured = PoolType.CUSTOM_CONTAINER if container_type == PoolType.CUSTOM_CONTAINER.value \
            else PoolType.PYTHON_LTS
    return PoolTarget(endpoint, configured)


def _read_arm(settings: Settings, credential: TokenCredential) -> tuple[str, str]:
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
    raw_type = getattr(properties, "container_type", None) or ""
    container_type = str(getattr(raw_type, "value", raw_type))  # the SDK may hand back its own enum
    log.info("session pool %s resolved through ARM (containerType %s)", pool, container_type or "not given")
    return str(endpoint).rstrip("/"), container_type
