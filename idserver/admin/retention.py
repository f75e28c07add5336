"""Erasing data once nothing needs it: residents after their retention, and what logins leave.

Two periods (docs/operations.md, "Data retention"):

- ``RETENTION_DAYS`` after a resident was deleted, the resident is erased; the database cascades
  to their devices, codes, sessions and tokens, and sets login transactions' resident to NULL.
  Used and expired activation codes stay listed in the clerk console for as long, then go.
- ``PURGE_AFTER_HOURS`` after a row stopped being usable it goes: login transactions (they hold
  both devices' IP addresses and the browser's user agent), authorization codes, tokens, WebAuthn
  challenges, pairings, browser sessions, activation attempts (never within their counting
  hour) and used client assertions (past their ``exp``). Rate-limit counters go as soon as
  their window has ended (their keys hold client addresses and count nothing any more).

Nothing still usable is deleted: every row above goes only once it is past its ``expires_at``
(which every transition checks) or was ended, used or revoked. Two kinds of row outlive that
because a page reads them: a login a live browser session names (the account page marks the
device it used), and the tokens that make up a citizen's list of services (``account.consents``:
per service the newest token and each one releasing a claim no newer one did).

Rows go in batches of ``BATCH_SIZE``, each its own transaction, so a large backlog holds no lock
for long and an interrupted run loses nothing. One purge runs at a time (PostgreSQL:
``pg_try_advisory_lock``; SQLite: a lease in ``maintenance_runs``); another one skips. Audit
entries hold ids only and stay, so ``idserver audit verify`` still passes; a run that deleted
anything appends one ``maintenance_purged`` event with the counts.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import secrets
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from flask import current_app
from sqlalchemy import ColumnElement
from sqlalchemy import and_
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import literal
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import tuple_
from sqlalchemy import update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import InstrumentedAttribute

from ..account.models import ConsentWithdrawal
from ..account.models import Pairing
from ..audit import record_event
from ..citizens.models import ActivationAttempt
from ..citizens.models import ActivationCode
from ..citizens.models import Citizen
from ..citizens.service import ATTEMPT_WINDOW
from ..crosslogin.models import LoginTransaction
from ..db import Base
from ..db import db
from ..db import utcnow
from ..limits import RateLimitCounter
from ..oidc.models import AuthorizationCode
from ..oidc.models import LogoutDelivery
from ..oidc.models import PushedAuthorizationRequest
from ..oidc.models import RefreshToken
from ..oidc.models import Token
from ..oidc.models import UsedAssertion
from ..passkeys.models import Challenge
from ..saml.models import SamlRequest
from ..sessions import SELF_CLIENT_ID
from ..sessions import BrowserSession
from .models import MaintenanceRun

log = logging.getLogger(__name__)

__all__ = [
    "BATCH_SIZE",
    "PurgeLeaseLost",
    "purge_deleted_residents",
    "purge_expired_data",
    "start_periodic_purge",
]

BATCH_SIZE = 1000
PURGE_JOB = "purge"
PURGE_LOCK_KEY = 0x4249445055524745  # "BIDPURGE"; other keys: audit chain, migrations
LEASE = dt.timedelta(minutes=10)  # renewed after every batch


class PurgeLeaseLost(RuntimeError):
    """The lease ran out mid-run and another instance may be purging: this one stops."""


def _dependents() -> dict[str, Any]:
    """Every column whose rows the database deletes together with their resident.

    Read from ``Base.metadata`` when the purge runs: ``create_app`` has loaded every table
    (``idserver.models``) by then, so the list is complete without this module reaching up."""
    return {
        fk.parent.table.name: fk.parent
        for table in Base.metadata.sorted_tables
        for fk in table.foreign_keys
        if fk.column.table is Citizen.__table__ and (fk.ondelete or "").upper() == "CASCADE"
    }


def purge_deleted_residents(*, now: dt.datetime | None = None) -> dict[str, Any]:
    """Delete every resident marked deleted more than ``RETENTION_DAYS`` ago; returns counts."""
    days = current_app.config["RETENTION_DAYS"]
    cutoff = (now or utcnow()) - dt.timedelta(days=days)
    session = db.session
    expired = select(Citizen.id).where(Citizen.deleted_at.is_not(None), Citizen.deleted_at < cutoff)
    count = session.scalar(select(func.count()).select_from(expired.subquery())) or 0
    report: dict[str, Any] = {
        "residents": count,
        "retention_days": days,
        "deleted_before": cutoff.isoformat(),
    }
    for name, column in sorted(_dependents().items()):
        report[name] = session.scalar(
            select(func.count()).select_from(column.table).where(column.in_(expired))
        )
    if count:
        deleted = session.execute(delete(Citizen).where(Citizen.id.in_(expired)))
        count = report["residents"] = deleted.rowcount  # type: ignore[attr-defined]
        record_event(
            "residents_purged",
            actor="operator",
            count=count,
            retention_days=days,
            deleted_before=report["deleted_before"],
        )
    session.commit()
    return report


# -- the purge --------------------------------------------------------------------------------
def purge_expired_data(
    *,
    actor: str = "operator",
    now: dt.datetime | None = None,
    batch_size: int = BATCH_SIZE,
    due_after: dt.timedelta | None = None,
) -> dict[str, Any]:
    """Delete what the retention periods allow (module docstring); returns counts per table.

    Returns ``{"skipped": …}`` instead while another purge runs, or, with ``due_after``, while
    the last one finished less than that long ago (the periodic run in every worker).
    """
    with _purge_lock() as renew:
        if renew is None:
            return {"skipped": "another purge is running"}
        if due_after is not None and not _due(due_after):
            return {"skipped": "not due"}
        report = _purge(now=now or utcnow(), batch_size=batch_size, renew=renew, actor=actor)
        _finished()
    return report


def _purge(
    *, now: dt.datetime, batch_size: int, renew: Callable[[], None], actor: str
) -> dict[str, Any]:
    config = current_app.config
    hours, days = config["PURGE_AFTER_HOURS"], config["RETENTION_DAYS"]
    ended = now - dt.timedelta(hours=hours)
    kept = now - dt.timedelta(days=days)
    live_logins = select(BrowserSession.login_id).where(
        BrowserSession.ended_at.is_(None),
        BrowserSession.expires_at > now,
        BrowserSession.login_id.is_not(None),
    )
    rules: list[tuple[str, InstrumentedAttribute[Any], ColumnElement[bool]]] = [
        (
            "authorization_codes",
            AuthorizationCode.id,
            AuthorizationCode.expires_at < ended,  # used ones were used before that
        ),
        (
            "login_transactions",
            LoginTransaction.id,
            and_(LoginTransaction.expires_at < ended, LoginTransaction.id.not_in(live_logins)),
        ),
        (
            "browser_sessions",
            BrowserSession.id,
            or_(BrowserSession.expires_at < ended, BrowserSession.ended_at < ended),
        ),
        ("webauthn_challenges", Challenge.id, Challenge.expires_at < ended),
        ("pairings", Pairing.id, Pairing.expires_at < ended),
        (
            "activation_codes",
            ActivationCode.id,
            or_(
                ActivationCode.used_at < kept,
                and_(ActivationCode.used_at.is_(None), ActivationCode.expires_at < kept),
            ),
        ),
        (
            "activation_attempts",
            ActivationAttempt.id,
            ActivationAttempt.at < min(ended, now - ATTEMPT_WINDOW),
        ),
        ("used_client_assertions", UsedAssertion.id, UsedAssertion.expires_at < ended),
        (
            "logout_deliveries",
            LogoutDelivery.id,
            or_(LogoutDelivery.delivered_at < ended, LogoutDelivery.failed_at < ended),
        ),
        (
            "pushed_authorization_requests",
            PushedAuthorizationRequest.id,
            PushedAuthorizationRequest.expires_at < ended,
        ),
        (
            # A used one stays while its family lives: presenting it again revokes the family.
            "refresh_tokens",
            RefreshToken.id,
            or_(
                RefreshToken.expires_at < ended,
                RefreshToken.revoked_at < ended,
                and_(RefreshToken.used_at.is_(None), RefreshToken.idle_expires_at < ended),
            ),
        ),
        ("rate_limit_counters", RateLimitCounter.key, RateLimitCounter.expires_at <= now),
        # refused by the IssueInstant check once expired; kept as long as the other ended rows
        ("saml_requests", SamlRequest.request_id, SamlRequest.expires_at < ended),
        (
            "residents",
            Citizen.id,
            and_(Citizen.deleted_at.is_not(None), Citizen.deleted_at < kept),
        ),
    ]
    deleted = {"tokens": _purge_tokens(ended=ended, batch_size=batch_size, renew=renew)}
    for name, key, condition in rules:
        deleted[name] = _delete_in_batches(key, condition, batch_size=batch_size, renew=renew)
    if any(deleted.values()):
        record_event(
            "maintenance_purged",
            actor=actor,
            deleted=deleted,
            purge_after_hours=hours,
            retention_days=days,
        )
        db.session.commit()
    return {"deleted": deleted, "purge_after_hours": hours, "retention_days": days}


def _delete_in_batches(
    key: InstrumentedAttribute[Any],
    condition: ColumnElement[bool],
    *,
    batch_size: int,
    renew: Callable[[], None],
) -> int:
    """Delete the rows matching ``condition``, at most ``batch_size`` per transaction."""
    session = db.session
    total = 0
    while True:
        chosen = select(key).where(condition).limit(batch_size)
        result = session.execute(
            # ``condition`` again: a key need not be unique alone (saml_requests' request_id).
            delete(key.class_)
            .where(key.in_(chosen), condition)
            .execution_options(synchronize_session=False)
        )
        session.commit()
        count: int = result.rowcount  # type: ignore[attr-defined]
        total += count
        if count < batch_size:
            return total
        renew()


def _purge_tokens(*, ended: dt.datetime, batch_size: int, renew: Callable[[], None]) -> int:
    """Expired and revoked tokens, except those the citizen's list of services is made of."""
    session = db.session
    dead = or_(Token.expires_at < ended, Token.revoked_at < ended)
    pair = tuple_(Token.citizen_id, Token.client_id)
    after: tuple[str, str] | None = None
    total = 0
    while True:
        statement = (
            select(Token.citizen_id, Token.client_id)
            .where(dead)
            .distinct()
            .order_by(Token.citizen_id, Token.client_id)
            .limit(batch_size)
        )
        if after is not None:
            statement = statement.where(pair > tuple_(literal(after[0]), literal(after[1])))
        pairs = [(citizen_id, client_id) for citizen_id, client_id in session.execute(statement)]
        doomed = [
            token_id
            for citizen_id, client_id in pairs
            for token_id in _superseded_tokens(citizen_id, client_id, ended=ended)
        ]
        for start in range(0, len(doomed), batch_size):
            chunk = doomed[start : start + batch_size]
            result = session.execute(
                delete(Token)
                .where(Token.id.in_(chunk))
                .execution_options(synchronize_session=False)
            )
            total += result.rowcount  # type: ignore[attr-defined]
            session.commit()
            renew()
        session.commit()
        if len(pairs) < batch_size:
            return total
        after = pairs[-1]


