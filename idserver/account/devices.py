"""A citizen's enrolled devices: listing, renaming, revoking, and the lost-phone code.

Every change is one conditional ``UPDATE`` scoped to the citizen, audited in the same
transaction. The lost-phone revocation code (shown once at enrolment, stored as SHA-256) works
without a login and only once: burning it is ``UPDATE … WHERE used_at IS NULL``.

A device that is revoked (account page, revocation code, clerk) or suspended as cloned loses
what it already obtained, in the same transaction: ``end_device_grants`` is the one place that
ends the sessions, access tokens, unredeemed codes and approved pairings of its logins. A
suspension comes from below (``passkeys.service.device_suspended``, subscribed by ``init_app``).
Each of those tables is written by the package that owns it: ``sessions.end_device_sessions``,
``oidc.server.revoke_device_grants``, ``pairing.cancel_pairings``.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask_babel import lazy_gettext as _l
from sqlalchemy import ColumnElement
from sqlalchemy import select
from sqlalchemy import update

from ..audit import record_event
from ..citizens.models import RevocationCode
from ..citizens.service import DEVICE_NAME_MAX
from ..citizens.service import hash_code
from ..db import db
from ..db import utcnow
from ..oidc.server import revoke_device_grants
from ..passkeys.aaguids import authenticator_name
from ..passkeys.models import Credential
from ..passkeys.service import device_suspended
from ..sessions import BrowserSession
from ..sessions import end_device_sessions
from .errors import DeviceNotFound
from .errors import InvalidDeviceName
from .pairing import cancel_pairings

__all__ = [
    "Device",
    "EndedGrants",
    "clean_device_name",
    "end_device_grants",
    "find_device",
    "init_app",
    "list_devices",
    "rename_device",
    "revoke_device",
    "revoke_devices_with_code",
    "session_credential",
]

REVOCATION_CODE_MAX = 64


@dataclass(frozen=True)
class Device:
    """One row of the device list."""

    id: int
    name: str
    kind: str  # passkey | app
    product: str | None  # from the AAGUID, when known
    synced: bool  # a passkey that may be copied to the citizen's other devices (BE flag)
    backed_up: bool  # … and currently is (BS flag)
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    suspended_at: dt.datetime | None
    revoked_at: dt.datetime | None
    current: bool  # the device this session was logged in with

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.suspended_at is not None:
            return "suspended"
        return "active"


def session_credential(browser_session: BrowserSession) -> int | None:
    """The credential whose approval started this session, if it is known."""
    return browser_session.credential_pk


@dataclass(frozen=True)
class EndedGrants:
    """What ``end_device_grants`` ended: how many of each."""

    sessions: int
    tokens: int
    codes: int
    pairings: int


def end_device_grants(
    citizen_id: str, credential_pks: Collection[int], *, reason: str, actor: str
) -> EndedGrants:
    """End what these devices of one citizen obtained: the browser sessions of the logins they
    approved, the access tokens issued on those logins, their codes not yet redeemed, and the
    pairings they approved; one audit event (ids and counts only).

    Every revocation path calls this inside its own transaction, after marking the devices
    revoked or suspended; the caller commits, so the grants end together with the device. Call
    it before appending any other audit event: an append takes the log's lock, which a code
    redemption or pairing waits for while holding its row, so rows first (or the two deadlock).
    """
    pks = sorted(set(credential_pks))
    # Grants first: ending the sessions also revokes their access tokens (oidc.logout), and the
    # count here is of the device's tokens.
    codes, tokens = revoke_device_grants(citizen_id=citizen_id, credential_pks=pks)
    sessions = end_device_sessions(citizen_id=citizen_id, credential_pks=pks)
    pairings = cancel_pairings(citizen_id, reason=reason, approved_by=pks) if pks else 0
    ended = EndedGrants(sessions=sessions, tokens=tokens, codes=codes, pairings=pairings)
    record_event(
        "device_grants_ended",
        actor=actor,
        subject=citizen_id,
        credential_ids=pks,
        reason=reason,
        sessions_ended=ended.sessions,
        tokens_revoked=ended.tokens,
        codes_voided=ended.codes,
        pairings_cancelled=ended.pairings,
    )
    return ended


def _end_suspended_device_grants(
    sender: Flask, *, citizen_id: str, credential_pk: int, reason: str
) -> EndedGrants:
    """A device suspended by passkeys (a cloned authenticator) loses its grants, like a
    revoked one."""
    return end_device_grants(citizen_id, [credential_pk], reason=reason, actor="system")


def init_app(app: Flask) -> None:
    """Subscribe to ``passkeys.service.device_suspended`` for this app."""
    device_suspended.connect(_end_suspended_device_grants, sender=app)


def list_devices(citizen_id: str, *, current: int | None = None) -> list[Device]:
    """Usable devices first, then blocked ones, then revoked ones; newest first in each."""
    rows = db.session.scalars(
        select(Credential).where(Credential.citizen_id == citizen_id).order_by(Credential.id)
    ).all()
    devices = [
        Device(
            id=row.id,
            name=row.name,
            kind=row.kind,
            product=authenticator_name(row.aaguid),
            synced=row.backup_eligible,
            backed_up=row.backed_up,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            suspended_at=row.suspended_at,
            revoked_at=row.revoked_at,
            current=row.id == current,
        )
        for row in rows
    ]
    order = {"active": 0, "suspended": 1, "revoked": 2}
    return sorted(devices, key=lambda d: (order[d.state], -d.created_at.timestamp()))


def clean_device_name(name: Any) -> str:
    """A name the citizen recognises the device by: 1–60 printable characters."""
    if not isinstance(name, str):
        raise InvalidDeviceName()
    cleaned = " ".join(name.split())
    if not cleaned:
        raise InvalidDeviceName()
    if len(cleaned) > DEVICE_NAME_MAX:
        raise InvalidDeviceName(
            _l("Please use at most %(max)d characters for the name.", max=DEVICE_NAME_MAX)
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in cleaned):
        raise InvalidDeviceName(_l("The name contains characters that are not allowed."))
    return cleaned


def _own_active_device(citizen_id: str, device_id: int) -> tuple[ColumnElement[bool], ...]:
    """The conditions of an UPDATE that may touch only this citizen's device, while not revoked."""
    return (
        Credential.id == device_id,
        Credential.citizen_id == citizen_id,
        Credential.revoked_at.is_(None),
    )


