"""The attributes a service provider may ask for, named as the federal BundID names them.

Each is an ``urn:oid:`` name in the URI name format (SAML V2.0 X.500/LDAP Attribute Profile),
the name BundID's documentation uses, and releases what one OIDC claim of the phone's list
stands for: the citizen sees and approves the same list whichever protocol asks. The address is
released as BundID splits it (street, postal code, locality, country).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..citizens.models import Citizen

__all__ = [
    "ATTRIBUTES",
    "NAME_FORMAT_URI",
    "Attribute",
    "attribute_map",
    "attribute_values",
    "claims_for",
    "known",
]

NAME_FORMAT_URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"


@dataclass(frozen=True)
class Attribute:
    name: str  # the urn:oid: name
    friendly_name: str
    claim: str  # the OIDC claim the phone lists for it


ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("urn:oid:2.5.4.42", "givenName", "given_name"),
    Attribute("urn:oid:2.5.4.4", "surname", "family_name"),
    Attribute("urn:oid:1.2.40.0.10.2.1.1.55", "birthDate", "birthdate"),
    Attribute("urn:oid:2.5.4.16", "postalAddress", "address"),
    Attribute("urn:oid:2.5.4.17", "postalCode", "address"),
    Attribute("urn:oid:2.5.4.7", "localityName", "address"),
    Attribute("urn:oid:1.2.40.0.10.2.1.1.225599", "countryCode", "address"),
    Attribute("urn:oid:0.9.2342.19200300.100.1.3", "mail", "email"),
)
_BY_NAME = {a.name: a for a in ATTRIBUTES}


def known(name: str) -> bool:
    return name in _BY_NAME


def claims_for(names: Iterable[str]) -> tuple[str, ...]:
    """The phone's list for ``names``: the pseudonym first, then each claim once."""
    claims = ["sub"]
    for name in names:
        attribute = _BY_NAME.get(name)
        if attribute is not None and attribute.claim not in claims:
            claims.append(attribute.claim)
    return tuple(claims)


def attribute_values(citizen: Citizen, names: Iterable[str]) -> dict[str, list[str]]:
    """``{friendly name: [value]}`` of ``names`` for ``citizen`` (pysaml2's identity)."""
    values = {
        "givenName": citizen.given_name,
        "surname": citizen.family_name,
        "birthDate": citizen.birthdate.isoformat(),
        "postalAddress": citizen.street,
        "postalCode": citizen.postcode,
        "localityName": citizen.city,
        "countryCode": "DE",
        "mail": citizen.email or "",
    }
    released: dict[str, list[str]] = {}
    for name in names:
        attribute = _BY_NAME.get(name)
        if attribute is not None and values[attribute.friendly_name]:
            released[attribute.friendly_name] = [values[attribute.friendly_name]]
    return released


def attribute_map() -> dict[str, object]:
    """pysaml2's attribute converter map: friendly names to ``urn:oid:`` names and back."""
    return {
        "identifier": NAME_FORMAT_URI,
        "fro": {a.name: a.friendly_name for a in ATTRIBUTES},
        "to": {a.friendly_name: a.name for a in ATTRIBUTES},
    }