def _superseded_tokens(citizen_id: str, client_id: str, *, ended: dt.datetime) -> list[int]:
    """The dead tokens of one citizen at one service whose going leaves ``list_services`` as it
    was: it shows, since the last withdrawal, the newest login and the union of the claims."""
    session = db.session
    withdrawn = session.scalar(
        select(func.max(ConsentWithdrawal.withdrawn_at)).where(
            ConsentWithdrawal.citizen_id == citizen_id, ConsentWithdrawal.client_id == client_id
        )
    )
    rows = session.execute(
        select(Token.id, Token.issued_at, Token.expires_at, Token.revoked_at, Token.claims)
        .where(Token.citizen_id == citizen_id, Token.client_id == client_id)
        .order_by(Token.issued_at.desc(), Token.id.desc())
    ).all()
    shown: set[str] = set()
    newest_shown = False
    superseded = []
    for token_id, issued_at, expires_at, revoked_at, claims in rows:
        hidden = client_id == SELF_CLIENT_ID or (withdrawn is not None and issued_at <= withdrawn)
        needed = not hidden and (not newest_shown or not set(claims or []) <= shown)
        if not hidden:
            newest_shown = True
            shown.update(claims or [])
        if not needed and (expires_at < ended or (revoked_at is not None and revoked_at < ended)):
            superseded.append(token_id)
    return superseded


