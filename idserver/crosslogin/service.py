"""The QR-code login transaction: an explicit state machine kept in the database.

::

    pending ──mark_scanned──▶ scanned ──approve──▶ approved ──consume──▶ consumed
       │                        │                     │
       ├──approve_on_desktop────┼──▶ approved         │
       ├──expire────────────────┼─────────────────────┴──▶ expired ──consume_denied──▶ consumed
       └──deny──────────────────┴──▶ denied ──consume_denied──▶ consumed

- ``deny``: the citizen says no on the phone (``deny``), a wrong number is typed
  (``issue_challenge``, ``approve``), the computer cancels (``cancel_on_desktop``), under
  the ``deny`` proximity policy the phone is in another network (``mark_scanned``,
  ``issue_challenge``), or another citizen than the one the relying party named approves
  (``approve``, ``approve_on_desktop``: ``other_account``). ``deny_reason`` says which
  (``DenyReason``).
- ``expire``: once ``expires_at`` has passed, also an approval not yet consumed.
- ``consume_denied``: the relying party is told of a login that ended unapproved, once.

``LoginTransaction.TRANSITIONS`` lists these moves and ``states.transition`` makes them: each
is one conditional ``UPDATE … WHERE state IN (…)`` whose row count says whether this caller
won; nothing is decided by a read followed by a write. Every transition the desktop can see
bumps ``version`` and notifies the waiting desktop (``crosslogin.events``); counting a
handed-out challenge or burning its nonce does neither.

The desktop that started the login holds a secret in an HttpOnly cookie (only its hash is
stored); the first phone that scans a fresh QR frame gets a binding secret the same way. The
WebAuthn challenge for approval is ``SHA-256(nonce ‖ canonical JSON of what the phone showed
and the typed number)``, so the signed assertion is evidence of exactly that consent.

What the phone shows includes whether it scanned from the computer's network
(``crosslogin.proximity``); if not, the citizen is warned, or under the ``deny`` policy the
login ends at the scan. The phone's events in the audit log name both devices' networks.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import secrets
from dataclasses import dataclass
from dataclasses import replace
from typing import Any
from typing import cast

from flask import current_app
from flask import g
from flask_babel import lazy_gettext as _l
from sqlalchemy import Row
from sqlalchemy import Table
from sqlalchemy import bindparam
from sqlalchemy import insert
from sqlalchemy import select

from ..assurance import at_least
from ..assurance import login_level
from ..audit import record_event
from ..citizens.models import Citizen
from ..citizens.service import user_handle_of
from ..config import ACR_PASSKEY
from ..config import ACR_PHONE
from ..db import db
from ..db import utcnow
from ..errors import LoginRejected
from ..errors import RateLimited
from ..metrics import LOGINS
from ..metrics import RATE_LIMIT_REFUSALS
from ..passkeys import ceremonies
from ..passkeys.errors import PasskeyRejected
from ..passkeys.models import Credential
from ..passkeys.models import usable_device
from ..passkeys.service import create_challenge
from ..passkeys.service import expected_origins
from ..passkeys.service import record_assertion
from ..passkeys.service import take_challenge
from ..states import transition
from . import events
from . import proximity
from . import qr
from .errors import AlreadyScanned
from .errors import InvalidNumber
from .errors import LevelTooLow
from .errors import LoginEnded
from .errors import LoginNotFound
from .errors import NoChallenge
from .errors import NotBound
from .errors import OtherAccount
from .errors import ProximityRequired
from .errors import QrStale
from .errors import UnknownDevice
from .errors import WrongNumber
from .errors import ended_error
from .models import LOGIN_ROW
from .models import LOGIN_TABLE
from .models import DenyReason
from .models import Login
from .models import LoginState
from .models import LoginTransaction
from .models import Requester

log = logging.getLogger(__name__)

__all__ = [
    "ACR_PASSKEY",
    "ACR_PHONE",
    "OTHER_ACCOUNT",
    "OTHER_NETWORK",
    "Requester",
    "approve",
    "approve_on_desktop",
    "begin_desktop_passkey",
    "cancel_on_desktop",
    "consume",
    "consume_denied",
    "create_transaction",
    "deny",
    "device_owner",
    "display_context",
    "for_browser",
    "for_phone",
    "issue_challenge",
    "mark_scanned",
    "phone_warnings",
    "read_login",
    "read_status",
]

LIVE = (LoginState.PENDING, LoginState.SCANNED)
OTHER_NETWORK = DenyReason.OTHER_NETWORK
OTHER_ACCOUNT = DenyReason.OTHER_ACCOUNT
OTHER_NETWORK_WARNING = _l(
    "The computer that asked for this login is in a different network than your phone. "
    "Only confirm if you are sitting at that computer yourself."
)
OTHER_NETWORK_HINT = _l(
    "This can also happen if your phone uses mobile data while the computer is on Wi-Fi."
)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# The conditions the transitions add, built once (``states.transition`` caches by them).
_NOT_EXPIRED = LoginTransaction.expires_at > bindparam("now")
_EXPIRED = LoginTransaction.expires_at <= bindparam("now")
_DEVICE_USABLE = usable_device(LoginTransaction.credential_pk)
_UNDER_CHALLENGE_LIMIT = LoginTransaction.challenges_issued < bindparam("challenge_limit")
_ONE_MORE_CHALLENGE = LoginTransaction.challenges_issued + 1
_NONCE_UNUSED = LoginTransaction.challenge_nonce == bindparam("nonce")


def _transition(
    login_id: str,
    *,
    from_states: tuple[str, ...],
    audit: tuple[str, str, dict[str, Any]] | None = None,
    where: tuple[Any, ...] = (),
    params: dict[str, Any] | None = None,
    announce: bool = True,
    **values: Any,
) -> bool:
    """Move ``login_id`` out of ``from_states`` if it is still live; True for the one winner.

    ``audit`` = (event, actor, data) is appended to the audit log in the same transaction;
    ``where`` adds conditions to the UPDATE (built once, bound from ``params``, see
    ``states.transition``). ``announce=False`` is for changes the desktop cannot see (a
    challenge counted): the version stays, and no waiting desktop is woken.
    """
    session = db.session
    won = transition(
        LoginTransaction,
        login_id,
        from_states,
        where=(_NOT_EXPIRED, *where),
        params={"now": utcnow(), **(params or {})},
        announce=announce,
        **values,
    )
    if won and audit is not None:
        event, actor, data = audit
        record_event(
            event, actor=actor, subject=values.get("citizen_id"), login_id=login_id, **data
        )
    session.commit()
    if won and values.get("state") in COUNTED_STATES:
        _count_login(values)
    if won and announce:
        events.notify(login_id)
    return won


COUNTED_STATES = (LoginState.APPROVED, LoginState.DENIED)
APPROVAL_METHODS: dict[Any, str] = {ACR_PHONE: "phone", ACR_PASSKEY: "passkey"}


def _count_login(values: dict[str, Any]) -> None:
    """An approval (by method) or a denial (by reason) has just been committed."""
    if values["state"] == LoginState.APPROVED:
        LOGINS.labels("approved", APPROVAL_METHODS.get(values.get("acr"), "other")).inc()
    else:
        LOGINS.labels("denied", values.get("deny_reason") or "other").inc()


def read_login(login_id: str) -> Login | None:
    """The login ``login_id`` as it is now (``LOGIN_ROW``, in the request's transaction)."""
    row = db.session.connection().execute(LOGIN_ROW, {"login_id": login_id}).first()
    return None if row is None else Login(*row)


def _load(login_id: Any) -> Login:
    if not isinstance(login_id, str) or not 20 <= len(login_id) <= 64:
        raise LoginNotFound()
    tx = read_login(login_id)
    if tx is None:
        raise LoginNotFound()
    if tx.state in ("pending", "scanned", "approved") and tx.expires_at <= utcnow():
        tx = expire(tx)
    return tx


EXPIRABLE = (*LIVE, LoginState.APPROVED)


def expire(tx: Login) -> Login:
    """Mark a transaction whose lifetime is over: pending/scanned/approved → expired; the
    login as it is afterwards (read again: another request may have ended it first)."""
    session = db.session
    expired = transition(
        LoginTransaction,
        tx.id,
        EXPIRABLE,
        where=(_EXPIRED,),
        params={"now": utcnow()},
        state=LoginState.EXPIRED,
    )
    if expired:
        record_event("login_expired", actor="system", login_id=tx.id, client_id=tx.client_id)
    session.commit()
    if expired:
        LOGINS.labels("expired", "").inc()
        events.notify(tx.id)
    now = read_login(tx.id)
    if now is None:  # purged in between
        raise LoginNotFound()
    return now


# -- desktop side ---------------------------------------------------------------------------
def create_transaction(
    *,
    client_id: str,
    params: dict[str, str],
    scope: str,
    requester: Requester,
    desktop_ip: str,
    user_agent: str,
) -> tuple[Login, str]:
    """Start a login for a request its owner (``oidc``) has validated; returns it and the
    browser secret.

    ``params`` are kept for the owner to answer from and are never read here; ``requester`` is
    everything the pages and the phone show about who asks (fixed for the login's lifetime).
    """
    browser_secret = secrets.token_urlsafe(32)
    ttl = dt.timedelta(seconds=current_app.config["LOGIN_TTL_SECONDS"])
    now = utcnow()
    values: dict[str, Any] = dict(
        id=secrets.token_urlsafe(24),  # 192 bits
        state=LoginState.PENDING,
        deny_reason=None,
        browser_hash=_hash(browser_secret),
        phone_hash=None,
        client_id=client_id,
        request_params=params,
        scope=scope,
        requester=requester.as_json(),
        number=f"{secrets.randbelow(90) + 10}",
        desktop_ip=desktop_ip,
        desktop_user_agent=user_agent[:500],
        created_at=now,
        expires_at=now + ttl,
        challenge_nonce=None,
        challenges_issued=0,
        citizen_id=None,
        credential_pk=None,
        approved_at=None,
        amr=None,
        acr=None,
        level=None,
        phone_ip=None,
        version=0,
    )
    # A Core INSERT of exactly these values: the ORM's unit of work would add nothing but cost.
    db.session.connection().execute(_NEW_LOGIN, values)
    db.session.commit()
    tx = Login(**values)
    LOGINS.labels("started", "").inc()
    return tx, browser_secret


_NEW_LOGIN = insert(LOGIN_TABLE)


def for_browser(login_id: Any, browser_secret: str | None) -> Login:
    """The transaction, only for the browser that started it; everyone else gets 404."""
    tx = _load(login_id)
    if not browser_secret or not hmac.compare_digest(_hash(browser_secret), tx.browser_hash):
        raise LoginNotFound()
    return tx


# What the desktop's status shows; the long poll reads only these columns while it waits.
STATUS_COLUMNS = select(
    LoginTransaction.id,
    LoginTransaction.state,
    LoginTransaction.version,
    LoginTransaction.number,
    LoginTransaction.expires_at,
    LoginTransaction.deny_reason,
).where(LoginTransaction.id == bindparam("login_id"))


def read_status(login_id: str) -> Row[Any] | None:
    """The status columns of ``login_id`` (``STATUS_COLUMNS``), or None once it is gone.

    One narrow query on a connection of its own, given back at once: a waiting desktop holds
    none. Database errors reach the caller (the long poll decides what a transient one means).
    """
    with db.engine.connect() as connection:
        return connection.execute(STATUS_COLUMNS, {"login_id": login_id}).first()  # type: ignore[return-value]


def qr_key(tx: Login) -> bytes:
    return qr.login_key(current_app.config["SECRET_KEY"], tx.id)


def consume(tx: Login) -> bool:
    """approved → consumed: the one request that may continue the OIDC flow.

    Only while the device that approved it is still active: one removed or blocked since
    (account page, revocation code, clerk) yields no code and no session.
    """
    return _transition(
        tx.id,
        from_states=(LoginState.APPROVED,),
        where=(_DEVICE_USABLE,),
        state=LoginState.CONSUMED,
    )


def consume_denied(tx: Login) -> bool:
    """denied/expired → consumed, so the error response to the relying party is sent once."""
    consumed = transition(
        LoginTransaction,
        tx.id,
        (LoginState.DENIED, LoginState.EXPIRED),
        state=LoginState.CONSUMED,
    )
    db.session.commit()
    return consumed


def cancel_on_desktop(tx: Login) -> None:
    """The person at the computer cancels: pending/scanned → denied."""
    reason = DenyReason.CANCELLED
    audit = ("login_denied", "desktop", {"client_id": tx.client_id, "reason": reason})
    if not _transition(
        tx.id, from_states=LIVE, audit=audit, state=LoginState.DENIED, deny_reason=reason
    ):
        raise LoginEnded()


def begin_desktop_passkey(tx: Login) -> dict[str, Any]:
    """WebAuthn options for logging in with a passkey on the desktop itself (or via hybrid)."""
    if tx.state not in LIVE:
        raise LoginEnded()
    _count_challenge(tx, from_states=LIVE)
    challenge = create_challenge("login", subject=tx.id, data={})
    db.session.commit()
    options = ceremonies.authentication_options(
        rp_id=current_app.config["RP_ID"], challenge=challenge.challenge
    )
    return {"ceremony_id": challenge.id, "options": options}


def approve_on_desktop(tx: Login, *, ceremony_id: Any, credential: Any) -> None:
    """Verify a passkey assertion made on the desktop: pending/scanned → approved."""
    try:
        challenge = take_challenge(ceremony_id, purpose="login")
    except PasskeyRejected as exc:
        raise LoginRejected(exc.description, error=exc.error) from exc
    if challenge.subject != tx.id:
        raise LoginRejected(_l("This step has expired. Please start again."))
    stored = _verify(credential, challenge.challenge)
    evidence = {"credential": credential, "challenge": _b64(challenge.challenge)}
    _approve(tx, stored, from_states=LIVE, acr=ACR_PASSKEY, evidence=evidence)


# -- phone side -----------------------------------------------------------------------------
def check_frame(login_id: Any, *, t: Any, h: Any) -> Login:
    """The login a fresh QR frame belongs to, while it waits for a phone; changes nothing."""
    tx = _load(login_id)
    _check_frame(tx, t=t, h=h)
    return tx


def _check_frame(tx: Login, *, t: Any, h: Any) -> None:
    config = current_app.config
    fresh = qr.verify_frame(
        qr_key(tx),
        t,
        h,
        step_seconds=config["QR_STEP_SECONDS"],
        max_age_seconds=config["QR_MAX_AGE_SECONDS"],
    )
    if not fresh:
        raise QrStale()
    if tx.state != "pending":
        raise ended_error(tx.state)


def mark_scanned(
    login_id: Any, *, t: Any, h: Any, binding: str | None, phone_ip: str
) -> tuple[Login, str]:
    """pending → scanned for the first phone with a fresh QR frame; returns the binding secret.

    The phone that already holds the binding may open the page again (a reload).
    """
    tx = _load(login_id)
    if isinstance(binding, str) and tx.phone_hash and tx.state in LIVE:
        if hmac.compare_digest(_hash(binding), tx.phone_hash):
            return tx, binding
    _check_frame(tx, t=t, h=h)
    _enforce_proximity(tx, phone_ip, from_state=LoginState.PENDING)
    new_binding = secrets.token_urlsafe(32)
    if not _transition(
        tx.id,
        from_states=(LoginState.PENDING,),
        state=LoginState.SCANNED,
        phone_hash=_hash(new_binding),
        phone_ip=phone_ip,
    ):
        raise AlreadyScanned()
    scanned = replace(
        tx,
        state=LoginState.SCANNED,
        phone_hash=_hash(new_binding),
        phone_ip=phone_ip,
        version=tx.version + 1,
    )
    return scanned, new_binding


def _proximity_policy(tx: Login) -> str:
    """The requester's own proximity policy, else IDSERVER_PROXIMITY_POLICY."""
    return tx.requesting.proximity_policy or current_app.config["PROXIMITY_POLICY"]


def _prefixes() -> dict[str, int]:
    config = current_app.config
    return {
        "ipv4_prefix": config["PROXIMITY_IPV4_PREFIX"],
        "ipv6_prefix": config["PROXIMITY_IPV6_PREFIX"],
    }


def same_network(tx: Login) -> bool:
    """Whether the phone that scanned ``tx`` did so from the computer's network."""
    return proximity.same_network(tx.desktop_ip, tx.phone_ip, **_prefixes())


def _networks(desktop_ip: str, phone_ip: str | None) -> dict[str, Any]:
    """Both devices' networks for the audit log (RFC 10027 relay evidence).

    The networks the comparison used, not the full addresses: the log is kept for good and
    must not hold personal data that outlives the resident (``audit.models``). The full
    addresses stay in the login's row (``desktop_ip``, ``phone_ip``), found by ``login_id``,
    until the purge deletes it (``admin.retention``, ``PURGE_AFTER_HOURS``).
    """
    desktop = proximity.network_of(desktop_ip, **_prefixes())
    phone = proximity.network_of(phone_ip, **_prefixes())
    return {
        "desktop_network": str(desktop) if desktop is not None else "unknown",
        "phone_network": str(phone) if phone is not None else "unknown",
        "same_network": desktop is not None and desktop == phone,
    }


def _enforce_proximity(tx: Login, phone_ip: str | None, *, from_state: str) -> None:
    """Under the ``deny`` policy a phone in another network ends the login: → denied.

    RFC 10027 *Establish Proximity*: a relayed QR code is scanned far from the computer that
    shows it. Checked at the scan (``pending``) and again at the challenge (``scanned``), in
    case the policy changed in between. The login ends for good (the computer and the relying
    party are told), the phone's address is kept beside the computer's, and the phone gets no
    binding. Under ``warn`` nothing happens here: the phone shows ``phone_warnings``.
    """
    if proximity.same_network(tx.desktop_ip, phone_ip, **_prefixes()):
        return
    if _proximity_policy(tx) != "deny":
        return
    data = {
        "client_id": tx.client_id,
        "reason": OTHER_NETWORK,
        **_networks(tx.desktop_ip, phone_ip),
    }
    if not _transition(
        tx.id,
        from_states=(from_state,),
        audit=("login_denied", "phone", data),
        state=LoginState.DENIED,
        deny_reason=OTHER_NETWORK,
        phone_ip=phone_ip,
    ):
        if from_state == "pending":
            raise AlreadyScanned()
        raise LoginEnded()
    raise ProximityRequired()


def phone_warnings(tx: Login) -> list[dict[str, str]]:
    """What the phone must point out before the citizen confirms (codes and texts)."""
    if same_network(tx):
        return []
    message = f"{OTHER_NETWORK_WARNING} {OTHER_NETWORK_HINT}"
    return [{"code": OTHER_NETWORK, "message": message}]


def for_phone(login_id: Any, binding: Any) -> Login:
    tx = _load(login_id)
    if (
        not isinstance(binding, str)
        or not tx.phone_hash
        or not hmac.compare_digest(_hash(binding), tx.phone_hash)
    ):
        raise NotBound()
    if tx.state != "scanned":
        raise ended_error(tx.state)
    return tx


def _browser_name(user_agent: str) -> str:
    ua = user_agent
    for marker, name in (
        ("Edg/", "Microsoft Edge"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
    ):
        if marker in ua:
            browser = name
            break
    else:
        browser = ua.split("/", 1)[0][:40] or "?"
    for marker, system in (
        ("Windows", "Windows"),
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("Mac OS", "macOS"),
        ("Linux", "Linux"),
    ):
        if marker in ua:
            return f"{browser} ({system})"
    return browser


def display_context(tx: Login) -> dict[str, Any]:
    """What the phone shows the citizen; the approval challenge commits to exactly this."""
    requester = tx.requesting
    return {
        "login_id": tx.id,
        "client_id": tx.client_id,
        "client_name": requester.name,
        "claims": list(requester.claims),
        "essential_claims": list(requester.essential_claims),
        "desktop": {"ip": tx.desktop_ip, "browser": _browser_name(tx.desktop_user_agent)},
        "same_network": same_network(tx),
        "created_at": int(tx.created_at.timestamp()),
        "expires_at": int(tx.expires_at.timestamp()),
    }


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def approval_challenge(nonce: bytes, context: dict[str, Any], number: str) -> bytes:
    return hashlib.sha256(nonce + canonical_json({"context": context, "number": number})).digest()


def _check_number(tx: Login, number: Any) -> str:
    if not isinstance(number, str) or not re.fullmatch(r"[0-9]{2}", number.strip()):
        raise InvalidNumber()
    if not hmac.compare_digest(number.strip(), tx.number):
        reason = DenyReason.WRONG_NUMBER
        data = {
            "client_id": tx.client_id,
            "reason": reason,
            **_networks(tx.desktop_ip, tx.phone_ip),
        }
        audit = ("login_denied", "phone", data)
        _transition(
            tx.id, from_states=LIVE, audit=audit, state=LoginState.DENIED, deny_reason=reason
        )
        raise WrongNumber()
    return tx.number


def _count_challenge(tx: Login, *, from_states: tuple[str, ...], **values: Any) -> None:
    """Hand out one more WebAuthn challenge for ``tx``, at most MAX_CHALLENGES_PER_LOGIN.

    Bounds approval bombing and challenge flooding per login (RFC 10027 "Rate Limits"); the
    count and the bound are one conditional UPDATE, so concurrent requests cannot exceed it.
    """
    limit = current_app.config["MAX_CHALLENGES_PER_LOGIN"]
    if tx.challenges_issued >= limit:
        RATE_LIMIT_REFUSALS.labels("max_challenges_per_login").inc()
        raise RateLimited(_l("Too many attempts for this login. Please start again."))
    if not _transition(
        tx.id,
        from_states=from_states,
        where=(_UNDER_CHALLENGE_LIMIT,),
        params={"challenge_limit": limit},
        announce=False,
        challenges_issued=_ONE_MORE_CHALLENGE,
        **values,
    ):
        raise LoginEnded()


def issue_challenge(login_id: Any, *, binding: Any, number: Any) -> dict[str, Any]:
    """After the citizen typed the number: WebAuthn request options bound to what was shown."""
    tx = for_phone(login_id, binding)
    _enforce_proximity(tx, tx.phone_ip, from_state=LoginState.SCANNED)
    typed = _check_number(tx, number)
    nonce = secrets.token_bytes(32)
    _count_challenge(tx, from_states=(LoginState.SCANNED,), challenge_nonce=nonce)
    context = display_context(tx)
    options = ceremonies.authentication_options(
        rp_id=current_app.config["RP_ID"], challenge=approval_challenge(nonce, context, typed)
    )
    return {
        "options": options,
        "challenge_inputs": {"nonce": _b64(nonce), "context": context},
        "warnings": phone_warnings(tx),
    }


def _approve(
    tx: Login,
    stored: ApprovingDevice,
    *,
    from_states: tuple[str, ...],
    acr: str,
    evidence: dict[str, Any],
    audit_data: dict[str, Any] | None = None,
) -> Login:
    """→ approved by ``stored``'s owner, the assertion kept as evidence; audited. Once only.

    If the relying party named the citizen (``Requester.expected_citizen_id``) and ``stored``
    belongs to another, → denied (``other_account``) instead, and ``OtherAccount`` is raised.
    The login's assurance level (``assurance.login_level``) is kept with it; one below the
    requester's ``required_level`` ends the login instead: → denied (``level_too_low``).
    """
    expected = tx.requesting.expected_citizen_id
    if expected is not None and not hmac.compare_digest(stored.citizen_id, expected):
        _refuse_other_account(tx, stored, from_states=from_states, audit_data=audit_data)
    level = login_level(stored.owner, stored, current_app.config)
    required = tx.requesting.required_level
    if required and not at_least(level, required):
        reason = DenyReason.LEVEL_TOO_LOW
        denial = {
            "client_id": tx.client_id,
            "reason": reason,
            "level": level,
            "required_level": required,
            **(audit_data or {}),
        }
        if not _transition(
            tx.id,
            from_states=from_states,
            audit=("login_denied", f"citizen:{stored.citizen_id}", denial),
            state=LoginState.DENIED,
            deny_reason=reason,
        ):
            raise LoginEnded()
        raise LevelTooLow()
    data = {
        "client_id": tx.client_id,
        "credential_id": stored.id,
        "acr": acr,
        "level": level,
        **(audit_data or {}),
    }
    approval: dict[str, Any] = {
        "state": LoginState.APPROVED,
        "citizen_id": stored.citizen_id,
        "credential_pk": stored.id,
        "approved_at": utcnow(),
        "amr": _amr(stored),
        "acr": acr,
        "level": level,
    }
    won = _transition(
        tx.id,
        from_states=from_states,
        audit=("login_approved", f"citizen:{stored.citizen_id}", data),
        evidence=evidence,
        **approval,
    )
    if not won:
        raise LoginEnded()
    return replace(tx, version=tx.version + 1, **approval)


def _refuse_other_account(
    tx: Login,
    stored: ApprovingDevice,
    *,
    from_states: tuple[str, ...],
    audit_data: dict[str, Any] | None,
) -> None:
    """Another citizen than the expected one approved: → denied (``other_account``); raises.

    The audit entry names the credential that tried, not the expected citizen: the login
    reveals nothing about who the relying party meant.
    """
    reason = DenyReason.OTHER_ACCOUNT
    data = {
        "client_id": tx.client_id,
        "reason": reason,
        "credential_id": stored.id,
        **(audit_data or {}),
    }
    if not _transition(
        tx.id,
        from_states=from_states,
        audit=("login_denied", f"citizen:{stored.citizen_id}", data),
        state=LoginState.DENIED,
        deny_reason=reason,
    ):
        raise LoginEnded()
    raise OtherAccount()


def _amr(stored: ApprovingDevice) -> list[str]:
    """RFC 8176 §2: possession of a key plus user verification (UV is always required).

    ``hwk`` only where attestation proved a hardware-bound key at enrolment (and the key cannot
    be synced); a clear backup-eligible flag alone is the authenticator's unproved word.
    """
    hardware = stored.hardware_attested and not stored.backup_eligible
    return sorted({"hwk" if hardware else "swk", "user", "mfa"})


@dataclass(frozen=True)
class Proofing:
    """The approving device's owner, as far as the approval needs them (``assurance``)."""

    citizen_id: str
    deleted_at: dt.datetime | None
    proofing_document: str | None
    proofed_on: dt.date | None


@dataclass(frozen=True)
class ApprovingDevice:
    """A presented credential and its owner, read in one statement (``DEVICE_ROW``).

    The approval's rate limit names the owner (``device_owner``) before the view runs, and the
    view verifies the assertion with the same row: one read of the credential per approval, and
    no mapped objects. The signature counter is taken as read; ``record_assertion`` advances it
    only if it is still that value, so a stale read refuses, never lets two assertions pass.
    """

    id: int
    credential_id: bytes
    citizen_id: str
    kind: str
    public_key: bytes
    sign_count: int
    backup_eligible: bool
    hardware_attested: bool
    revoked_at: dt.datetime | None
    suspended_at: dt.datetime | None
    owner: Proofing

    @property
    def usable(self) -> bool:
        """Neither the device is revoked or suspended nor its owner deleted."""
        return self.revoked_at is None and self.suspended_at is None and self.owner_active

    @property
    def owner_active(self) -> bool:
        return self.owner.deleted_at is None


_CREDENTIALS = cast(Table, Credential.__table__)
_CITIZENS = cast(Table, Citizen.__table__)
_DEVICE_FIELDS = [name for name in ApprovingDevice.__dataclass_fields__ if name != "owner"]
DEVICE_ROW = (
    select(
        *(_CREDENTIALS.c[name] for name in _DEVICE_FIELDS),
        _CITIZENS.c.deleted_at,
        _CITIZENS.c.proofing_document,
        _CITIZENS.c.proofed_on,
    )
    .join(_CITIZENS, _CITIZENS.c.id == _CREDENTIALS.c.citizen_id)
    .where(_CREDENTIALS.c.credential_id == bindparam("credential_id"))
    .limit(1)
)
_READ_DEVICES = "idserver.crosslogin.devices"


def approving_device(credential_id: bytes) -> ApprovingDevice | None:
    """The device registered under ``credential_id`` with its owner, read once per request."""
    read: dict[bytes, ApprovingDevice | None] = g.setdefault(_READ_DEVICES, {})
    if credential_id not in read:
        found = (
            db.session.connection()
            .execute(DEVICE_ROW, {"credential_id": credential_id})
            .mappings()
            .first()
        )
        read[credential_id] = None if found is None else _device(found)
    return read[credential_id]


def _device(row: Any) -> ApprovingDevice:
    owner = Proofing(
        row["citizen_id"], row["deleted_at"], row["proofing_document"], row["proofed_on"]
    )
    return ApprovingDevice(**{name: row[name] for name in _DEVICE_FIELDS}, owner=owner)


def forget_devices() -> None:
    """Drop what ``approving_device`` read (at the end of each request)."""
    g.pop(_READ_DEVICES, None)


def device_owner(credential_id: bytes) -> str | None:
    """The citizen a presented credential id belongs to (the approval rate limit's key)."""
    device = approving_device(credential_id)
    return device.citizen_id if device is not None else None


def _verify(credential: Any, challenge: bytes) -> ApprovingDevice:
    try:
        raw_id = ceremonies.credential_id_of(credential)
    except PasskeyRejected as exc:
        raise LoginRejected(exc.description, error=exc.error) from exc
    stored = approving_device(raw_id)
    if stored is None or not stored.usable:
        raise UnknownDevice()
    try:
        verified = ceremonies.verify_assertion(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=current_app.config["RP_ID"],
            expected_origins=expected_origins(),
            credential_public_key=stored.public_key,
        )
    except PasskeyRejected as exc:
        raise LoginRejected(exc.description, error=exc.error) from exc
    # WebAuthn L3 §7.2 step 6: a discoverable login (no allowCredentials) must name its user,
    # and that user must own the credential.
    if verified.user_handle is None or not hmac.compare_digest(
        verified.user_handle, user_handle_of(stored.citizen_id)
    ):
        raise LoginRejected(_l("The confirmation on the phone could not be verified."))
    record_assertion(stored, verified)
    return stored


def approve(login_id: Any, *, binding: Any, number: Any, credential: Any) -> Login:
    """scanned → approved with an assertion over the challenge from ``issue_challenge``."""
    tx = for_phone(login_id, binding)
    typed = _check_number(tx, number)
    nonce = tx.challenge_nonce
    if nonce is None:
        raise NoChallenge()
    # Burn the nonce before verifying, so this assertion can be checked only once.
    burned = transition(
        LoginTransaction,
        tx.id,
        (LoginState.SCANNED,),
        where=(_NONCE_UNUSED,),
        params={"nonce": nonce},
        announce=False,
        challenge_nonce=None,
    )
    db.session.commit()
    if not burned:
        raise NoChallenge()
    context = display_context(tx)
    stored = _verify(credential, approval_challenge(nonce, context, typed))
    evidence = {"credential": credential, "context": context, "number": typed, "nonce": _b64(nonce)}
    return _approve(
        tx,
        stored,
        from_states=(LoginState.SCANNED,),
        acr=ACR_PHONE,
        evidence=evidence,
        audit_data=_networks(tx.desktop_ip, tx.phone_ip),
    )


def deny(login_id: Any, *, binding: Any) -> None:
    """The citizen said no on the phone: scanned → denied."""
    tx = for_phone(login_id, binding)
    reason = DenyReason.DENIED
    data = {"client_id": tx.client_id, "reason": reason, **_networks(tx.desktop_ip, tx.phone_ip)}
    audit = ("login_denied", "phone", data)
    if not _transition(
        tx.id,
        from_states=(LoginState.SCANNED,),
        audit=audit,
        state=LoginState.DENIED,
        deny_reason=reason,
    ):
        raise LoginEnded()
