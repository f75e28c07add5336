"""What the clerk console does to residents, and how each clerk action is audited.

Every function that acts for a clerk appends a ``clerk_action`` audit event with the clerk's id
as actor and the resident's id as subject, in the same transaction as the change it records.
The events hold ids only (never a name or a search term), so they outlive the personal data.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import Select
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update

from ..account.devices import EndedGrants
from ..account.devices import end_device_grants
from ..audit import record_event
from ..audit.models import AuditEvent
from ..citizens.models import ActivationCode
from ..citizens.models import Citizen
from ..citizens.models import searchable_name
from ..citizens.service import issue_activation_code
from ..citizens.service import register_citizen
from ..clerks.errors import ResidentIsClerk
from ..clerks.models import Clerk
from ..db import db
from ..db import utcnow
from ..errors import NotFound
from ..passkeys.models import Credential

__all__ = [
    "AUDIT_PAGE_SIZE",
    "RESIDENT_PAGE_SIZE",
    "Page",
    "ResidentQuery",
    "ResidentRow",
    "activation_codes_of",
    "audit_page",
    "code_state",
    "device_state",
    "devices_of",
    "issue_letter_code",
    "mark_resident_deleted",
    "page_number",
    "record_clerk_action",
    "record_resident_view",
    "register_resident",
    "resident",
    "revoke_all_devices",
    "search_residents",
]

RESIDENT_PAGE_SIZE = 20
AUDIT_PAGE_SIZE = 50
MAX_PAGE = 10_000


@dataclass(frozen=True)
class Page:
    items: list[Any]
    number: int
    size: int
    total: int

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number * self.size < self.total

    @property
    def last(self) -> int:
        return max(1, -(-self.total // self.size))


def page_number(value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return 1
    return min(max(number, 1), MAX_PAGE)


def record_clerk_action(
    clerk: Clerk, action: str, *, subject: str | None = None, **ids: Any
) -> None:
    """Append a ``clerk_action`` event in the current transaction; the caller commits."""
    record_event("clerk_action", actor=f"clerk:{clerk.id}", subject=subject, action=action, **ids)


# -- residents ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ResidentQuery:
    """The clerk's search: any of name (parts of given or family name), postcode, birthdate."""

    name: str = ""
    postcode: str = ""
    birthdate: dt.date | None = None

    @property
    def empty(self) -> bool:
        return not (self.name or self.postcode or self.birthdate)

    @property
    def fields(self) -> list[str]:
        """Which criteria were used: recorded in the audit log instead of their values."""
        used = {"name": self.name, "postcode": self.postcode, "birthdate": self.birthdate}
        return [key for key, value in used.items() if value]


@dataclass(frozen=True)
class ResidentRow:
    citizen: Citizen
    active_devices: int


def _active_devices() -> Any:
    return (
        select(func.count(Credential.id))
        .where(
            Credential.citizen_id == Citizen.id,
            Credential.revoked_at.is_(None),
            Credential.suspended_at.is_(None),
        )
        .correlate(Citizen)
        .scalar_subquery()
    )


def _matching(query: ResidentQuery) -> Select[Any]:
    statement = select(Citizen)
    # Both sides spelt alike (``searchable_name``): "Mueller" finds "Müller" and back.
    for part in searchable_name(query.name).split():
        statement = statement.where(Citizen.search_name.contains(part, autoescape=True))
    if query.postcode:
        statement = statement.where(Citizen.postcode.startswith(query.postcode, autoescape=True))
    if query.birthdate:
        statement = statement.where(Citizen.birthdate == query.birthdate)
    return statement


def search_residents(clerk: Clerk, query: ResidentQuery, *, page: int = 1) -> Page:
    """One page of matching residents with their number of usable devices; audited."""
    matching = _matching(query)
    total = db.session.scalar(select(func.count()).select_from(matching.subquery())) or 0
    rows = db.session.execute(
        matching.add_columns(_active_devices().label("active_devices"))
        .order_by(Citizen.family_name, Citizen.given_name, Citizen.id)
        .limit(RESIDENT_PAGE_SIZE)
        .offset((page - 1) * RESIDENT_PAGE_SIZE)
    ).all()
    items = [ResidentRow(citizen=row[0], active_devices=row[1]) for row in rows]
    record_clerk_action(
        clerk,
        "search",
        fields=query.fields,
        page=page,
        total=total,
        shown=[item.citizen.id for item in items],
    )
    db.session.commit()
    return Page(items=items, number=page, size=RESIDENT_PAGE_SIZE, total=total)


def resident(citizen_id: str) -> Citizen:
    found = db.session.get(Citizen, citizen_id[:36])
    if found is None:
        raise NotFound()
    return found


def devices_of(citizen: Citizen) -> list[Credential]:
    return list(
        db.session.scalars(
            select(Credential)
            .where(Credential.citizen_id == citizen.id)
            .order_by(Credential.created_at, Credential.id)
        )
    )