# -- one purge at a time ----------------------------------------------------------------------
@contextmanager
def _purge_lock() -> Iterator[Callable[[], None] | None]:
    """Yields a function that keeps the lock during a long run, or None if another holds it."""
    engine = db.engine
    if engine.dialect.name == "postgresql":
        with _advisory_lock() as held:
            yield (lambda: None) if held else None
        return
    holder = secrets.token_hex(16)
    run = MaintenanceRun
    mine = and_(run.name == PURGE_JOB, run.holder == holder)

    def renew() -> None:
        with engine.begin() as connection:
            result = connection.execute(
                update(run).where(mine).values(leased_until=utcnow() + LEASE)
            )
        if result.rowcount != 1:
            raise PurgeLeaseLost("the purge lease ran out; another instance may be purging")

    now = utcnow()
    with engine.begin() as connection:
        connection.execute(_insert_job_row(engine.dialect.name))
        taken = connection.execute(
            update(run)
            .where(
                run.name == PURGE_JOB,
                or_(run.leased_until.is_(None), run.leased_until < now),
            )
            .values(holder=holder, leased_until=now + LEASE)
        )
    if taken.rowcount != 1:
        yield None
        return
    try:
        yield renew
    finally:
        with engine.begin() as connection:
            connection.execute(update(run).where(mine).values(holder=None, leased_until=None))


