"""Bearer tokens: minted by the identity endpoint, checked by the data plane and ARM.

Tokens are JWTs signed HS256 with a per-emulator secret (real Entra tokens are RS256; clients never
verify them, so the algorithm does not matter to them). Claims mirror an Entra v1 app token for a
managed identity: ``aud`` = the requested resource, ``oid``/``sub`` = principal id, ``appid`` = client id.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

import jwt
from flask import Request

from .errors import EmulatorError, unauthorized
from .settings import TENANT_ID, Identity

ALGORITHM = "HS256"


class TokenService:
    def __init__(self, secret: str, tenant_id: str = TENANT_ID) -> None:
        self._secret = secret
        self._tenant_id = tenant_id

    @property
    def issuer(self) -> str:
        return f"https://sts.windows.net/{self._tenant_id}/"

    def issue(
        self,
        *,
        audience: str,
        identity: Identity,
        lifetime_s: int,
        mi_resource_id: str = "",
        extra_claims: dict[str, Any] | None = None,
    ) -> tuple[str, int]:
        """Return (token, expires_on epoch seconds). A negative lifetime mints an already expired token."""
        now = int(time.time())
        expires_on = now + int(lifetime_s)
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": self.issuer,
            "iat": min(now, expires_on),
            # Entra backdates nbf a few minutes to absorb clock skew; do the same.
            "nbf": min(now, expires_on) - 300,
            "exp": expires_on,
            "oid": identity.principal_id,
            "sub": identity.principal_id,
            "appid": identity.client_id,
            "appidacr": "2",
            "idtyp": "app",
            "tid": self._tenant_id,
            "uti": uuid.uuid4().hex[:22],
            "ver": "1.0",
        }
        if mi_resource_id:
            claims["xms_mirid"] = mi_resource_id
        claims.update(extra_claims or {})
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM, headers={"typ": "JWT"})
        return token, expires_on

    def validate(self, token: str, audiences: Iterable[str]) -> dict[str, Any]:
        """Check signature, expiry and audience; raise a 401 EmulatorError otherwise."""
        try:
            return jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=list(audiences),
                options={"require": ["exp", "aud", "oid"]},
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("ExpiredAuthenticationToken", "The access token has expired.") from None
        except (jwt.InvalidAudienceError, jwt.MissingRequiredClaimError) as exc:
            if isinstance(exc, jwt.MissingRequiredClaimError) and exc.claim != "aud":
                raise unauthorized("InvalidAuthenticationToken", f"The access token is missing '{exc.claim}'.") from None
            raise unauthorized(
                "InvalidAuthenticationTokenAudience",
                f"The access token has been obtained for wrong audience or resource; expected one of {sorted(audiences)}.",
            ) from None
        except jwt.InvalidSignatureError:
            raise unauthorized("InvalidAuthenticationToken", "The access token signature is invalid.") from None
        except jwt.InvalidTokenError as exc:
            raise unauthorized("InvalidAuthenticationToken", f"The access token is invalid: {exc}.") from None


def bearer_token(request: Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise unauthorized("AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("InvalidAuthenticationToken", "The 'Authorization' header must be 'Bearer <token>'.")
    return token.strip()


def authenticate(request: Request, tokens: TokenService, audiences: Iterable[str]) -> dict[str, Any]:
    """Bearer token of the request, validated; raises EmulatorError (401)."""
    token = bearer_token(request)
    claims = tokens.validate(token, tuple(audiences))
    if not isinstance(claims.get("oid"), str):
        raise EmulatorError(401, "InvalidAuthenticationToken", "The access token has no principal ('oid').")
    return claims
