"""A sliver of Azure Resource Manager: read the session pool so clients can resolve its endpoint.

``ContainerAppsAPIClient(cred, sub, base_url=<emulator>).container_apps_session_pools.get(rg, pool)``
lands here. The client asks for a token for ``https://management.azure.com/.default`` (its default
``credential_scopes``), so ARM accepts that audience only. azure-core refuses to send a bearer token over
plain http unless the call passes ``enforce_https=False`` (azure/core/pipeline/policies/_authentication.py
``_enforce_https``), e.g. ``client.container_apps_session_pools.get(rg, pool, enforce_https=False)``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from .auth import authenticate
from .checks import get_emulator, operation
from .errors import bad_request, not_found
from .sessions import iso
from .settings import ARM_AUDIENCES, Settings
from .state import Emulator

bp = Blueprint("arm", __name__)

POOLS = "/providers/Microsoft.App/sessionPools"
# ARM api-versions up to 2024-10-02-preview use dynamicPoolConfiguration{executionType, cooldown...};
# 2025-01-01 and later nest it in lifecycleConfiguration [SPEC 2025-07-01; Bicep types].
_OLD_POOL_SHAPE_VERSIONS = ("2024-02-02-preview", "2024-08-02-preview", "2024-10-02-preview")


def _prologue(emu: Emulator) -> str:
    authenticate(request, emu.tokens, ARM_AUDIENCES)
    version = request.args.get("api-version")
    if not version:
        raise bad_request(
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    return version


def _check_scope(cfg: Settings, sub: str, rg: str | None) -> None:
    # ARM names are case-insensitive.
    if sub.lower() != cfg.subscription_id.lower():
        raise not_found("SubscriptionNotFound", f"The subscription '{sub}' could not be found.")
    if rg is not None and rg.lower() != cfg.resource_group.lower():
        raise not_found("ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")


@bp.get(f"/subscriptions/<sub>/resourceGroups/<rg>{POOLS}/<pool>")
@operation("arm")
def get_pool(sub: str, rg: str, pool: str) -> Response:
    emu = get_emulator()
    version = _prologue(emu)
    cfg = emu.config()
    _check_scope(cfg, sub, rg)
    if pool.lower() != cfg.pool_name.lower():
        raise not_found(
            "ResourceNotFound",
            f"The Resource 'Microsoft.App/sessionPools/{pool}' under resource group '{rg}' was not found. "
            "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
        )
    return _arm_json(pool_resource(emu, version))


@bp.get(f"/subscriptions/<sub>/resourceGroups/<rg>{POOLS}")
@operation("arm")
def list_by_resource_group(sub: str, rg: str) -> Response:
    emu = get_emulator()
    version = _prologue(emu)
    _check_scope(emu.config(), sub, rg)
    return _arm_json({"value": [pool_resource(emu, version)], "nextLink": None})


@bp.get(f"/subscriptions/<sub>{POOLS}")
@operation("arm")
def list_by_subscription(sub: str) -> Response:
    emu = get_emulator()
    version = _prologue(emu)
    _check_scope(emu.config(), sub, None)
    return _arm_json({"value": [pool_resource(emu, version)], "nextLink": None})


def pool_resource(emu: Emulator, api_version: str) -> dict[str, Any]:
    """A Microsoft.App/sessionPools resource [SPEC ARM 2025-07-01 SessionPools.json]."""
    cfg = emu.config()
    cooldown = int(cfg.cooldown_s)
    if api_version in _OLD_POOL_SHAPE_VERSIONS:
        dynamic: dict[str, Any] = {"executionType": "Timed", "cooldownPeriodInSeconds": cooldown}
    else:
        dynamic = {"lifecycleConfiguration": {"lifecycleType": "Timed", "cooldownPeriodInSeconds": cooldown}}
    created = iso(emu.started_at)
    return {
        "id": cfg.arm_pool_id,
        "name": cfg.pool_name,
        "type": "Microsoft.App/sessionPools",
        "location": cfg.location,
        "tags": {},
        "systemData": {
            "createdBy": "aca-sessions-emulator",
            "createdByType": "Application",
            "createdAt": created,
            "lastModifiedBy": "aca-sessions-emulator",
            "lastModifiedByType": "Application",
            "lastModifiedAt": created,
        },
        "properties": {
            "containerType": cfg.pool_type,
            "poolManagementType": "Dynamic",
            "nodeCount": len(emu.sessions.list()),
            "scaleConfiguration": {
                "maxConcurrentSessions": cfg.max_sessions,
                "readySessionInstances": cfg.ready_sessions,
            },
            "dynamicPoolConfiguration": dynamic,
            # pythonlts sessions have no network at all; --profile host does not restrict it.
            "sessionNetworkConfiguration": {"status": "EgressDisabled" if cfg.profile == "pythonlts" else "EgressEnabled"},
            # The data-plane URL as this client reached the emulator, like the regional endpoint.
            "poolManagementEndpoint": request.host_url.rstrip("/") + cfg.endpoint_path(),
            "provisioningState": "Succeeded",
        },
    }


def _arm_json(body: dict[str, Any]) -> Response:
    return jsonify(body)  # request/correlation id headers are added by app.after_request
