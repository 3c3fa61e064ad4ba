"""The managed-identity token endpoint, as Container Apps exposes it to an app [DOC managed-identity.md].

``GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=<uri>[&client_id=|principal_id=|object_id=|mi_res_id=]``
with header ``X-IDENTITY-HEADER: {IDENTITY_HEADER}``. This is exactly what azure-identity 1.27's
``ManagedIdentityCredential`` sends through MSAL's App Service flow (msal/managed_identity.py,
``_obtain_token_on_app_service``: params api-version+resource(+client_id/mi_res_id/object_id), headers
X-IDENTITY-HEADER and Metadata), so an unmodified ``DefaultAzureCredential`` works against it.
MSAL requires ``access_token`` and ``expires_on`` (epoch seconds) and reads ``statusCode``/``message``
from error bodies.
"""

from __future__ import annotations

import hmac
import re

from flask import Blueprint, Response, jsonify, request

from .checks import get_emulator, operation
from .errors import EmulatorError, bad_request
from .settings import MSI_API_VERSION, Identity, Settings

bp = Blueprint("identity", __name__)

_RESOURCE_RE = re.compile(r"^(https?|api)://\S+$")


@bp.get("/msi/token")
@operation("token")
def token() -> Response:
    emu = get_emulator()
    cfg = emu.config()
    header = request.headers.get("X-IDENTITY-HEADER")
    # Guess: status codes; the docs only say the header is required (it is an SSRF guard).
    if header is None:
        raise bad_request("MissingIdentityHeader", "The request is missing the required X-IDENTITY-HEADER header.")
    if not hmac.compare_digest(header.encode(), cfg.identity_header.encode()):
        raise EmulatorError(401, "InvalidIdentityHeader", "The X-IDENTITY-HEADER header value is not valid.")
    version = request.args.get("api-version")
    if version != MSI_API_VERSION:
        raise bad_request("InvalidApiVersion", f"api-version must be {MSI_API_VERSION}, got {version!r}.")
    resource = request.args.get("resource", "")
    if not resource:
        raise bad_request("MissingResource", "The resource query parameter is required.")
    if not _RESOURCE_RE.match(resource):
        raise bad_request("InvalidResource", f"The resource '{resource}' is not a valid resource URI.")
    identity = _select_identity(cfg)
    mi_res_id = identity.resource_id(cfg.subscription_id, cfg.resource_group)
    access_token, expires_on = emu.tokens.issue(
        audience=resource, identity=identity, lifetime_s=cfg.token_lifetime_s, mi_resource_id=mi_res_id
    )
    emu.counters.record_token(
        resource=resource, client_id=identity.client_id, principal_id=identity.principal_id, expires_on=expires_on
    )
    return jsonify(
        {
            "access_token": access_token,
            "expires_on": str(expires_on),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": identity.client_id,
        }
    )


def _select_identity(cfg: Settings) -> Identity:
    """System-assigned by default; client_id / principal_id|object_id / mi_res_id pick a user-assigned one."""
    selectors = {
        key: request.args[key] for key in ("client_id", "principal_id", "object_id", "mi_res_id") if request.args.get(key)
    }
    if len(selectors) > 1:
        raise bad_request("InvalidIdentitySelector", f"Only one identity selector may be given, got {sorted(selectors)}.")
    if not selectors:
        for identity in cfg.identities:
            if identity.system_assigned:
                return identity
        raise bad_request("NoSystemAssignedIdentity", "The app has no system-assigned managed identity.")
    key, value = next(iter(selectors.items()))
    for identity in cfg.identities:
        candidates = {
            "client_id": identity.client_id,
            "principal_id": identity.principal_id,
            "object_id": identity.principal_id,
            "mi_res_id": identity.resource_id(cfg.subscription_id, cfg.resource_group),
        }
        if candidates[key] and candidates[key].lower() == value.lower():
            return identity
    # Guess: message text; App Service answers 400 for an identity not assigned to the app.
    raise bad_request("IdentityNotFound", f"No managed identity found for {key}={value}.")
