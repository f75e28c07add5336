"""Appending to the hash-chained audit log, checkpointing it, and verifying it.

Each entry stores ``hash = SHA-256(prev_hash ‖ canonical JSON of the entry)`` and the previous
entry's hash, so editing, deleting or reordering a row breaks the chain at that row. Every
``AUDIT_CHECKPOINT_EVERY`` entries (and on ``idserver audit checkpoint``) the head is signed
with the server's audit key (its own ES256 key, never published, not the ID-token key), so even
a rewrite of the whole chain is detected up to the last checkpoint. Checkpoints are verified
with every key the server has or had, found by ``kid``: older ones were signed with the
ID-token key. An append runs inside the caller's transaction, after taking the database's write
lock (an advisory lock on PostgreSQL), so the chain stays linear under concurrent writers and
the event commits or rolls back together with the change it records.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from typing import cast

from flask import current_app
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import Table
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update
from sqlalchemy.orm import Session

from ..config import SIGNING_ALGORITHM
from ..db import db
from ..db import utcnow
from ..keys import AUDIT
from ..keys import key_store
from .models import AuditCheckpoint
from .models import AuditEvent

__all__ = [
    "Problem",
    "append_event",
    "export_events",
    "record_event",
    "verify_chain",
    "verify_since_checkpoint",
    "write_checkpoint",
]

GENESIS = "0" * 64
ADVISORY_LOCK_KEY = 0x42_49_44  # "BID"
EVENTS = frozenset(
    {
        "activation_issued",
        "enrolment",
        "login_approved",
        "login_denied",
        "login_expired",
        "token_issued",
        "token_revoked",
        "refresh_token_reused",
        "logout_delivered",
        "logout_delivery_failed",
        "device_revoked",
        "device_renamed",
        "device_suspended",
        "devices_revoked_with_code",
        "revocation_codes_replaced",
        "device_grants_ended",
        "consent_withdrawn",
        "clerk_action",
        "clerk_added",
        "clerk_disabled",
        "clerk_role_changed",
        "client_added",
        "client_updated",
        "client_disabled",
        "client_enabled",
        "client_secret_rotated",
        "client_deleted",
        "key_rotated",
        "saml_sp_added",
        "saml_sp_removed",
        "saml_assertion_issued",
        "saml_logout_delivered",
        "saml_logout_delivery_failed",
        "key_retired",
        "keys_imported",
        "residents_purged",
        "maintenance_purged",
        "audit_checkpoint",
    }
)


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _entry_hash(prev_hash: str, event: AuditEvent) -> str:
    body = {
        "at": event.at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "event": event.event,
        "actor": event.actor,
        "subject": event.subject,
        "data": event.data,
    }
    return hashlib.sha256(prev_hash.encode() + _canonical(body)).hexdigest()


_EVENTS = cast(Table, AuditEvent.__table__)
# Built once (issue 16): an append is on every login's path, and building a statement costs
# more than running it.
_HEAD = select(_EVENTS.c.hash).order_by(_EVENTS.c.id.desc()).limit(1)
_APPEND = insert(_EVENTS).returning(_EVENTS.c.id)  # the columns come with the parameters
_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=ADVISORY_LOCK_KEY)
# Any write statement takes SQLite's single writer lock for the rest of the transaction.
_WRITE_LOCK = update(_EVENTS).where(text("0")).values(event="lock")


def _columns(entry: AuditEvent) -> dict[str, Any]:
    """An entry's stored columns but its id: what an append inserts and an export writes."""
    return {
        "at": entry.at,
        "event": entry.event,
        "actor": entry.actor,
        "subject": entry.subject,
        "data": entry.data,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def _lock_chain(session: Session) -> None:
    """Serialise appends until the caller's transaction ends.

    Not one statement with the head's read: PostgreSQL reads in the snapshot its statement
    began with, before the lock was granted, so the head read alongside could be stale.
    """
    postgresql = session.get_bind().dialect.name == "postgresql"
    session.execute(_ADVISORY_LOCK if postgresql else _WRITE_LOCK)


def record_event(event: str, *, actor: str, subject: str | None = None, **data: Any) -> AuditEvent:
    """Append ``event`` in the current transaction; the caller commits."""
    return append_event(db.session, event, actor=actor, subject=subject, data=data)


def append_event(
    session: Session,
    event: str,
    *,
    actor: str,
    subject: str | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """``record_event`` in ``session``'s transaction (the key store keeps its own session)."""
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r}")
    _lock_chain(session)
    head = session.execute(_HEAD).scalar()
    entry = AuditEvent(at=utcnow(), event=event, actor=actor, subject=subject, data=data or {})
    entry.prev_hash = head or GENESIS
    entry.hash = _entry_hash(entry.prev_hash, entry)
    # Core, not the unit of work: an append is on every login's path, and nothing reads the
    # entry back through the session (the returned object is not attached to it).
    entry.id = session.execute(_APPEND, _columns(entry)).scalar_one()
    every = current_app.config["AUDIT_CHECKPOINT_EVERY"]
    if every and entry.id % every == 0:
        _sign_checkpoint(session, entry)
    return entry


def _sign_checkpoint(session: Session, entry: AuditEvent) -> AuditCheckpoint:
    now = utcnow()
    key = key_store().signing_key(AUDIT)
    payload = _canonical(
        {"event_id": entry.id, "event_hash": entry.hash, "at": int(now.timestamp())}
    )
    signature = jws.serialize_compact(
        {"alg": SIGNING_ALGORITHM, "kid": key.kid or ""}, payload, key
    )
    checkpoint = AuditCheckpoint(
        event_id=entry.id, event_hash=entry.hash, created_at=now, signature=signature
    )
    session.add(checkpoint)
    return checkpoint


def write_checkpoint() -> AuditCheckpoint | None:
    """Sign the current head now (the CLI and the periodic job call this)."""
    key_store().prepare()  # before the chain's lock: a first start writes its keys meanwhile
    session = db.session
    _lock_chain(session)
    head = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).first()
    if head is None:
        session.rollback()
        return None
    checkpoint = _sign_checkpoint(session, head)
    session.commit()
    return checkpoint


