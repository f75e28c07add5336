"""Logout everywhere: when a Bürger-ID session ends, every relying party it logged in to hears
of it (OIDC Back-Channel Logout 1.0, Front-Channel Logout 1.0 as the fallback)::

    session ends (sessions.ended) ──▶ sessions_ended: the session's access tokens revoked,
         │ same transaction                 a logout_deliveries row per back-channel client,
         ▼                                  front-channel URIs kept for the logged-out page
    committed ──▶ after the request: deliver(ids) ─ POST logout token ─▶ RP  ── 2xx: delivered
                                                                          └─ else: retried with
    `idserver serve` thread, `idserver maintenance deliver-logouts` ◀── backoff, then given up

A later login in the same browser by the same citizen takes the ended session's clients over,
so a logout reaches every client the browser logged in to. Refresh tokens (``offline_access``)
outlive the browser session by design and are kept.

The outbox and the logged-out page's iframes serve SAML too: ``saml.logout`` adds its rows
(``protocol = "saml"``, through ``add_delivery``) and iframes (``add_frontchannel_logout``), and
``create_app`` plugs in how a SAML row is sent (``init_app(app, channels={"saml": …})``), so
claiming, retries, giving up and auditing are the same for both.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import threading
import time
from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlencode

import requests
from flask import Flask
from flask import Response
from flask import current_app
from flask import g
from flask import has_request_context
from joserfc import jwt
from sqlalchemy import Table
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update

from ..audit import record_event
from ..db import db
from ..db import utcnow
from ..keys import ID_TOKEN
from ..keys import key_store
from .claims import pairwise_subject
from .claims import session_identifier
from .models import AuthorizationCode
from .models import Client
from .models import LogoutDelivery
from .models import SessionClient
from .models import Token

log = logging.getLogger(__name__)

__all__ = [
    "BACKCHANNEL_LOGOUT_EVENT",
    "FrontChannelLogout",
    "LogoutChannel",
    "add_delivery",
    "add_frontchannel_logout",
    "deliver_due_logouts",
    "frontchannel_logouts",
    "init_app",
    "logout_token",
    "origin_of",
    "record_session_client",
    "sessions_ended",
]

BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TYPE = "logout+jwt"  # noqa: S105 -- Back-Channel Logout 1.0 §2.4 (explicit typing, RFC 8725 §3.11)
LOGOUT_TOKEN_TTL = 120  # seconds; the RP checks exp (§2.6 step 3 by reference to OIDC Core)
PENDING_KEY = "logout_deliveries"
FRONTCHANNEL_KEY = "frontchannel_logouts"


@dataclass(frozen=True)
class FrontChannelLogout:
    """One iframe of the logged-out page (Front-Channel Logout 1.0 §3)."""

    uri: str  # frontchannel_logout_uri with iss and sid
    origin: str


_SESSION_CLIENTS = cast(Table, SessionClient.__table__)
_RECORD_SESSION_CLIENT = insert(_SESSION_CLIENTS)


@dataclass(frozen=True)
class LogoutChannel:
    """How one protocol sends the outbox rows of its ``protocol``, and what the audit calls it."""

    send: Callable[[LogoutDelivery], str | None]  # None: delivered; else the error, no secrets
    delivered_event: str
    failed_event: str
    party_key: str  # the audit data field that names the recipient


def record_session_client(
    *, session_id: str, client_id: str, citizen_id: str, login_id: str
) -> None:
    """Remember that ``session_id`` issued a code to ``client_id``, in the caller's transaction
    (the one that starts the session and stores the code; the caller commits)."""
    db.session.execute(
        _RECORD_SESSION_CLIENT,
        {
            "session_id": session_id,
            "client_id": client_id,
            "citizen_id": citizen_id,
            "login_id": login_id,
            "created_at": utcnow(),
        },
    )


def sessions_ended(session_ids: Collection[str], *, successor: str | None = None) -> None:
    """The ``sessions.ended`` hook: runs in the transaction that ends the sessions.

    With a ``successor`` (a new login of the same citizen in the same browser) the clients move
    to it. Otherwise each client's access tokens from these sessions' logins are revoked, a
    back-channel client gets an outbox row, a front-channel one an iframe on the page.
    """
    session = db.session
    if successor is not None:
        session.execute(
            update(SessionClient)
            .where(SessionClient.session_id.in_(session_ids))
            .values(session_id=successor)
        )
        return
    rows = session.execute(
        select(SessionClient, Client)
        .join(Client, Client.client_id == SessionClient.client_id)
        .where(SessionClient.session_id.in_(session_ids))
        .order_by(SessionClient.id)
    ).all()
    if not rows:
        return
    now = utcnow()
    logins = {row.SessionClient.login_id for row in rows}
    session.execute(
        update(Token)
        .where(
            Token.code_id.in_(
                select(AuthorizationCode.id).where(AuthorizationCode.login_id.in_(logins))
            ),
            Token.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    issuer = current_app.config["ISSUER"]
    pending: list[LogoutDelivery] = []
    frontchannel: list[FrontChannelLogout] = []
    seen: set[tuple[str, str]] = set()
    for entry, client in rows:
        sid = session_identifier(entry.login_id)
        if (client.client_id, sid) in seen or client.status != "active":
            continue
        seen.add((client.client_id, sid))
        if client.backchannel_logout_uri:
            pending.append(
                _new_delivery(
                    protocol="oidc",
                    client_id=client.client_id,
                    sid=sid,
                    sub=pairwise_subject(entry.citizen_id, client_id=client.client_id),
                )
            )
        elif client.frontchannel_logout_uri:
            uri = client.frontchannel_logout_uri
            joiner = "&" if "?" in uri else "?"
            frontchannel.append(
                FrontChannelLogout(
                    uri=f"{uri}{joiner}{urlencode({'iss': issuer, 'sid': sid})}",
                    origin=origin_of(uri),
                )
            )
    session.flush()
    if has_request_context():
        g.setdefault(PENDING_KEY, []).extend(d.id for d in pending)
        g.setdefault(FRONTCHANNEL_KEY, []).extend(frontchannel)


def _new_delivery(*, protocol: str, client_id: str, sid: str, sub: str) -> LogoutDelivery:
    delivery = LogoutDelivery(
        protocol=protocol,
        client_id=client_id,
        sid=sid,
        sub=sub,
        attempts=0,
        next_attempt_at=utcnow(),
    )
    db.session.add(delivery)
    return delivery


def add_delivery(*, protocol: str, client_id: str, sid: str, sub: str) -> None:
    """An outbox row of another protocol, in the transaction that ends the session; sent after
    this request (as OIDC's own) by the channel ``init_app`` was given for ``protocol``."""
    delivery = _new_delivery(protocol=protocol, client_id=client_id, sid=sid, sub=sub)
    db.session.flush()
    if has_request_context():
        g.setdefault(PENDING_KEY, []).append(delivery.id)


def add_frontchannel_logout(frame: FrontChannelLogout) -> None:
    """An iframe of another protocol for the logged-out page of this request."""
    if has_request_context():
        g.setdefault(FRONTCHANNEL_KEY, []).append(frame)


def frontchannel_logouts() -> list[FrontChannelLogout]:
    """The front-channel logouts of the sessions this request ended (for the logged-out page)."""
    return list(g.get(FRONTCHANNEL_KEY, []))


def origin_of(uri: str) -> str:
    scheme, _, rest = uri.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0].split('?', 1)[0]}"