def activation_codes_of(citizen: Citizen) -> list[ActivationCode]:
    return list(
        db.session.scalars(
            select(ActivationCode)
            .where(ActivationCode.citizen_id == citizen.id)
            .order_by(ActivationCode.created_at.desc(), ActivationCode.id)
        )
    )


def _revoke_devices(citizen: Citizen, *, actor: str, reason: str) -> tuple[list[int], EndedGrants]:
    """Revoke every device not yet revoked, one ``device_revoked`` event each, and end what any
    of the resident's devices obtained (sessions, tokens, codes). Caller commits."""
    ids = sorted(
        db.session.scalars(
            update(Credential)
            .where(Credential.citizen_id == citizen.id, Credential.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .returning(Credential.id)
        )
    )
    every_device = db.session.scalars(
        select(Credential.id).where(Credential.citizen_id == citizen.id)
    )
    ended = end_device_grants(citizen.id, list(every_device), reason=reason, actor=actor)
    for credential_id in ids:
        record_event(
            "device_revoked",
            actor=actor,
            subject=citizen.id,
            credential_id=credential_id,
            reason="clerk",
        )
    return ids, ended


def revoke_all_devices(clerk: Clerk, citizen: Citizen) -> tuple[int, int]:
    """Revoke all of a resident's devices and end their sessions, tokens and codes.

    Returns (devices revoked, sessions ended).
    """
    revoked, ended = _revoke_devices(citizen, actor=f"clerk:{clerk.id}", reason="clerk")
    record_clerk_action(clerk, "revoke_devices", subject=citizen.id, credential_ids=revoked)
    db.session.commit()
    return len(revoked), ended.sessions


def mark_resident_deleted(clerk: Clerk, citizen: Citizen) -> bool:
    """Mark a resident deleted: devices revoked, sessions ended; ``citizen purge`` erases the
    data after the retention period. False if the resident was already deleted."""
    if db.session.scalar(
        select(Clerk.id).where(Clerk.citizen_id == citizen.id, Clerk.disabled_at.is_(None))
    ):
        raise ResidentIsClerk()
    session = db.session
    marked = session.execute(
        update(Citizen)
        .where(Citizen.id == citizen.id, Citizen.deleted_at.is_(None))
        .values(deleted_at=utcnow())
    )
    if marked.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        return False
    revoked, _ended = _revoke_devices(citizen, actor=f"clerk:{clerk.id}", reason="resident_deleted")
    record_clerk_action(clerk, "delete_resident", subject=citizen.id, credential_ids=revoked)
    session.commit()
    session.refresh(citizen)
    return True


def record_resident_view(clerk: Clerk, citizen: Citizen) -> None:
    record_clerk_action(clerk, "view_resident", subject=citizen.id)
    db.session.commit()


def register_resident(clerk: Clerk, **fields: Any) -> Citizen:
    """Register a resident (validated by ``register_citizen``); audited, with the identity
    document the clerk checked, if any (never its number: only its type)."""
    citizen = register_citizen(**fields)
    proofing = {"proofing_document": citizen.proofing_document} if citizen.proofing_document else {}
    record_clerk_action(clerk, "register", subject=citizen.id, **proofing)
    db.session.commit()
    return citizen


def issue_letter_code(clerk: Clerk, citizen: Citizen) -> tuple[ActivationCode, str]:
    """A new activation code for a letter; the plain code is returned, never stored."""
    record, code = issue_activation_code(citizen.id, actor=f"clerk:{clerk.id}")
    record_clerk_action(clerk, "issue_letter", subject=citizen.id, activation_id=record.id)
    db.session.commit()
    return record, code


def device_state(credential: Credential) -> str:
    if credential.revoked_at is not None:
        return "revoked"
    if credential.suspended_at is not None:
        return "suspended"
    return "active"


def code_state(record: ActivationCode, *, now: dt.datetime | None = None) -> str:
    if record.used_at is not None:
        return "used"
    if record.expires_at <= (now or utcnow()):
        return "expired"
    if record.failed_attempts >= current_app.config["ACTIVATION_MAX_ATTEMPTS"]:
        return "blocked"
    return "open"


# -- the audit log ------------------------------------------------------------------------
def audit_page(clerk: Clerk, *, event: str | None, subject: str | None, page: int = 1) -> Page:
    """One page of the audit log, newest first, optionally filtered; the viewing is audited."""
    statement = select(AuditEvent)
    if event:
        statement = statement.where(AuditEvent.event == event)
    if subject:
        statement = statement.where(AuditEvent.subject == subject)
    total = db.session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    items = list(
        db.session.scalars(
            statement.order_by(AuditEvent.id.desc())
            .limit(AUDIT_PAGE_SIZE)
            .offset((page - 1) * AUDIT_PAGE_SIZE)
        )
    )
    filters: dict[str, Any] = {"page": page}
    if event:
        filters["filter_event"] = event
    if subject:
        # Only a subject that is in the log is an id; anything else a clerk typed might be a name.
        filters["filter_subject"] = subject if total else "(no match)"
    record_clerk_action(clerk, "view_audit", **filters)
    db.session.commit()
    return Page(items=items, number=page, size=AUDIT_PAGE_SIZE, total=total)
