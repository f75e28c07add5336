"""Rate limits, counted where every worker sees the same numbers.

Flask-Limiter does the bookkeeping with fixed windows; the counters live in Redis when
``IDSERVER_REDIS_URL`` is set and otherwise in the application's own database (the
``rate_limit_counters`` table, one row per key, bumped by one atomic upsert). A refused request
only *reads* its counters, so a 429 changes nothing anywhere.

What is counted, and why (OWASP ASVS 5.0 V2.4.1, V6.3.1; RFC 10027 "Rate Limits"):

=====================  =======================  ===================================  ===========
limit                  where                    counts                               key
=====================  =======================  ===================================  ===========
RATE_LIMIT_ACTIVATION  POST /api/v1/enrolments  wrong codes and started enrolments   address
RATE_LIMIT_LOGIN       every new login          login transactions created           address
RATE_LIMIT_APPROVAL    phone and passkey        approved logins                      citizen
                       approvals
RATE_LIMIT_TOKEN       POST /token              failed client authentications        address
RATE_LIMIT_CLERK_      GET /admin (search)      resident searches                    clerk
SEARCH
=====================  =======================  ===================================  ===========

Only outcomes an attacker could use are counted: wrong guesses, work that creates rows, and
approvals. Counting a citizen's *failed* approvals, or a client's failed authentications per
client, would let anybody lock that citizen or relying party out.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any
from typing import cast

from flask import Flask
from flask import Response
from flask import current_app
from flask import jsonify
from flask import make_response
from flask import request
from flask_limiter import Limiter
from flask_limiter import RateLimitExceeded
from limits import parse_many
from limits.storage import Storage
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import case
from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from .config import ConfigError
from .db import Base
from .db import UTCDateTime
from .errors import RateLimited
from .errors import error_response
from .logs import current_route
from .web import client_address

log = logging.getLogger(__name__)

__all__ = ["LIMITS", "DatabaseStorage", "RateLimitCounter", "consume", "init_app"]

LIMITS = (
    "RATE_LIMIT_ACTIVATION",
    "RATE_LIMIT_LOGIN",
    "RATE_LIMIT_APPROVAL",
    "RATE_LIMIT_TOKEN",
    "RATE_LIMIT_CLERK_SEARCH",  # per clerk, counted by idserver.admin.views through consume()
)
DATABASE_SCHEME = "idserver+database"
PURGE_EVERY = 1000  # increments between two sweeps of expired counters
JSON_ONLY_ENDPOINTS = ("oidc.token",)  # OAuth clients expect JSON errors (RFC 6749 §5.2)


class RateLimitCounter(Base):
    """One fixed-window counter: ``count`` hits until ``expires_at``, then it starts again."""

    __tablename__ = "rate_limit_counters"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    count: Mapped[int]
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


def _table() -> Table:
    return cast(Table, RateLimitCounter.__table__)


def _at(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


class DatabaseStorage(Storage):
    """A ``limits`` storage on the application's database, for the fixed-window strategy.

    ``incr`` is one ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` (PostgreSQL, SQLite ≥ 3.35),
    so concurrent workers never lose a hit. It runs on its own connection and transaction,
    independent of the request's session.
    """

    STORAGE_SCHEME = [DATABASE_SCHEME]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: Any):
        super().__init__(uri, wrap_exceptions=wrap_exceptions)
        self._increments = 0

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return SQLAlchemyError

    @staticmethod
    def _engine() -> Engine:
        return current_app.extensions["idserver.db"][0]  # type: ignore[no-any-return]

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        engine = self._engine()
        now = time.time()
        dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        table = _table()
        fresh = dialect.insert(table).values(key=key, count=amount, expires_at=_at(now + expiry))
        over = table.c.expires_at <= _at(now)
        statement = fresh.on_conflict_do_update(
            index_elements=[table.c.key],
            set_={
                "count": case((over, fresh.excluded.count), else_=table.c.count + amount),
                "expires_at": case((over, fresh.excluded.expires_at), else_=table.c.expires_at),
            },
        ).returning(table.c.count)
        with engine.begin() as connection:
            count = int(connection.execute(statement).scalar_one())
            self._increments += 1
            if self._increments % PURGE_EVERY == 0:
                connection.execute(delete(table).where(table.c.expires_at <= _at(now)))
        return count

    def _row(self, key: str) -> tuple[int, float] | None:
        table = _table()
        with self._engine().connect() as connection:
            row = connection.execute(
                select(table.c.count, table.c.expires_at).where(table.c.key == key)
            ).first()
        if row is None:
            return None
        count, expires_at = row
        if expires_at.timestamp() <= time.time():
            return None
        return int(count), expires_at.timestamp()

    def get(self, key: str) -> int:
        row = self._row(key)
        return row[0] if row else 0

    def get_expiry(self, key: str) -> float:
        row = self._row(key)
        return row[1] if row else time.time()

    def check(self) -> bool:
        try:
            with self._engine().connect() as connection:
                connection.execute(select(1))
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        with self._engine().begin() as connection:
            return connection.execute(delete(_table())).rowcount

    def clear(self, key: str) -> None:
        table = _table()
        with self._engine().begin() as connection:
            connection.execute(delete(table).where(table.c.key == key))


# -- who is counted --------------------------------------------------------------------------
def _citizen_of_presented_credential() -> str:
    """The citizen whose device answered; "-" (never deducted) when none is enrolled."""
    from webauthn.helpers import base64url_to_bytes

    from .passkeys.service import find_credential

    body = request.get_json(silent=True)
    credential = body.get("credential") if isinstance(body, dict) else None
    raw_id = credential.get("rawId") if isinstance(credential, dict) else None
    if not isinstance(raw_id, str) or not 0 < len(raw_id) <= 1400:
        return "-"
    try:
        stored = find_credential(base64url_to_bytes(raw_id))
    except (ValueError, TypeError):
        return "-"
    return stored.citizen_id if stored is not None else "-"


def _error_code(response: Response) -> str | None:
    body = response.get_json(silent=True) if response.is_json else None
    return body.get("error") if isinstance(body, dict) else None


def _activation_attempt(response: Response) -> bool:
    """A guessed code (right or wrong); not refusals that need the right code anyway."""
    return response.status_code == 200 or _error_code(response) == "invalid_activation_code"


def _approved(response: Response) -> bool:
    return response.status_code == 200


def _client_authentication_failed(response: Response) -> bool:
    return _error_code(response) == "invalid_client"


def _setting(name: str) -> Callable[[], str]:
    return lambda: current_app.config[name]


# -- wiring -----------------------------------------------------------------------------------
def init_app(app: Flask) -> None:
    """Check the limit settings, choose the storage, and put the limits on their endpoints."""
    for name in LIMITS:
        try:
            parse_many(app.config[name])
        except ValueError as exc:
            raise ConfigError(f"IDSERVER_{name}: {exc}") from exc
    limiter = Limiter(
        key_func=client_address,
        app=app,
        storage_uri=app.config.get("REDIS_URL") or f"{DATABASE_SCHEME}://",
        strategy="fixed-window",
        key_prefix="idserver",
        headers_enabled=False,
    )
    app.extensions["idserver.limiter"] = limiter
    activation = limiter.limit(
        _setting("RATE_LIMIT_ACTIVATION"), scope="activation", deduct_when=_activation_attempt
    )
    approvals = limiter.shared_limit(
        _setting("RATE_LIMIT_APPROVAL"),
        scope="approval",
        key_func=_citizen_of_presented_credential,
        deduct_when=_approved,
    )
    token = limiter.limit(
        _setting("RATE_LIMIT_TOKEN"), scope="token", deduct_when=_client_authentication_failed
    )
    for endpoint, limit in (
        ("api.begin_enrolment", activation),
        ("api.approve", approvals),
        ("crosslogin.passkey_finish", approvals),
        ("oidc.token", token),
    ):
        app.view_functions[endpoint] = limit(app.view_functions[endpoint])  # type: ignore[assignment]

    @app.errorhandler(RateLimitExceeded)
    def _too_many(exc: RateLimitExceeded) -> Any:
        log.info("rate limit %s reached on %s %s", exc.limit.limit, request.method, current_route())
        if request.endpoint in JSON_ONLY_ENDPOINTS:
            response = jsonify(
                error=RateLimited.error, error_description=str(RateLimited.description)
            )
            response.status_code = 429
        else:
            response = make_response(
                error_response(RateLimited.error, RateLimited.description, 429)
            )
        response.headers["Cache-Control"] = "no-store"
        response.headers["Retry-After"] = str(exc.limit.limit.get_expiry())
        return response


def consume(setting: str, key: str, *, scope: str) -> None:
    """Count one event against ``setting`` for ``key``; refuse (429) if a window is full.

    For limits on an action rather than on an endpoint (a login can start from several pages).
    Nothing is counted when the answer is no.
    """
    limiter: Limiter = current_app.extensions["idserver.limiter"]
    items = parse_many(current_app.config[setting])
    identifiers = ("idserver", key, scope)
    if not all(limiter.limiter.test(item, *identifiers) for item in items):
        raise RateLimited()
    for item in items:
        limiter.limiter.hit(item, *identifiers)