def logout_token(delivery: LogoutDelivery, client: Client) -> str:
    """A Logout Token (Back-Channel Logout 1.0 §2.4): signed like the client's ID tokens, with
    ``sid`` and ``sub``, the ``events`` claim, a fresh ``jti``, and never a ``nonce``."""
    alg = client.id_token_signed_response_alg
    key = key_store().signing_key(ID_TOKEN, alg)
    now = int(time.time())
    claims = {
        "iss": current_app.config["ISSUER"],
        "aud": client.client_id,
        "iat": now,
        "exp": now + LOGOUT_TOKEN_TTL,
        "jti": secrets.token_urlsafe(16),
        "sub": delivery.sub,
        "sid": delivery.sid,
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    }
    header = {"alg": alg, "kid": key.kid or "", "typ": LOGOUT_TOKEN_TYPE}
    return jwt.encode(header, claims, key)


def deliver(delivery_ids: Collection[int] | None = None) -> dict[str, int]:
    """POST the logout tokens due now (or of ``delivery_ids`` that are still pending); returns
    counts. Each delivery is claimed by a conditional UPDATE, so two workers never both send it.
    """
    config = current_app.config
    now = utcnow()
    query = select(LogoutDelivery.id).where(
        LogoutDelivery.delivered_at.is_(None),
        LogoutDelivery.failed_at.is_(None),
        LogoutDelivery.next_attempt_at <= now,
    )
    if delivery_ids is not None:
        query = query.where(LogoutDelivery.id.in_(delivery_ids))
    ids = list(db.session.scalars(query.order_by(LogoutDelivery.id).limit(500)))
    counts = {"delivered": 0, "retrying": 0, "failed": 0}
    timeout = config["LOGOUT_DELIVERY_TIMEOUT_SECONDS"]
    for delivery_id in ids:
        # Claim it: the next attempt moves past the timeout, so nobody else sends it meanwhile.
        claimed = db.session.execute(
            update(LogoutDelivery)
            .where(
                LogoutDelivery.id == delivery_id,
                LogoutDelivery.delivered_at.is_(None),
                LogoutDelivery.failed_at.is_(None),
                LogoutDelivery.next_attempt_at <= now,
            )
            .values(
                attempts=LogoutDelivery.attempts + 1,
                next_attempt_at=now + dt.timedelta(seconds=timeout + 60),
            )
        )
        db.session.commit()
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            continue
        counts[_attempt(delivery_id)] += 1
    return counts