@dataclass(frozen=True)
class Problem:
    event_id: int | None
    reason: str


def _verification_keys() -> KeySet:
    """Every key the server has or had, of any purpose, retired ones too, read afresh: old
    checkpoints were signed with the ID-token key, newer ones with the audit key."""
    return key_store().verification_keys()


def _walk(entries: Any, previous_hash: str, problems: list[Problem]) -> dict[int, str]:
    """Check each entry's link to the one before and its own hash; returns id → hash."""
    hashes: dict[int, str] = {}
    for entry in entries:
        if entry.prev_hash != previous_hash:
            reason = "missing entry before this one, or entries reordered"
            problems.append(Problem(entry.id, reason))
        elif entry.hash != _entry_hash(entry.prev_hash, entry):
            problems.append(Problem(entry.id, "entry was changed"))
        hashes[entry.id] = entry.hash
        previous_hash = entry.hash
    return hashes


def _checkpoint_problem(
    checkpoint: AuditCheckpoint, keys: KeySet, hashes: dict[int, str]
) -> Problem | None:
    """Why ``checkpoint`` does not vouch for the entry it names, or None if it does."""
    try:
        signed = jws.deserialize_compact(checkpoint.signature, keys, algorithms=[SIGNING_ALGORITHM])
        claims = json.loads(signed.payload)
    except (JoseError, ValueError) as exc:
        return Problem(checkpoint.event_id, f"checkpoint signature invalid: {exc}")
    if claims.get("event_id") != checkpoint.event_id or claims.get("event_hash") != (
        checkpoint.event_hash
    ):
        return Problem(checkpoint.event_id, "checkpoint row differs from signature")
    if hashes.get(checkpoint.event_id) != checkpoint.event_hash:
        return Problem(checkpoint.event_id, "entry differs from the signed checkpoint")
    return None


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.event_id is None, p.event_id or 0))


def verify_chain() -> list[Problem]:
    """Walk every entry and checkpoint; returns the problems found (first one first)."""
    session = db.session
    problems: list[Problem] = []
    entries = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).yield_per(1000)
    hashes = _walk(entries, GENESIS, problems)
    keys = _verification_keys()
    for checkpoint in session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id)):
        problem = _checkpoint_problem(checkpoint, keys, hashes)
        if problem is not None:
            problems.append(problem)
    return _sorted(problems)


def verify_since_checkpoint() -> tuple[list[Problem], AuditCheckpoint | None]:
    """Verify the chain from the newest valid signed checkpoint on (the clerk viewer's check).

    The checkpoint's signature vouches for its entry's hash, so the walk starts at that entry
    (its own hash recomputed) and follows every later one. Newer checkpoints that fail are
    reported and an older one is tried; without any valid checkpoint the whole chain is walked.
    Entries *before* the checkpoint are not re-hashed: ``verify_chain`` (``idserver audit
    verify``, or the viewer's "whole log" link) still checks those. Returns the problems and
    the checkpoint the walk started from (None: the whole chain was walked).
    """
    session = db.session
    problems: list[Problem] = []
    keys = _verification_keys()
    newest_first = select(AuditCheckpoint).order_by(
        AuditCheckpoint.event_id.desc(), AuditCheckpoint.id.desc()
    )
    for checkpoint in session.scalars(newest_first):
        anchor = session.get(AuditEvent, checkpoint.event_id)
        hashes = {anchor.id: anchor.hash} if anchor is not None else {}
        problem = _checkpoint_problem(checkpoint, keys, hashes)
        if problem is None and anchor is not None:
            if anchor.hash != _entry_hash(anchor.prev_hash, anchor):
                problems.append(Problem(anchor.id, "entry was changed"))
            later = (
                session.scalars(
                    select(AuditEvent).where(AuditEvent.id > anchor.id).order_by(AuditEvent.id)
                )
            ).yield_per(1000)
            _walk(later, anchor.hash, problems)
            return _sorted(problems), checkpoint
        if problem is not None:
            problems.append(problem)
    return verify_chain(), None  # it reports the failed checkpoints as well


def export_events() -> Iterator[dict[str, Any]]:
    for entry in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).yield_per(1000):
        yield {"id": entry.id, **_columns(entry), "at": entry.at.isoformat()}
