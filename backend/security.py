"""Optional API keys (constant-time comparison) and CORS."""

from __future__ import annotations

import hmac

from flask import Flask, request

from backend.errors import Unauthorized

# Probes and scrapers of the platform reach these without a key.
OPEN_PATHS = frozenset({"/health", "/ready"})


def _presented_key() -> str | None:
    header = request.headers.get("X-API-Key")
    if header:
        return header.strip()
    auth = request.headers.get("Authorization", "").strip()
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return auth or None  # Piston clients send the raw key, as emkc.org expects


def install_api_keys(app: Flask, keys: tuple[str, ...]) -> None:
    if not keys:
        return
    encoded = [k.encode() for k in keys]

    @app.before_request
    def check_key() -> None:
        if request.method == "OPTIONS" or request.path.rstrip("/") in OPEN_PATHS:
            return
        presented = _presented_key()
        # Compare against every key, always, so timing says nothing about which one nearly matched.
        matched = False
        for key in encoded:
            matched |= hmac.compare_digest(key, (presented or "").encode())
        if not matched:
            raise Unauthorized("a valid API key is required (Authorization or X-API-Key header)")


def install_cors(app: Flask, origins: tuple[str, ...]) -> None:
    if not origins:
        return
    from flask_cors import CORS

    CORS(app, origins=list(origins), expose_headers=["X-Request-ID", "X-Piston-Notes"], max_age=600)