def _channels() -> Mapping[str, LogoutChannel]:
    channels: Mapping[str, LogoutChannel] = current_app.extensions["logout_channels"]
    return channels


def _send_logout_token(delivery: LogoutDelivery) -> str | None:
    """POST the logout token (Back-Channel Logout 1.0 §2.5); None if the RP took it."""
    client = db.session.get(Client, delivery.client_id)
    if client is None or client.status != "active" or not client.backchannel_logout_uri:
        return "client no longer takes back-channel logouts"
    timeout = current_app.config["LOGOUT_DELIVERY_TIMEOUT_SECONDS"]
    try:
        response = requests.post(
            client.backchannel_logout_uri,
            data={"logout_token": logout_token(delivery, client)},
            timeout=timeout,
            allow_redirects=False,  # §2.5: the RP answers 200 (or 204); a redirect is not one
            headers={"Cache-Control": "no-store"},
        )
    except requests.RequestException as exc:
        return type(exc).__name__  # never the URL's query or the token
    if not 200 <= response.status_code < 300:
        return f"HTTP {response.status_code}"
    return None


OIDC_CHANNEL = LogoutChannel(
    send=_send_logout_token,
    delivered_event="logout_delivered",
    failed_event="logout_delivery_failed",
    party_key="client_id",
)


def _attempt(delivery_id: int) -> str:
    config = current_app.config
    delivery = db.session.get(LogoutDelivery, delivery_id)
    if delivery is None:
        return "failed"
    channel = _channels().get(delivery.protocol)
    if channel is None:
        error: str | None = f"no channel for {delivery.protocol} logouts"
        channel = OIDC_CHANNEL  # only for the audit event's name
    else:
        error = channel.send(delivery)
    party = {channel.party_key: delivery.client_id}
    now = utcnow()
    if error is None:
        delivery.delivered_at = now
        delivery.last_error = None
        record_event(
            channel.delivered_event,
            actor="system",
            **party,
            delivery_id=delivery.id,
            attempts=delivery.attempts,
        )
        db.session.commit()
        return "delivered"
    delivery.last_error = error[:200]
    outcome = "retrying"
    if delivery.attempts >= config["LOGOUT_DELIVERY_ATTEMPTS"]:
        delivery.failed_at = now
        outcome = "failed"
        record_event(
            channel.failed_event,
            actor="system",
            **party,
            delivery_id=delivery.id,
            attempts=delivery.attempts,
            error=delivery.last_error,
        )
    else:
        wait = config["LOGOUT_RETRY_SECONDS"] * 2 ** (delivery.attempts - 1)
        delivery.next_attempt_at = now + dt.timedelta(seconds=wait)
    log.warning(
        "back-channel %s logout to %s failed (%s), attempt %s: %s",
        delivery.protocol,
        delivery.client_id,
        error,
        delivery.attempts,
        "given up" if outcome == "failed" else "retried later",
    )
    db.session.commit()
    return outcome


def deliver_due_logouts() -> dict[str, int]:
    """Every delivery that is due (``idserver maintenance deliver-logouts``, the serve thread)."""
    return deliver()


def _deliver_after_request(response: Response) -> Response:
    """After the view committed: send this request's logout tokens once, right away."""
    pending = g.pop(PENDING_KEY, None)
    if pending:
        try:
            deliver(pending)
        except Exception:  # the outbox keeps them; the retry sends them
            log.exception("back-channel logout delivery failed; it is retried later")
            db.session.rollback()
    return response


def start_periodic_delivery(app: Flask) -> threading.Thread | None:
    """Retry due deliveries every ``LOGOUT_RETRY_SECONDS`` from a thread (``idserver serve``)."""
    interval = app.config["LOGOUT_RETRY_SECONDS"]
    thread = threading.Thread(
        target=_deliver_periodically, args=(app, interval), name="idserver-logouts", daemon=True
    )
    thread.start()
    return thread


def _deliver_periodically(app: Flask, interval: int) -> None:
    while True:
        time.sleep(interval)
        try:
            with app.app_context():
                deliver()
        except Exception:  # a failed round must not end the worker
            log.exception("back-channel logout retries failed; they run again in %s s", interval)


def init_app(app: Flask, *, channels: Mapping[str, LogoutChannel] | None = None) -> None:
    """Send the outbox after each request; ``channels``: how other protocols' rows are sent."""
    app.extensions["logout_channels"] = {"oidc": OIDC_CHANNEL, **(channels or {})}
    app.after_request(_deliver_after_request)
