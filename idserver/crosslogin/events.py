"""How a waiting desktop learns that its login changed, cheaply and across processes.

A desktop's long poll calls ``watch_for_change``; every transition the desktop can see calls
``notify``. A waiter costs one blocked thread and no database work while it waits; the poll's
answer is streamed, with a blank every keep-alive period, so it can be held until the login
changes::

    notify(login_id) ──▶ waiters in this process wake at once
          │
          └──publish──▶ Redis PUBLISH      (IDSERVER_REDIS_URL set)
                        pg_notify()        (PostgreSQL, psycopg 3)
                        nothing            (SQLite: the watcher sees the commit itself)

    one listener thread per process, only while someone waits:
        Redis SUBSCRIBE / PostgreSQL LISTEN ──▶ wake the waiters of that login
        SQLite: every 50 ms ``PRAGMA data_version`` (changes when another connection
        commits); only then one query reads the versions of all waited-on logins at once

A waiter registers before it reads the version, so a change is either seen by that read or
announced afterwards: nothing falls in between. Woken, it re-reads the version; a wake for a
login it does not wait on costs nothing. When the listener cannot reach its backend, waiters
fall back to reading every ``FALLBACK_POLL_SECONDS`` until it is back.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from collections.abc import Generator
from typing import Any
from typing import Protocol

from flask import Flask
from flask import current_app
from sqlalchemy import create_engine
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from ..metrics import WAITING_DESKTOPS
from .models import LoginTransaction

log = logging.getLogger(__name__)

__all__ = ["CHANNEL", "notify", "watch_for_change"]

CHANNEL = "idserver_login_changed"
SQLITE_POLL_SECONDS = 0.05
WATCHER_POLL_SECONDS = 0.1
FALLBACK_POLL_SECONDS = 0.5
LISTENER_IDLE_SECONDS = 30.0
READY_TIMEOUT_SECONDS = 2.0
RECONNECT_SECONDS = (0.5, 1.0, 2.0, 5.0)
IN_LIST_CHUNK = 500
EXTENSION = "idserver.events"

_hubs_lock = threading.Lock()


class _Waiter:
    __slots__ = ("event", "login_id", "seen")

    def __init__(self, login_id: str, seen: int) -> None:
        self.login_id = login_id
        self.seen = seen
        self.event = threading.Event()


class _Backend(Protocol):
    name: str

    def publish(self, login_id: str) -> None: ...

    def listen(self, hub: _Hub) -> None:
        """``hub.announce_ready()``, then wake waiters until ``hub.should_stop()``.

        Raises when the backend fails; the hub then retries after a pause.
        """


class _Hub:
    """The waiters of one application in this process, and the thread listening for them."""

    def __init__(self, backend: _Backend | None) -> None:
        self.backend = backend
        self.pid = os.getpid()
        self.ready = threading.Event()  # the listener hears every change
        self.settled = threading.Event()  # the listener is ready, or has failed to get ready
        self._lock = threading.Lock()
        self._waiters: dict[str, set[_Waiter]] = {}
        self._thread: threading.Thread | None = None
        self._idle_since = time.monotonic()

    # -- waiters -------------------------------------------------------------------------
    def add(self, waiter: _Waiter) -> None:
        with self._lock:
            self._waiters.setdefault(waiter.login_id, set()).add(waiter)

    def remove(self, waiter: _Waiter) -> None:
        with self._lock:
            group = self._waiters.get(waiter.login_id)
            if group is not None:
                group.discard(waiter)
                if not group:
                    del self._waiters[waiter.login_id]
            if not self._waiters:
                self._idle_since = time.monotonic()

    def wake(self, login_id: str) -> None:
        with self._lock:
            group = list(self._waiters.get(login_id, ()))
        for waiter in group:
            waiter.event.set()

    def wake_all(self) -> None:
        with self._lock:
            everyone = [w for group in self._waiters.values() for w in group]
        for waiter in everyone:
            waiter.event.set()

    def waiting(self) -> dict[str, int]:
        """Each waited-on login and the oldest version a waiter has seen of it."""
        with self._lock:
            return {
                login_id: min(w.seen for w in group) for login_id, group in self._waiters.items()
            }

    # -- the listener thread ---------------------------------------------------------------
    def listening(self) -> bool:
        """Start the listener if it is not running; True once it hears every change."""
        if self.backend is None:
            return True  # one process only (SQLite in memory): notify() reaches every waiter
        if self.ready.is_set():
            return True
        with self._lock:
            if self._thread is None:
                self.settled.clear()
                self._thread = threading.Thread(
                    target=self._run, name=f"idserver-events-{self.backend.name}", daemon=True
                )
                self._thread.start()
        # While the backend is down, settled stays set: waiters poll instead of waiting here.
        self.settled.wait(READY_TIMEOUT_SECONDS)
        return self.ready.is_set()

    def announce_ready(self) -> None:
        """The backend hears every change from now on; waiters read once more to be sure."""
        self.ready.set()
        self.settled.set()
        self.wake_all()

    def should_stop(self) -> bool:
        """True when nobody has waited for a while; the thread then ends (under the lock)."""
        with self._lock:
            if self._waiters or time.monotonic() - self._idle_since < LISTENER_IDLE_SECONDS:
                return False
            self._thread = None
            self.ready.clear()
            return True

    def _run(self) -> None:
        assert self.backend is not None
        failures = 0
        while True:
            try:
                self.backend.listen(self)
                return  # should_stop() said so and has already cleared self._thread
            except Exception:  # noqa: BLE001 -- any failure: fall back, then reconnect
                self.ready.clear()
                self.settled.set()
                self.wake_all()  # a change may have been missed: everyone reads again
                delay = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
                failures += 1
                log.warning(
                    "%s listener failed; waiters poll until it is back (retry in %s s)",
                    self.backend.name,
                    delay,
                    exc_info=failures == 1,
                )
                time.sleep(delay)
                if self.should_stop():
                    return


# -- backends ---------------------------------------------------------------------------------
class _RedisBackend:
    """Redis pub/sub: PUBLISH on change, one SUBSCRIBE connection per process."""

    name = "redis"

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis
        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    def publish(self, login_id: str) -> None:
        self.client.publish(CHANNEL, login_id)

    def listen(self, hub: _Hub) -> None:
        client = self._redis.Redis.from_url(self.url, socket_connect_timeout=5)
        pubsub = client.pubsub()
        try:
            pubsub.subscribe(CHANNEL)
            deadline = time.monotonic() + READY_TIMEOUT_SECONDS
            while True:  # ready only once Redis confirms the subscription
                confirmed = pubsub.get_message(timeout=0.1)
                if confirmed is not None and confirmed["type"] == "subscribe":
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("Redis did not confirm the subscription")
            hub.announce_ready()
            while not hub.should_stop():
                message = pubsub.get_message(timeout=1.0)
                if message is not None and message["type"] == "message":
                    hub.wake(message["data"].decode())
        finally:
            pubsub.close()
            client.close()


class _PostgresBackend:
    """PostgreSQL LISTEN/NOTIFY over psycopg 3; ``pg_notify`` after the change is committed."""

    name = "postgresql"

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, poolclass=NullPool)
        self._lock = threading.Lock()
        self._publisher: Any = None

    def _connect(self) -> Any:
        # The pool proxy is kept with the connection: dropping it would close the connection.
        proxy = self.engine.raw_connection()
        connection = proxy.driver_connection
        assert connection is not None
        connection.autocommit = True
        return proxy, connection

    def publish(self, login_id: str) -> None:
        with self._lock:
            for attempt in (1, 2):
                if self._publisher is None:
                    self._publisher = self._connect()
                try:
                    self._publisher[1].execute("SELECT pg_notify(%s, %s)", (CHANNEL, login_id))
                    return
                except Exception:
                    self._publisher[0].invalidate()
                    self._publisher = None
                    if attempt == 2:
                        raise

    def listen(self, hub: _Hub) -> None:
        proxy, connection = self._connect()
        try:
            connection.execute(f"LISTEN {CHANNEL}")
            hub.announce_ready()
            while not hub.should_stop():
                for notice in connection.notifies(timeout=1.0):
                    hub.wake(notice.payload)
        finally:
            proxy.invalidate()


class _SQLiteWatcher:
    """SQLite has no notifications; one thread per process watches for other writers."""

    name = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path

    def publish(self, login_id: str) -> None:
        """Nothing to send: other processes' watchers see the commit."""

    def listen(self, hub: _Hub) -> None:
        connection = sqlite3.connect(
            self.path, timeout=10, isolation_level=None, check_same_thread=False
        )
        try:
            connection.execute("PRAGMA query_only=ON")
            last = _data_version(connection)
            hub.announce_ready()
            while not hub.should_stop():
                time.sleep(SQLITE_POLL_SECONDS)
                current = _data_version(connection)
                if current == last:
                    continue
                last = current
                waiting = hub.waiting()
                if waiting:
                    _wake_changed(hub, waiting, _sqlite_versions(connection, list(waiting)))
        finally:
            connection.close()


