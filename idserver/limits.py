"""Rate limits, counted before acting, where every worker sees the same numbers.

Flask-Limiter chooses the storage and names the counters (fixed windows, ``limits`` keys); they
live in Redis when ``IDSERVER_REDIS_URL`` is set and otherwise in the application's own database
(the ``rate_limit_counters`` table, one row per key). A request takes its slot in every window
of its limit *before* it acts, all windows or none in one atomic step (one database transaction
of increment-then-compare upserts, rolled back when a window is full; one Lua script in Redis),
so concurrent requests can never get more than the limit through. A refused request takes no
slot: a 429 changes nothing. Where only some outcomes count, the slot is given back afterwards
when the outcome is not one of them.

When Redis is out of reach the counting goes on in the database table instead, which every
worker shares as well, and Redis is tried again after ``REDIS_RETRY_SECONDS``: limits keep
holding during a Redis outage (a window may count up to twice its limit across the switch), and
no request fails for want of Redis. The database is the last resort: if it is down too, the
request fails with 503 like every other that needs it.

What is counted, and why (OWASP ASVS 5.0 V2.4.1, V6.3.1; RFC 10027 "Rate Limits"):

=====================  =======================  ===================================  ===========
limit                  where                    counts                               key
=====================  =======================  ===================================  ===========
RATE_LIMIT_ACTIVATION  POST /api/v1/enrolments  wrong codes and started enrolments   address
RATE_LIMIT_LOGIN       every new login          login transactions created           address
RATE_LIMIT_APPROVAL    phone and passkey        approved logins                      citizen
                       approvals
RATE_LIMIT_TOKEN       POST /token, /revoke,    failed client authentications        address
                       /introspect, /par        (one budget for the four)
RATE_LIMIT_CLERK_      GET /admin (search)      resident searches                    clerk
SEARCH
=====================  =======================  ===================================  ===========

Only outcomes an attacker could use are counted: wrong guesses, work that creates rows, and
approvals. Counting a citizen's *failed* approvals, or a client's failed authentications per
client, would let anybody lock that citizen or relying party out.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from typing import Protocol
from typing import cast

from flask import Flask
from flask import Response
from flask import current_app
from flask import make_response
from flask import request
from flask_limiter import Limiter
from limits import parse_many
from limits.storage import RedisClusterStorage
from limits.storage import RedisStorage
from limits.storage import Storage
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import bindparam
from sqlalchemy import case
from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.sql.expression import Executable

from .config import ConfigError
from .db import Base
from .db import UTCDateTime
from .errors import RateLimited
from .errors import error_response
from .logs import current_route
from .metrics import RATE_LIMIT_REFUSALS
from .proxy import client_address

log = logging.getLogger(__name__)

__all__ = [
    "LIMITS",
    "DatabaseStorage",
    "RateLimitCounter",
    "Reservation",
    "WindowFull",
    "consume",
    "init_app",
    "reserve",
]

LIMITS = (
    "RATE_LIMIT_ACTIVATION",
    "RATE_LIMIT_LOGIN",
    "RATE_LIMIT_APPROVAL",
    "RATE_LIMIT_TOKEN",
    "RATE_LIMIT_CLERK_SEARCH",  # per clerk, counted by idserver.admin.views through consume()
)
DATABASE_SCHEME = "idserver+database"
KEY_PREFIX = "idserver"
PURGE_EVERY = 1000  # increments between two sweeps of expired counters
REDIS_RETRY_SECONDS = 5.0  # after Redis failed, count in the database this long before retrying
REDIS_TIMEOUT_SECONDS = 2  # connect and read timeout towards Redis


class CountersUnavailable(Exception):
    """The counters' storage cannot be reached; the caller counts elsewhere."""


