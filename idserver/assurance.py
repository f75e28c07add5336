"""Assurance levels: how sure the server is that a login is the resident's, and how it says so.

The level of a login is the lower of two (eIDAS Implementing Regulation (EU) 2015/1502, Annex
§2.1 identity proofing and §2.2.1 authentication means; a chain is as strong as its weakest
link)::

    identity proofing ─┐
                       ├─ min ─▶ level of the login ─▶ acr (URN or eIDAS name), STORK-QAA level
    authenticator ─────┘

- **Identity proofing**: a clerk checked an identity document in person (``proofing_document``,
  ``proofed_on``, ``proofing_office`` on the resident): ``IDSERVER_ASSURANCE_IN_PERSON``. A
  resident registered without that record (imported, or before it was kept) is ``low``.
- **Authenticator**: a device-bound passkey whose attestation to a trusted root proved a hardware
  key (``hardware_attested`` and not backup-eligible): ``IDSERVER_ASSURANCE_HARDWARE_KEY``; an app
  key (``kind`` ``app``): ``IDSERVER_ASSURANCE_APP_KEY``; any other, synced, passkey:
  ``IDSERVER_ASSURANCE_SYNCED_PASSKEY``.

Every setting defaults to ``low``: a higher level needs a formal assessment of the whole service,
which only the operator can have made, so only the operator can raise the mapping.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any
from typing import Protocol

from .citizens.models import PROOFING_DOCUMENTS
from .config import ACR_VALUES
from .config import ASSURANCE_LEVELS

__all__ = [
    "LEVELS",
    "PROOFING_DOCUMENTS",
    "acr_for",
    "authenticator_level",
    "issuable_acr_values",
    "issuable_levels",
    "level_of_acr",
    "level_of_stork",
    "login_level",
    "proofing_level",
    "required_level",
    "stork_level",
]

LEVELS = ASSURANCE_LEVELS  # lowest first
LOW = LEVELS[0]
LEVEL_SETTINGS = (
    "ASSURANCE_IN_PERSON",
    "ASSURANCE_HARDWARE_KEY",
    "ASSURANCE_SYNCED_PASSKEY",
    "ASSURANCE_APP_KEY",
)

# Bürger-ID's own names, and the eIDAS names (eIDAS SAML Attribute Profile 1.2 §2.4), level by
# level; the ID token answers in the vocabulary the relying party asked in (ours by default).
URN_PREFIX = "urn:buergerid:loa:"
EIDAS_PREFIX = "http://eidas.europa.eu/LoA/"
# STORK 1.0 QAA levels as the BundID names them (STORK D5.8.2 §3.1; levels 1/3/4 for
# niedrig/substantiell/hoch). Level 2 is below substantial, so it is met by substantial.
STORK_LEVELS = {
    "low": "STORK-QAA-Level-1",
    "substantial": "STORK-QAA-Level-3",
    "high": "STORK-QAA-Level-4",
}
STORK_QAA = {
    "STORK-QAA-Level-1": "low",
    "STORK-QAA-Level-2": "low",
    **{name: level for level, name in STORK_LEVELS.items() if level != "low"},
}
# acr values of earlier versions, which named the login's method: accepted in ``acr_values`` as
# asking for ``low`` (every login met them), never issued any more.
LEGACY_ACR_VALUES = ACR_VALUES


def _rank(level: str) -> int:
    return LEVELS.index(level)


def lower(*levels: str) -> str:
    return min(levels, key=_rank)


def at_least(level: str, required: str) -> bool:
    return _rank(level) >= _rank(required)


class Proofed(Protocol):
    """What the proofing level is read from: a ``Citizen``, or a row of its columns."""

    @property
    def proofing_document(self) -> str | None: ...
    @property
    def proofed_on(self) -> dt.date | None: ...


class Device(Protocol):
    """What the authenticator level is read from: a ``Credential``, or a row of its columns."""

    @property
    def hardware_attested(self) -> bool: ...
    @property
    def backup_eligible(self) -> bool: ...
    @property
    def kind(self) -> str: ...


def proofing_level(citizen: Proofed, config: Mapping[str, Any]) -> str:
    """How the resident's identity was checked: in person with a document, or not recorded."""
    if citizen.proofing_document and citizen.proofed_on:
        return str(config["ASSURANCE_IN_PERSON"])
    return LOW


def authenticator_level(credential: Device, config: Mapping[str, Any]) -> str:
    """What the device that approved the login is worth (see the module docstring)."""
    if credential.hardware_attested and not credential.backup_eligible:
        return str(config["ASSURANCE_HARDWARE_KEY"])
    if credential.kind == "app":
        return str(config["ASSURANCE_APP_KEY"])
    return str(config["ASSURANCE_SYNCED_PASSKEY"])


def login_level(citizen: Proofed, credential: Device, config: Mapping[str, Any]) -> str:
    """The level of a login by ``citizen`` with ``credential``: the lower of the two."""
    return lower(proofing_level(citizen, config), authenticator_level(credential, config))


def issuable_levels(config: Mapping[str, Any]) -> tuple[str, ...]:
    """Every level some login can reach under ``config``, lowest first (discovery lists them)."""
    proofing = {LOW, str(config["ASSURANCE_IN_PERSON"])}
    devices = {str(config[name]) for name in LEVEL_SETTINGS[1:]}
    reached = {lower(p, d) for p in proofing for d in devices}
    return tuple(level for level in LEVELS if level in reached)


def _names(level: str) -> tuple[str, str]:
    return f"{URN_PREFIX}{level}", f"{EIDAS_PREFIX}{level}"


def issuable_acr_values(config: Mapping[str, Any]) -> list[str]:
    """The ``acr`` values an ID token can carry: ours, then the eIDAS names."""
    levels = issuable_levels(config)
    return [name for vocabulary in (0, 1) for name in (_names(lv)[vocabulary] for lv in levels)]


def level_of_acr(value: str) -> str | None:
    """The level an ``acr`` value names (ours, eIDAS, or an earlier version's), or None."""
    if value in LEGACY_ACR_VALUES:
        return LOW
    for prefix in (URN_PREFIX, EIDAS_PREFIX):
        if value.startswith(prefix) and value[len(prefix) :] in LEVELS:
            return value[len(prefix) :]
    return None


def required_level(acr_values: Iterable[str]) -> tuple[str | None, bool]:
    """What ``acr_values`` (OIDC Core 1.0 §3.1.2.1) asks for: the lowest level named, since any
    of them will do, and whether every value was unknown (then nothing can meet it)."""
    values = list(acr_values)
    known = [level for level in map(level_of_acr, values) if level is not None]
    if not known:
        return None, bool(values)
    return min(known, key=_rank), False


def acr_for(level: str, acr_values: Iterable[str] = ()) -> str:
    """The ``acr`` claim for a login of ``level``: in eIDAS names if the relying party asked in
    them, else Bürger-ID's URN."""
    ours, eidas = _names(level)
    return eidas if any(v.startswith(EIDAS_PREFIX) for v in acr_values) else ours


def stork_level(level: str) -> str:
    """The STORK-QAA level for ``level`` (BundID's ``AuthnContextClassRef``)."""
    return STORK_LEVELS[level]


def level_of_stork(name: str) -> str | None:
    """The level a STORK-QAA name asks for, or None for a name that is not one."""
    return STORK_QAA.get(name.strip())
