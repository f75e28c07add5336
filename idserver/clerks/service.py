"""Adding, listing, disabling clerks and changing their role, and what each role may do in the
clerk console.

A clerk is a role on a citizen record. ``add_clerk`` creates that record (with the citizens'
office as its address) and an activation code; the clerk enrols a passkey with it like any
resident and signs in to ``/admin`` through the same QR/passkey login.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select
from sqlalchemy import update

from ..audit import record_event
from ..citizens.models import ActivationCode
from ..citizens.models import Citizen
from ..citizens.service import issue_activation_code
from ..citizens.service import register_citizen
from ..db import db
from ..db import utcnow
from .errors import ClerkNotFound
from .errors import InvalidClerk
from .models import ROLES
from .models import Clerk

__all__ = [
    "PERMISSIONS",
    "NewClerk",
    "active_clerk",
    "add_clerk",
    "disable_clerk",
    "list_clerks",
    "may",
    "set_clerk_role",
]

# Marking a resident deleted starts the countdown to erasing their data: supervisors only.
PERMISSIONS: dict[str, frozenset[str]] = {
    "clerk": frozenset(
        {"search", "view_resident", "register", "issue_letter", "revoke_devices", "view_audit"}
    ),
    "supervisor": frozenset(
        {
            "search",
            "view_resident",
            "register",
            "issue_letter",
            "revoke_devices",
            "view_audit",
            "delete_resident",
        }
    ),
    # Administrators look after the relying parties (clients), not residents.
    "admin": frozenset({"view_audit", "manage_clients"}),
}
# A clerk's citizen record needs a birthdate; this one says "not recorded", not a real date.
PLACEHOLDER_BIRTHDATE = dt.date(1900, 1, 1)


@dataclass(frozen=True)
class NewClerk:
    clerk: Clerk
    activation: ActivationCode
    code: str


def add_clerk(
    *,
    given_name: str,
    family_name: str,
    email: str,
    role: str = "clerk",
    birthdate: dt.date | str | None = None,
) -> NewClerk:
    """A clerk with a fresh citizen record and an activation code (returned once)."""
    if role not in ROLES:
        raise InvalidClerk(f"role must be one of {', '.join(ROLES)}")
    if not isinstance(email, str) or not email.strip():
        raise InvalidClerk("a clerk needs an e-mail address")
    config = current_app.config
    citizen = register_citizen(
        given_name=given_name,
        family_name=family_name,
        birthdate=birthdate or PLACEHOLDER_BIRTHDATE,
        street=config["OFFICE_STREET"],
        postcode=config["OFFICE_POSTCODE"],
        city=config["OFFICE_CITY"],
        email=email,
    )
    clerk = Clerk(
        citizen_id=citizen.id,
        display_name=f"{citizen.given_name} {citizen.family_name}",
        role=role,
    )
    db.session.add(clerk)
    db.session.flush()
    record_event("clerk_added", actor="operator", subject=citizen.id, clerk_id=clerk.id, role=role)
    db.session.commit()
    record, code = issue_activation_code(citizen.id, actor="operator")
    return NewClerk(clerk=clerk, activation=record, code=code)


def list_clerks() -> list[Clerk]:
    return list(db.session.scalars(select(Clerk).order_by(Clerk.created_at, Clerk.id)))


def disable_clerk(clerk_id: str) -> Clerk:
    """Take the clerk's access away at once (their next request is refused); idempotent."""
    session = db.session
    clerk = session.get(Clerk, clerk_id[:36])
    if clerk is None:
        raise ClerkNotFound()
    changed = session.execute(
        update(Clerk)
        .where(Clerk.id == clerk.id, Clerk.disabled_at.is_(None))
        .values(disabled_at=utcnow())
    )
    if changed.rowcount == 1:  # type: ignore[attr-defined]
        record_event(
            "clerk_disabled", actor="operator", subject=clerk.citizen_id, clerk_id=clerk.id
        )
    session.commit()
    session.refresh(clerk)
    return clerk


def set_clerk_role(clerk_id: str, role: str) -> Clerk:
    """Give the clerk another role (``clerk``, ``supervisor``, ``admin``), from their next
    request on; audited as ``clerk_role_changed``. The same role again changes nothing."""
    if role not in ROLES:
        raise InvalidClerk(f"role must be one of {', '.join(ROLES)}")
    session = db.session
    clerk = session.get(Clerk, clerk_id[:36])
    if clerk is None:
        raise ClerkNotFound()
    previous = clerk.role
    changed = session.execute(
        update(Clerk).where(Clerk.id == clerk.id, Clerk.role != role).values(role=role)
    )
    if changed.rowcount == 1:  # type: ignore[attr-defined]
        record_event(
            "clerk_role_changed",
            actor="operator",
            subject=clerk.citizen_id,
            clerk_id=clerk.id,
            role=role,
            previous_role=previous,
        )
    session.commit()
    session.refresh(clerk)
    return clerk


def active_clerk(citizen_id: str) -> Clerk | None:
    """The enabled clerk role of a citizen who has not been deleted, if there is one."""
    return db.session.scalars(
        select(Clerk)
        .join(Citizen, Citizen.id == Clerk.citizen_id)
        .where(
            Clerk.citizen_id == citizen_id,
            Clerk.disabled_at.is_(None),
            Citizen.deleted_at.is_(None),
        )
    ).first()


def may(clerk: Clerk, action: str) -> bool:
    return action in PERMISSIONS.get(clerk.role, frozenset())