class WindowFull(RateLimited):
    """A window of the limit is full; ``retry_after`` is that window's length in seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = retry_after


# A window to take a slot in: (counter key, limit, window length in seconds).
Window = tuple[str, int, int]
# A slot taken: (counter key, which window it was taken in).
Slot = tuple[str, Any]


class Counters(Protocol):
    def acquire(self, windows: Sequence[Window]) -> list[Slot]: ...

    def release(self, slots: Sequence[Slot]) -> None: ...


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


@dataclass(frozen=True)
class _CounterStatements:
    """The statements on the login path, built once per dialect (issue 16): building one costs
    more than running it."""

    # Bound names differ from the columns': an UPDATE reserves those for its SET clause.
    hit: Executable  # :amount more in :window_key's window, or a new one ending :window_end
    purge: Executable  # every window ended by :now
    drop_last: Executable  # :window_key's window ending :window_end, if it holds one slot
    give_back: Executable  # one slot less in :window_key's window ending :window_end


@functools.cache
def _statements(dialect_name: str) -> _CounterStatements:
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    table = _table()
    key = bindparam("window_key", type_=table.c.key.type)
    amount = bindparam("amount", type_=table.c.count.type)
    expires_at = bindparam("window_end", type_=table.c.expires_at.type)
    fresh = dialect.insert(table).values(key=key, count=amount, expires_at=expires_at)
    over = table.c.expires_at <= bindparam("now", type_=table.c.expires_at.type)
    hit = fresh.on_conflict_do_update(
        index_elements=[table.c.key],
        set_={
            "count": case((over, fresh.excluded.count), else_=table.c.count + amount),
            "expires_at": case((over, fresh.excluded.expires_at), else_=table.c.expires_at),
        },
    ).returning(table.c.count, table.c.expires_at)
    same = (table.c.key == key) & (table.c.expires_at == expires_at)
    return _CounterStatements(
        hit=hit,
        purge=delete(table).where(
            table.c.expires_at <= bindparam("now", type_=table.c.expires_at.type)
        ),
        drop_last=delete(table).where(same, table.c.count <= 1),
        give_back=update(table).where(same, table.c.count > 1).values(count=table.c.count - 1),
    )


_COUNTER = select(_table().c.count, _table().c.expires_at).where(_table().c.key == bindparam("key"))


class DatabaseStorage(Storage):
    """A ``limits`` storage on the application's database, for the fixed-window strategy.

    ``incr`` is one ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` (PostgreSQL, SQLite ≥ 3.35),
    so concurrent workers never lose a hit. ``acquire`` runs those upserts for every window of
    a limit in one transaction and rolls it back when one comes out over its limit: the upsert
    locks the row (PostgreSQL) or the database (SQLite) until then, so the count each request
    compares is the one it made. Both run on their own connection and transaction, independent
    of the request's session.
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

    def _hit(self, connection: Connection, key: str, expiry: int, amount: int) -> tuple[int, Any]:
        """Add ``amount`` in ``key``'s current window (a new one if it ran out); its count, end."""
        now = time.time()
        statements = _statements(connection.dialect.name)
        count, expires_at = connection.execute(
            statements.hit,
            {"window_key": key, "amount": amount, "now": _at(now), "window_end": _at(now + expiry)},
        ).one()
        self._increments += 1
        if self._increments % PURGE_EVERY == 0:
            connection.execute(statements.purge, {"now": _at(now)})
        return int(count), expires_at

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        with self._engine().begin() as connection:
            return self._hit(connection, key, expiry, amount)[0]

    def acquire(self, windows: Sequence[Window]) -> list[Slot]:
        """One slot in every window, or none (``WindowFull``); a slot is (key, window end)."""
        slots: list[Slot] = []
        with self._engine().begin() as connection:
            for key, limit, expiry in windows:
                count, expires_at = self._hit(connection, key, expiry, 1)
                if count > limit:
                    raise WindowFull(expiry)  # leaving the block rolls every window back
                slots.append((key, expires_at))
        return slots

    def release(self, slots: Sequence[Slot]) -> None:
        """Give slots back, to the windows they were taken in only; an emptied counter goes."""
        with self._engine().begin() as connection:
            statements = _statements(connection.dialect.name)
            for key, expires_at in slots:
                slot = {"window_key": key, "window_end": expires_at}
                if connection.execute(statements.drop_last, slot).rowcount:
                    continue  # the counter held only this slot (the usual case)
                connection.execute(statements.give_back, slot)

    def _row(self, key: str) -> tuple[int, float] | None:
        with self._engine().connect() as connection:
            row = connection.execute(_COUNTER, {"key": key}).first()
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


# Both scripts see every window of one limit at once; Redis runs a script without interleaving.
# A slot remembers its key's time to live when taken: a key of a later window lives longer.
_REDIS_ACQUIRE = """
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('get', key) or '0') >= tonumber(ARGV[2 * i - 1]) then
    return -i
  end
end
local ttls = {}
for i, key in ipairs(KEYS) do
  if redis.call('incr', key) == 1 then
    redis.call('expire', key, ARGV[2 * i])
  end
  ttls[i] = redis.call('pttl', key)
end
return ttls
"""
_REDIS_RELEASE = """
for i, key in ipairs(KEYS) do
  local ttl = redis.call('pttl', key)
  if ttl > 0 and ttl <= tonumber(ARGV[i]) and redis.call('decr', key) <= 0 then
    redis.call('del', key)
  end
end
return 0
"""


class RedisCounters:
    """``acquire``/``release`` on the counters of ``limits``' Redis storage (same keys).

    A Redis failure raises ``CountersUnavailable`` and is remembered for
    ``REDIS_RETRY_SECONDS`` (in this process), so requests in the meantime do not each wait for
    a connection that is not coming.
    """

    def __init__(self, storage: RedisStorage) -> None:
        from redis import RedisError

        self._storage = storage
        self._errors = RedisError
        self._down_until = 0.0
        connection = storage.get_connection()
        self._acquire = connection.register_script(_REDIS_ACQUIRE.encode())
        self._release = connection.register_script(_REDIS_RELEASE.encode())

    def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        if time.monotonic() < self._down_until:
            raise CountersUnavailable("Redis failed a moment ago")
        try:
            return script(keys, args)
        except self._errors as exc:
            if self._down_until == 0.0:
                log.warning("Redis unreachable; rate limits count in the database: %s", exc)
            self._down_until = time.monotonic() + REDIS_RETRY_SECONDS
            raise CountersUnavailable(str(exc)) from exc

    def acquire(self, windows: Sequence[Window]) -> list[Slot]:
        keys = [self._storage.prefixed_key(key) for key, _, _ in windows]
        limits = [n for _, limit, expiry in windows for n in (limit, expiry)]
        answer = self._call(self._acquire, keys, limits)
        if self._down_until != 0.0:
            log.info("Redis is back; rate limits count there again")
            self._down_until = 0.0
        if isinstance(answer, int):
            raise WindowFull(windows[-answer - 1][2])
        return list(zip(keys, (int(ttl) for ttl in answer), strict=True))

    def release(self, slots: Sequence[Slot]) -> None:
        self._call(self._release, [key for key, _ in slots], [ttl for _, ttl in slots])


@dataclass(frozen=True)
class Reservation:
    """A slot in every window of one limit, taken before acting."""

    counters: Counters
    slots: tuple[Slot, ...]

    def release(self) -> None:
        """Give the slots back: the outcome was not one that counts.

        If their storage has gone meanwhile they stay taken: counting too much is the safe side.
        """
        try:
            self.counters.release(self.slots)
        except CountersUnavailable:
            log.info("could not give back %d rate-limit slots", len(self.slots))


def reserve(setting: str, key: str, *, scope: str) -> Reservation:
    """Take a slot for ``key`` in every window of ``setting``, or none and refuse (429)."""
    windows = [
        (item.key_for(KEY_PREFIX, key, scope), item.amount, item.get_expiry())
        for item in parse_many(current_app.config[setting])
    ]
    counters: Counters = current_app.extensions["idserver.counters"]
    try:
        try:
            return Reservation(counters, tuple(counters.acquire(windows)))
        except CountersUnavailable:
            fallback: Counters = current_app.extensions["idserver.counters.fallback"]
            return Reservation(fallback, tuple(fallback.acquire(windows)))
    except WindowFull:
        RATE_LIMIT_REFUSALS.labels(setting.lower()).inc()
        raise


def consume(setting: str, key: str, *, scope: str) -> None:
    """Count one event against ``setting`` for ``key`` before it happens; 429 if a window is full.

    For limits on an action rather than on an endpoint (a login can start from several pages),
    where every outcome counts. Nothing is counted when the answer is no.
    """
    reserve(setting, key, scope=scope)


# -- who is counted --------------------------------------------------------------------------
def _citizen_of_presented_credential(owner: Callable[[bytes], str | None]) -> str | None:
    """The citizen whose device answered (``owner`` of its credential id, from crosslogin);
    None (nothing to count) when none is enrolled."""
    from webauthn.helpers import base64url_to_bytes

    from .db import db

    body = request.get_json(silent=True)
    credential = body.get("credential") if isinstance(body, dict) else None
    raw_id = credential.get("rawId") if isinstance(credential, dict) else None
    if not isinstance(raw_id, str) or not 0 < len(raw_id) <= 1400:
        return None
    try:
        citizen_id = owner(base64url_to_bytes(raw_id))
    except (ValueError, TypeError):
        return None
    db.session.commit()  # end the read: the counter takes a connection of its own
    return citizen_id


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


def _counted(
    view: Callable[..., Any],
    *,
    setting: str,
    scope: str,
    key: Callable[[], str | None],
    counts: Callable[[Response], bool],
) -> Callable[..., Any]:
    """``view``, taking its slot before it runs and giving it back unless ``counts`` its answer."""

    @functools.wraps(view)
    def counted(*args: Any, **kwargs: Any) -> Any:
        who = key()
        if who is None:
            return view(*args, **kwargs)
        reservation = reserve(setting, who, scope=scope)
        try:
            response = current_app.make_response(view(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 -- answered by the error handlers, then judged
            response = current_app.make_response(current_app.handle_user_exception(exc))
        if not counts(response):
            reservation.release()
        return response

    return counted


# -- wiring -----------------------------------------------------------------------------------
def _without_request_hooks(app: Flask, limiter: Limiter) -> None:
    """Take Flask-Limiter's own before/after/teardown hooks off ``app``.

    They look for limits declared through Flask-Limiter on every request; there are none (each
    limit is taken by ``reserve`` in the views it guards), so they only cost time: about a
    quarter of the CPU of a request that does nothing (docs/sizing.md).
    """

    def _limiters(hook: Callable[..., Any]) -> bool:
        bound = getattr(hook, "__self__", None)
        return bound is limiter or (isinstance(hook, functools.partial) and limiter in hook.args)

    registries = cast(
        "tuple[dict[str | None, list[Any]], ...]",
        (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs),
    )
    for hooks in registries:
        funcs = hooks.get(None, [])
        funcs[:] = [hook for hook in funcs if not _limiters(hook)]


def init_app(app: Flask, *, credential_owner: Callable[[bytes], str | None]) -> None:
    """Check the limit settings, choose the storage, and put the limits on their endpoints.

    ``credential_owner`` (from crosslogin, which builds on this module) names the citizen a
    presented credential id belongs to: approvals are counted per citizen. It reads the
    device once for the request, and the approval verifies with what it read.
    """
    for name in LIMITS:
        try:
            parse_many(app.config[name])
        except ValueError as exc:
            raise ConfigError(f"IDSERVER_{name}: {exc}") from exc
    redis_url = app.config.get("REDIS_URL")
    timeouts: dict[str, str | int] = {
        "socket_timeout": REDIS_TIMEOUT_SECONDS,
        "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
    }
    limiter = Limiter(
        key_func=client_address,
        app=app,
        storage_uri=redis_url or f"{DATABASE_SCHEME}://",
        storage_options=timeouts if redis_url else {},
        strategy="fixed-window",
        key_prefix=KEY_PREFIX,
        headers_enabled=False,
    )
    _without_request_hooks(app, limiter)
    app.extensions["idserver.limiter"] = limiter
    storage = limiter.storage
    if isinstance(storage, DatabaseStorage):
        app.extensions["idserver.counters"] = storage
    elif isinstance(storage, RedisStorage) and not isinstance(storage, RedisClusterStorage):
        app.extensions["idserver.counters"] = RedisCounters(storage)
        app.extensions["idserver.counters.fallback"] = DatabaseStorage()
    else:
        raise ConfigError("IDSERVER_REDIS_URL: counters need one Redis server (redis://…)")

    activation = functools.partial(
        _counted,
        setting="RATE_LIMIT_ACTIVATION",
        scope="activation",
        key=client_address,
        counts=_activation_attempt,
    )
    approvals = functools.partial(
        _counted,
        setting="RATE_LIMIT_APPROVAL",
        scope="approval",
        key=functools.partial(_citizen_of_presented_credential, credential_owner),
        counts=_approved,
    )
    token = functools.partial(
        _counted,
        setting="RATE_LIMIT_TOKEN",
        scope="token",
        key=client_address,
        counts=_client_authentication_failed,
    )
    for endpoint, limit in (
        ("api.begin_enrolment", activation),
        ("api.approve", approvals),
        ("crosslogin.passkey_finish", approvals),
        ("oidc.token", token),
        ("oidc.revoke", token),
        ("oidc.introspect", token),
        ("oidc.pushed_authorization_request", token),
    ):
        app.view_functions[endpoint] = limit(app.view_functions[endpoint])

    @app.errorhandler(WindowFull)
    def _too_many(exc: WindowFull) -> Any:
        log.info("rate limit reached on %s %s", request.method, current_route())
        response = make_response(error_response(exc.error, exc.description, exc.status))
        response.headers["Cache-Control"] = "no-store"
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