def rename_device(citizen_id: str, device_id: int, name: Any) -> None:
    """Rename one of the citizen's devices that is not revoked."""
    cleaned = clean_device_name(name)
    session = db.session
    result = session.execute(
        update(Credential).where(*_own_active_device(citizen_id, device_id)).values(name=cleaned)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        raise DeviceNotFound()
    # Names are personal data: the audit log keeps only which device changed.
    record_event(
        "device_renamed", actor=f"citizen:{citizen_id}", subject=citizen_id, credential_id=device_id
    )
    session.commit()


def find_device(citizen_id: str, device_id: int) -> Credential:
    """One of the citizen's devices that is not revoked (for the confirmation page)."""
    stored = db.session.get(Credential, device_id)
    if stored is None or stored.citizen_id != citizen_id or stored.revoked_at is not None:
        raise DeviceNotFound()
    return stored


def revoke_device(citizen_id: str, device_id: int) -> None:
    """Revoke one device: it can no longer log in or approve; what it obtained ends."""
    session = db.session
    result = session.execute(
        update(Credential)
        .where(*_own_active_device(citizen_id, device_id))
        .values(revoked_at=utcnow())
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        raise DeviceNotFound()
    actor = f"citizen:{citizen_id}"
    end_device_grants(citizen_id, [device_id], reason="device_revoked", actor=actor)
    record_event("device_revoked", actor=actor, subject=citizen_id, credential_id=device_id)
    session.commit()


def revoke_devices_with_code(code: Any) -> str | None:
    """Lost phone: a revocation code revokes all the citizen's devices and pairings, and ends
    what any of the devices obtained (sessions, access tokens, unredeemed codes), at once.

    Returns the citizen's id, or None for a wrong, unknown or used code. All three take the
    same path (hash, one conditional UPDATE that matches nothing, rollback), so neither the
    answer nor its timing says whether a code exists. Using a code uses up all the citizen's
    codes: each new enrolment hands out a new one.
    """
    text = code if isinstance(code, str) and len(code) <= REVOCATION_CODE_MAX else ""
    session = db.session
    now = utcnow()
    burned = session.execute(
        update(RevocationCode)
        .where(RevocationCode.code_hash == hash_code(text), RevocationCode.used_at.is_(None))
        .values(used_at=now)
        .returning(RevocationCode.id, RevocationCode.citizen_id)
    ).first()
    if burned is None:
        session.rollback()
        return None
    code_id, citizen_id = burned
    session.execute(
        update(RevocationCode)
        .where(RevocationCode.citizen_id == citizen_id, RevocationCode.used_at.is_(None))
        .values(used_at=now)
    )
    revoked = session.execute(
        update(Credential)
        .where(Credential.citizen_id == citizen_id, Credential.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    pairings = cancel_pairings(citizen_id, reason="lost_phone")
    actor = f"citizen:{citizen_id}"
    # Every device, also those revoked or suspended before: whatever any of them obtained ends.
    every_device = session.scalars(select(Credential.id).where(Credential.citizen_id == citizen_id))
    end_device_grants(citizen_id, list(every_device), reason="lost_phone", actor=actor)
    record_event(
        "devices_revoked_with_code",
        actor=actor,
        subject=citizen_id,
        revocation_code_id=code_id,
        credentials_revoked=revoked.rowcount,  # type: ignore[attr-defined]
        pairings_cancelled=pairings,
    )
    session.commit()
    return str(citizen_id)
