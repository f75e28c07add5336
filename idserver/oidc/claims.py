"""Which claims a scope releases, and the pairwise subject identifier.

Scopes map to standard claim names (OIDC Core §5.4); ``birthdate`` is its own scope so a
relying party gets a date of birth only when it asks for it. ``sub`` is pairwise per relying
party (OIDC Core §8.1): two municipal applications cannot link the same citizen. ``sid``
names the browser session at Bürger-ID (OIDC Front-/Back-Channel Logout 1.0 §2/§3).

The ``claims`` request parameter (OIDC Core §5.5) asks for single claims in the ID token or at
userinfo, voluntary or essential. Only standard names of scopes the client is registered for
count (``requested_claims``); the rest is ignored, so a request never gets more than the client
may get, and what it gets is listed on the phone before the citizen approves.

A ``login_hint`` is the pairwise ``sub`` the relying party got earlier (``hinted_citizen``); the
login then counts only when that citizen approves it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oidc.core import UserInfo
from sqlalchemy import select

from ..citizens.models import Citizen
from ..citizens.models import CitizenRecord
from ..db import db
from ..keys import key_store
from .models import Token

__all__ = [
    "CLAIMS_TARGETS",
    "SCOPES",
    "SCOPE_CLAIMS",
    "ClaimsRequest",
    "claim_names",
    "claims_for_scope",
    "hinted_citizen",
    "requested_claims",
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
CLAIMS_TARGETS = ("id_token", "userinfo")  # the members of a claims request (OIDC Core §5.5)
MAX_CLAIMS_REQUEST = 4000  # characters; a claims request naming every claim is far shorter


def claim_names(scope: str | None) -> list[str]:
    names: list[str] = []
    for item in scope_to_list(scope) or []:
        names.extend(n for n in SCOPE_CLAIMS.get(item, ()) if n not in names)
    return names


@dataclass(frozen=True)
class ClaimsRequest:
    """A validated ``claims`` parameter: per target (``id_token``, ``userinfo``) the claim
    names asked for and which of them are essential; only names the client may get.

    ``verified_userinfo`` holds the names asked for in ``userinfo.verified_claims``
    (``oidc.verified_claims``), kept with the tokens so that userinfo can answer them; the
    ``id_token`` member's are read from the login's request when the ID token is made.
    """

    id_token: tuple[str, ...] = ()
    userinfo: tuple[str, ...] = ()
    essential: tuple[str, ...] = ()
    verified_userinfo: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        """Every claim name asked for, in either target, in a stable order."""
        return list(dict.fromkeys((*self.id_token, *self.userinfo)))

    def as_json(self) -> dict[str, list[str]]:
        stored = {
            "id_token": list(self.id_token),
            "userinfo": list(self.userinfo),
            "essential": list(self.essential),
        }
        if self.verified_userinfo:  # rows stored before it existed have no such member
            stored["verified_userinfo"] = list(self.verified_userinfo)
        return stored

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ClaimsRequest:
        data = data or {}
        fields = (*CLAIMS_TARGETS, "essential", "verified_userinfo")
        return cls(**{field: tuple(data.get(field) or ()) for field in fields})


def requested_claims(raw: str | None, *, allowed_scope: str | None) -> ClaimsRequest:
    """The ``claims`` parameter (OIDC Core §5.5) limited to what ``allowed_scope`` releases.

    Refused with ``invalid_request`` unless it is a JSON object whose ``id_token`` and
    ``userinfo`` members, where present, are objects mapping claim names to null or an object.
    Unknown members and claim names are ignored (§5.5: "not understood" claims are ignored), as
    are names the client's registered scopes do not release: a request never escalates. ``sub``
    is always released; ``value``/``values`` are accepted and not enforced (the claims are the
    register's, not negotiable); an ``acr`` request is not enforced here either.
    """
    if not raw:
        return ClaimsRequest()
    if len(raw) > MAX_CLAIMS_REQUEST:
        raise InvalidRequestError("The 'claims' parameter is too long.")
    try:
        request = json.loads(raw)
    except ValueError as exc:
        raise InvalidRequestError("The 'claims' parameter must be a JSON object.") from exc
    if not isinstance(request, dict):
        raise InvalidRequestError("The 'claims' parameter must be a JSON object.")
    allowed = set(claim_names(allowed_scope))
    chosen: dict[str, list[str]] = {target: [] for target in CLAIMS_TARGETS}
    essential: list[str] = []
    for target in CLAIMS_TARGETS:
        member = request.get(target)
        if member is None:
            continue
        if not isinstance(member, dict):
            raise InvalidRequestError(f"The 'claims' member '{target}' must be a JSON object.")
        for name, spec in member.items():
            if spec is not None and not isinstance(spec, dict):
                raise InvalidRequestError(
                    "Each claim in the 'claims' parameter must be null or a JSON object."
                )
            if spec is not None and not isinstance(spec.get("essential", False), bool):
                raise InvalidRequestError(
                    "'essential' in the 'claims' parameter must be true or false."
                )
            if name not in allowed:
                continue
            chosen[target].append(name)
            if spec and spec.get("essential") and name not in essential:
                essential.append(name)
    return ClaimsRequest(
        id_token=tuple(chosen["id_token"]),
        userinfo=tuple(chosen["userinfo"]),
        essential=tuple(essential),
    )


def pairwise_subject(citizen_id: str, *, client_id: str) -> str:
    """HMAC-SHA256 over the sector (the client) and the citizen, under the server's salt."""
    message = f"{client_id}\x00{citizen_id}".encode()
    digest = hmac.new(key_store().pairwise_salt(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


SUBJECT_LENGTH = 43  # base64url of an HMAC-SHA256, unpadded


def hinted_citizen(hint: str | None, *, client_id: str) -> str | None:
    """The citizen whose pairwise ``sub`` at ``client_id`` is ``hint``, or None.

    Only the client's own citizens can be named: those it received tokens for (the only way it
    learnt a ``sub``). The pairwise ``sub`` cannot be inverted, so each of them is derived and
    compared: linear in the client's citizens (read from the ``(client_id, citizen_id)`` index,
    about a microsecond of HMAC each). Every candidate is derived and compared in constant time
    whether or not one matches, so a known and an unknown ``sub`` take the same work: the hint
    is no oracle for who uses the service. Anything that is not shaped like a ``sub`` (an e-mail
    address, a name) names nobody.
    """
    if not isinstance(hint, str) or len(hint) != SUBJECT_LENGTH or not hint.isascii():
        return None
    candidates = db.session.scalars(
        select(Token.citizen_id).where(Token.client_id == client_id).distinct()
    ).all()
    found: str | None = None
    for citizen_id in candidates:
        if hmac.compare_digest(pairwise_subject(citizen_id, client_id=client_id), hint):
            found = citizen_id
    return found


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


def claims_for_scope(
    citizen: Citizen | CitizenRecord,
    scope: str | None,
    *,
    client_id: str,
    also: tuple[str, ...] = (),
) -> UserInfo:
    """The claims ``scope`` releases, and the names in ``also`` (a validated claims request)."""
    names = set(claim_names(scope)) | set(also)
    info = UserInfo(sub=pairwise_subject(citizen.id, client_id=client_id))
    if names & {"name", "given_name", "family_name"}:
        profile = {
            "given_name": citizen.given_name,
            "family_name": citizen.family_name,
            "name": f"{citizen.given_name} {citizen.family_name}",
        }
        info.update({key: value for key, value in profile.items() if key in names})
    if names & {"email", "email_verified"} and citizen.email:
        if "email" in names:
            info["email"] = citizen.email
        if "email_verified" in names:
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