def _data_version(connection: sqlite3.Connection) -> int:
    """Changes whenever another connection commits to the database (any process)."""
    return connection.execute("PRAGMA data_version").fetchone()[0]


def _sqlite_versions(connection: sqlite3.Connection, login_ids: list[str]) -> dict[str, int]:
    versions: dict[str, int] = {}
    table = LoginTransaction.__tablename__
    for start in range(0, len(login_ids), IN_LIST_CHUNK):
        chunk = login_ids[start : start + IN_LIST_CHUNK]
        marks = ",".join("?" * len(chunk))
        rows = connection.execute(
            f"SELECT id, version FROM {table} WHERE id IN ({marks})",  # noqa: S608  # nosec B608
            chunk,
        )
        versions.update(rows.fetchall())
    return versions


class _PollingWatcher:
    """Any other database: one thread reads the versions of all waited-on logins at once."""

    name = "polling"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def publish(self, login_id: str) -> None:
        """Nothing to send: the watchers read the database."""

    def listen(self, hub: _Hub) -> None:
        hub.announce_ready()
        while not hub.should_stop():
            time.sleep(WATCHER_POLL_SECONDS)
            waiting = hub.waiting()
            if not waiting:
                continue
            ids = list(waiting)
            versions: dict[str, int] = {}
            with self.engine.connect() as connection:
                for start in range(0, len(ids), IN_LIST_CHUNK):
                    query = select(LoginTransaction.id, LoginTransaction.version).where(
                        LoginTransaction.id.in_(ids[start : start + IN_LIST_CHUNK])
                    )
                    versions.update({row[0]: row[1] for row in connection.execute(query)})
            _wake_changed(hub, waiting, versions)


