"""Which claims a scope releases, and the pairwise subject identifier.

Scopes map to standard claim names (OIDC Core §5.4); ``birthdate`` is its own scope so a
relying party gets a date of birth only when it asks for it. ``sub`` is pairwise per relying
party (OIDC Core §8.1): two municipal applications cannot link the same citizen. ``sid``
names the browser session at Bürger-ID (OIDC Front-/Back-Channel Logout 1.0 §2/§3).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oidc.core import UserInfo

from ..citizens.models import Citizen
from ..keys import key_store

__all__ = [
    "SCOPES",
    "SCOPE_CLAIMS",
    "claim_names",
    "claims_for_scope",
    "pairwise_subject",
    "session_identifier",
]

SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "openid": ("sub",),
    "profile": ("name", "given_name", "family_name"),
    "email": ("email", "email_verified"),
    "address": ("address",),
    "birthdate": ("birthdate",),
}
SCOPES = tuple(SCOPE_CLAIMS)  # every scope the server knows: discovery, server, client checks


def claim_names(scope: str | None) -> list[str]:
    names: list[str] = []
    for item in scope_to_list(scope) or []:
        names.extend(n for n in SCOPE_CLAIMS.get(item, ()) if n not in names)
    return names


def pairwise_subject(citizen_id: str, *, client_id: str) -> str:
    """HMAC-SHA256 over the sector (the client) and the citizen, under the server's salt."""
    message = f"{client_id}\x00{citizen_id}".encode()
    digest = hmac.new(key_store().pairwise_salt(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def session_identifier(login_id: str) -> str:
    """The ``sid`` of the browser session the login ``login_id`` started.

    A session starts with exactly one login (``sessions.BrowserSession.login_id``), so every ID
    token of that session carries the same ``sid``, and it can be computed again from the session
    row. Keyed: it reveals neither the login id (part of the login's URL) nor the session id
    (the cookie's secret). The key is derived from the pairwise salt, which is never rotated, under
    a label of its own; pairwise ``sub`` messages always contain a NUL, the label does not.
    """
    key = hmac.new(key_store().pairwise_salt(), b"sid", hashlib.sha256).digest()
    digest = hmac.new(key, login_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def claims_for_scope(citizen: Citizen, scope: str | None, *, client_id: str) -> UserInfo:
    names = set(claim_names(scope))
    info = UserInfo(sub=pairwise_subject(citizen.id, client_id=client_id))
    if "given_name" in names:
        info["given_name"] = citizen.given_name
        info["family_name"] = citizen.family_name
        info["name"] = f"{citizen.given_name} {citizen.family_name}"
    if "email" in names and citizen.email:
        info["email"] = citizen.email
        info["email_verified"] = False  # registered by a clerk, not verified by mail
    if "address" in names:
        info["address"] = {
            "street_address": citizen.street,
            "postal_code": citizen.postcode,
            "locality": citizen.city,
            "country": "DE",
            "formatted": f"{citizen.street}\n{citizen.postcode} {citizen.city}",
        }
    if "birthdate" in names:
        info["birthdate"] = citizen.birthdate.isoformat()
    return info
