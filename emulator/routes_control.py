"""The emulator's own control API under ``/_emulator`` (never mixed with service routes; no auth).

``GET /health``, ``GET /state``, ``POST|GET|DELETE /faults``, ``DELETE /faults/{id}``, ``POST /reset``,
``GET|POST /config`` (runtime overrides, see settings.RUNTIME_KEYS), ``POST /tokens`` (mint a token
directly, e.g. an expired one or for an arbitrary principal, without going through /msi/token).
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, jsonify, request

from .checks import get_emulator
from .errors import bad_request, not_found
from .faults import parse_rule
from .settings import DATA_PLANE_AUDIENCE, Identity

bp = Blueprint("control", __name__, url_prefix="/_emulator")


def _body() -> Any:
    body = request.get_json(force=True, silent=True)
    if body is None:
        raise bad_request("InvalidRequestBody", "The request body must be JSON.")
    return body


@bp.get("/health")
def health() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/state")
def state() -> Response:
    snapshot = get_emulator().snapshot()
    snapshot["base_url"] = request.host_url.rstrip("/")
    return jsonify(snapshot)


@bp.post("/faults")
def add_faults() -> Response:
    """Body: one rule, a list of rules, or {"faults": [...]}; answers 201 with the stored rules."""
    body = _body()
    raw = body.get("faults") if isinstance(body, dict) and "faults" in body else body
    items = raw if isinstance(raw, list) else [raw]
    try:
        rules = [parse_rule(item) for item in items]
    except ValueError as exc:
        raise bad_request("InvalidFaultRule", str(exc)) from None
    store = get_emulator().faults
    response = jsonify({"faults": [store.add(rule).to_json() for rule in rules]})
    response.status_code = 201
    return response


@bp.get("/faults")
def list_faults() -> Response:
    return jsonify({"faults": get_emulator().faults.list()})


@bp.delete("/faults")
def clear_faults() -> Response:
    get_emulator().faults.clear()
    return Response(status=204)


@bp.delete("/faults/<rule_id>")
def delete_fault(rule_id: str) -> Response:
    if not get_emulator().faults.remove(rule_id):
        raise not_found("FaultNotFound", f"No fault rule with id '{rule_id}'.")
    return Response(status=204)


@bp.post("/reset")
def reset() -> Response:
    get_emulator().reset()
    return Response(status=204)


@bp.get("/config")
def get_config() -> Response:
    return jsonify(get_emulator().config().public())


@bp.post("/config")
def set_config() -> Response:
    body = _body()
    if not isinstance(body, dict):
        raise bad_request("InvalidRequestBody", "The request body must be a JSON object.")
    try:
        config = get_emulator().configure(**body)
    except (TypeError, ValueError) as exc:
        raise bad_request("InvalidConfig", str(exc)) from None
    return jsonify(config.public())


@bp.post("/tokens")
def mint_token() -> Response:
    """{"resource"?, "client_id"?, "principal_id"?, "lifetime_s"?, "claims"?} -> a signed token.

    Tokens minted here are not counted in ``tokens_issued`` (that counts /msi/token only).
    """
    body = _body()
    if not isinstance(body, dict):
        raise bad_request("InvalidRequestBody", "The request body must be a JSON object.")
    emu = get_emulator()
    cfg = emu.config()
    client_id, principal_id = body.get("client_id"), body.get("principal_id")
    identity = next(
        (i for i in cfg.identities if (client_id or principal_id) in (i.client_id, i.principal_id)),
        None,
    )
    if identity is None and (client_id or principal_id):
        identity = Identity(client_id or str(uuid.uuid4()), principal_id or str(uuid.uuid4()), "adhoc")
    if identity is None:
        identity = cfg.identities[0]
    lifetime = body.get("lifetime_s", cfg.token_lifetime_s)
    claims = body.get("claims") or {}
    if isinstance(lifetime, bool) or not isinstance(lifetime, int) or not isinstance(claims, dict):
        raise bad_request("InvalidRequestBody", "lifetime_s must be an integer and claims an object.")
    resource = str(body.get("resource") or DATA_PLANE_AUDIENCE)
    token, expires_on = emu.tokens.issue(audience=resource, identity=identity, lifetime_s=lifetime, extra_claims=claims)
    return jsonify(
        {
            "access_token": token,
            "expires_on": str(expires_on),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": identity.client_id,
            "principal_id": identity.principal_id,
        }
    )