@contextmanager
def _advisory_lock() -> Iterator[bool]:
    """PostgreSQL's session-level advisory lock, on a connection of its own, without waiting.

    If this process dies, PostgreSQL releases the lock with the connection.
    """
    connection = db.engine.connect()
    held = False
    try:
        held = bool(connection.scalar(select(func.pg_try_advisory_lock(PURGE_LOCK_KEY))))
        connection.commit()
        yield held
    finally:
        try:
            if held:
                connection.scalar(select(func.pg_advisory_unlock(PURGE_LOCK_KEY)))
                connection.commit()
        except SQLAlchemyError:
            connection.invalidate()  # closed rather than pooled: that releases the lock
        connection.close()


def _insert_job_row(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(MaintenanceRun).values(name=PURGE_JOB).on_conflict_do_nothing()


def _due(interval: dt.timedelta) -> bool:
    with db.engine.begin() as connection:
        connection.execute(_insert_job_row(connection.dialect.name))
        finished = connection.scalar(
            select(MaintenanceRun.finished_at).where(MaintenanceRun.name == PURGE_JOB)
        )
    return finished is None or finished <= utcnow() - interval


def _finished() -> None:
    with db.engine.begin() as connection:
        connection.execute(_insert_job_row(connection.dialect.name))
        connection.execute(
            update(MaintenanceRun)
            .where(MaintenanceRun.name == PURGE_JOB)
            .values(finished_at=utcnow())
        )


# -- inside ``idserver serve`` ----------------------------------------------------------------
def start_periodic_purge(app: Flask) -> threading.Thread | None:
    """Purge every ``PURGE_INTERVAL_SECONDS`` from a background thread of this worker.

    Every worker of every instance runs one; the lock and the time of the last finished run
    (``maintenance_runs``) make them together purge about once per interval.
    """
    interval = app.config["PURGE_INTERVAL_SECONDS"]
    if not interval:
        return None
    thread = threading.Thread(
        target=_purge_periodically, args=(app, interval), name="idserver-purge", daemon=True
    )
    thread.start()
    return thread


def _purge_periodically(app: Flask, interval: int) -> None:
    # A run is due 0.8 intervals after the last one; workers wake 0.9 to 1.1 intervals apart,
    # so one of them catches it without all of them running back to back.
    due_after = dt.timedelta(seconds=0.8 * interval)
    while True:
        time.sleep(interval * random.uniform(0.9, 1.1))  # noqa: S311 -- spreading, not secrecy
        try:
            with app.app_context():
                report = purge_expired_data(actor="system", due_after=due_after)
        except Exception:  # a failed run must not end the worker; the next one tries again
            log.exception("the periodic purge failed; it runs again in %s s", interval)
            continue
        if "deleted" in report:
            log.info("purge: %s", report["deleted"])
