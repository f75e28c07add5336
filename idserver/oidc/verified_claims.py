"""``verified_claims`` in the ID token and at userinfo: OpenID Connect for Identity Assurance 1.0.

A relying party asks through the ``claims`` parameter (OIDC Core 1.0 §5.5), in its
``id_token`` or ``userinfo`` member (Identity Assurance 1.0 §5; each member is answered where it
was asked, as for every other claim)::

    {"id_token": {"verified_claims": {"verification": {"trust_framework": null},
                                      "claims": {"given_name": null, "birthdate": null}}}}

and gets, for a resident a clerk identified in person (``citizens.proofing_*``)::

    "verified_claims": {
      "verification": {"trust_framework": "de_aml", "evidence": [{
        "type": "document",
        "check_details": [{"check_method": "vpip", "organization": "Bürgerbüro",
                           "time": "2026-11-02"}],
        "document_details": {"type": "idcard"}}]},
      "claims": {"given_name": "Erika", "birthdate": "1984-08-12"}}

Only claims the client's granted scope releases anyway are verified (the phone lists them, and
that evidence will be sent); a resident without a recorded check gets no ``verified_claims``
(Identity Assurance 1.0 §6: the OP omits what it cannot provide). The parsing here reads only
this member of ``claims``; the rest of the parameter is the general claims support's.
"""

from __future__ import annotations

import json
from typing import Any

from ..citizens.models import Citizen
from ..citizens.models import CitizenRecord
from .claims import claim_names
from .claims import claims_for_scope

__all__ = [
    "VERIFIABLE_CLAIMS",
    "essential_acr_values",
    "discovery_metadata",
    "requested_verified_claims",
    "verified_claims_for",
]

VERIFIABLE_CLAIMS = ("given_name", "family_name", "birthdate", "address")
# citizens.models.PROOFING_DOCUMENTS → the IA predefined document types.
DOCUMENT_TYPES = {
    "id_card": "idcard",
    "passport": "passport",
    "residence_permit": "residence_permit",
}
CHECK_METHOD = "vpip"  # IA predefined values: physical document verified in person


def _member(claims_param: str | None, target: str) -> dict[str, Any]:
    """``claims.<target>`` (``id_token`` or ``userinfo``, OIDC Core 1.0 §5.5), or {};
    ``ValueError`` for a ``claims`` value that is not a JSON object."""
    if not claims_param:
        return {}
    try:
        claims = json.loads(claims_param)
    except ValueError as exc:
        raise ValueError("'claims' is not JSON") from exc
    if not isinstance(claims, dict):
        raise ValueError("'claims' is not a JSON object")
    member = claims.get(target)
    return member if isinstance(member, dict) else {}


def essential_acr_values(claims_param: str | None) -> list[str]:
    """The values of an essential ``acr`` claim request (OIDC Core 1.0 §5.5.1.1), or []."""
    request = _member(claims_param, "id_token").get("acr")
    if not isinstance(request, dict) or request.get("essential") is not True:
        return []
    values = request.get("values", [request.get("value")])
    if not isinstance(values, list):
        return []
    return [value for value in values if isinstance(value, str)]


def requested_verified_claims(
    claims_param: str | None, *, target: str = "id_token"
) -> list[str] | None:
    """The claim names asked for in ``claims.<target>.verified_claims``, or None if it is not
    asked for. Raises ``ValueError`` for a ``claims`` value that is not a JSON object."""
    request = _member(claims_param, target).get("verified_claims")
    if not isinstance(request, dict) or not isinstance(request.get("claims"), dict):
        return None
    return [name for name in VERIFIABLE_CLAIMS if name in request["claims"]]


def verified_claims_for(
    citizen: Citizen | CitizenRecord,
    requested: list[str],
    *,
    scope: str,
    client_id: str,
    trust_framework: str,
) -> dict[str, Any] | None:
    """The ``verified_claims`` element for ``citizen``, or None without a check in person."""
    if not trust_framework or not citizen.proofing_document or citizen.proofed_on is None:
        return None
    allowed = set(claim_names(scope))
    released = claims_for_scope(citizen, scope, client_id=client_id)
    claims = {name: released[name] for name in requested if name in allowed and name in released}
    if not claims:
        return None
    evidence = {
        "type": "document",
        "check_details": [
            {
                "check_method": CHECK_METHOD,
                "organization": citizen.proofing_office or "",
                "time": citizen.proofed_on.isoformat(),
            }
        ],
        "document_details": {"type": DOCUMENT_TYPES[citizen.proofing_document]},
    }
    return {
        "verification": {"trust_framework": trust_framework, "evidence": [evidence]},
        "claims": claims,
    }


def discovery_metadata(trust_framework: str) -> dict[str, Any]:
    """Identity Assurance 1.0 §8 (OP metadata), or nothing while it is switched off."""
    if not trust_framework:
        return {}
    return {
        "verified_claims_supported": True,
        "trust_frameworks_supported": [trust_framework],
        "evidence_supported": ["document"],
        "documents_supported": sorted(set(DOCUMENT_TYPES.values())),
        "documents_check_methods_supported": [CHECK_METHOD],
        "claims_in_verified_claims_supported": list(VERIFIABLE_CLAIMS),
    }