def _wake_changed(hub: _Hub, waiting: dict[str, int], versions: dict[str, int]) -> None:
    for login_id, seen in waiting.items():
        if versions.get(login_id, -1) != seen:
            hub.wake(login_id)


def _choose_backend(app: Flask) -> _Backend | None:
    redis_url = app.config.get("REDIS_URL")
    if redis_url:
        return _RedisBackend(redis_url)
    url = make_url(app.config["DATABASE_URL"])
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:" or url.query.get("mode") == "memory":
            return None
        return _SQLiteWatcher(url.database)
    if url.get_backend_name() == "postgresql" and url.get_driver_name() == "psycopg":
        return _PostgresBackend(app.config["DATABASE_URL"])
    engine, _session = app.extensions["idserver.db"]
    return _PollingWatcher(engine)


def _hub() -> _Hub:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    hub: _Hub | None = app.extensions.get(EXTENSION)
    if hub is None or hub.pid != os.getpid():
        with _hubs_lock:
            hub = app.extensions.get(EXTENSION)
            if hub is None or hub.pid != os.getpid():
                hub = _Hub(_choose_backend(app))
                app.extensions[EXTENSION] = hub
    return hub


# -- the public functions ---------------------------------------------------------------------
def notify(login_id: str) -> None:
    """Tell every waiter of ``login_id``, in every process, to read its transaction again.

    Call it after the change is committed. A failure to publish is logged, not raised: the
    change is stored, and waiters elsewhere see it when their long poll ends.
    """
    hub = _hub()
    hub.wake(login_id)
    if hub.backend is None:
        return
    try:
        hub.backend.publish(login_id)
    except Exception:  # noqa: BLE001 -- see the docstring
        log.warning("could not publish a change of login %s", login_id, exc_info=True)


def watch_for_change(
    login_id: str,
    read_version: Callable[[], int],
    *,
    seen: int,
    timeout: float,
    heartbeat_seconds: float | None = None,
) -> Generator[int | None, None, None]:
    """Wait until ``read_version()`` differs from ``seen`` or ``timeout`` passes, as a generator
    for a response that is sent while it waits. ``read_version`` should not keep a database
    connection checked out: the caller is about to sleep.

    Yields ``None`` every ``heartbeat_seconds`` while nothing has changed (the caller sends a
    keep-alive), then the version last read, once. Closing it early unregisters the waiter.
    """
    hub = _hub()
    waiter = _Waiter(login_id, seen)
    hub.add(waiter)
    WAITING_DESKTOPS.inc()
    try:
        now = time.monotonic()
        deadline = now + timeout
        beat_at = deadline if heartbeat_seconds is None else now + heartbeat_seconds
        listening = hub.listening()
        version = read_version()
        while version == seen:
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= beat_at:
                yield None
                beat_at = time.monotonic() + (heartbeat_seconds or timeout)
                continue
            pause = min(deadline, beat_at) - now
            woken = waiter.event.wait(pause if listening else min(pause, FALLBACK_POLL_SECONDS))
            waiter.event.clear()
            if not woken and listening:
                continue  # the listener heard nothing for this login: it has not changed
            version = read_version()
            listening = hub.ready.is_set() or hub.backend is None
        yield version
    finally:
        WAITING_DESKTOPS.dec()
        hub.remove(waiter)
