"""Signed permit tokens: ES256 JWTs (RFC 7519) a warden's device can check offline.

The token names the permit (``jti``), the plate and the zone, and when it is valid; it holds
nothing about the resident. The portal's signing key is created on first start (mode 0600)
and its public half published at ``/jwks.json``. No Flask here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import ExpiredTokenError
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from ..private_files import read_or_create

__all__ = [
    "TOKEN_TYPE",
    "PermitTokenExpired",
    "PermitTokenInvalid",
    "load_signing_key",
    "sign_permit_token",
    "verify_permit_token",
]

ALGORITHM = "ES256"
TOKEN_TYPE = "permit+jwt"  # noqa: S105 -- the JWT "typ" header, not a secret
MAX_TOKEN_LENGTH = 4096


class PermitTokenInvalid(ValueError):
    """Not a permit token of this portal: malformed, forged, altered or for another issuer."""


class PermitTokenExpired(PermitTokenInvalid):
    """Genuine, but its ``exp`` has passed."""


def _new_key() -> bytes:
    key = ECKey.generate_key("P-256", private=True)
    document = key.as_dict(private=True)
    document["kid"] = key.thumbprint()
    return json.dumps(document).encode()


def load_signing_key(path: Path) -> ECKey:
    """The portal's key from ``path``, created there (mode 0600) if missing."""
    return ECKey.import_key(json.loads(read_or_create(path, _new_key)))


def public_jwks(key: ECKey) -> dict[str, Any]:
    return {"keys": [{**key.as_dict(private=False), "use": "sig", "alg": ALGORITHM}]}


def sign_permit_token(claims: dict[str, Any], *, key: ECKey) -> str:
    header = {"alg": ALGORITHM, "typ": TOKEN_TYPE, "kid": key.kid}
    return jwt.encode(header, claims, key)


def verify_permit_token(token: str, *, key: ECKey, expected_issuer: str) -> dict[str, Any]:
    """The claims of a genuine, unexpired token; anything else raises."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise PermitTokenInvalid("empty or oversized token")
    try:
        decoded = jwt.decode(token.strip(), key, algorithms=[ALGORITHM])
    except (JoseError, ValueError) as exc:
        raise PermitTokenInvalid(str(exc)) from exc
    if decoded.header.get("typ") != TOKEN_TYPE:
        raise PermitTokenInvalid("not a permit token")
    registry = jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": expected_issuer},
        jti={"essential": True},
        exp={"essential": True},
        nbf={"essential": True},
        plate={"essential": True},
        zone={"essential": True},
    )
    try:
        registry.validate(decoded.claims)
    except ExpiredTokenError as exc:
        raise PermitTokenExpired(str(exc)) from exc
    except (JoseError, ValueError) as exc:
        raise PermitTokenInvalid(str(exc)) from exc
    return decoded.claims
