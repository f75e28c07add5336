"""Faults: a worker killed mid-request, PostgreSQL restarted under load, Redis stopped.

Each test runs the production server (``idserver serve``: gunicorn, threaded workers) against
a real PostgreSQL and drives whole logins over HTTP with the soft phone, as in
tests/app/test_served_end_to_end.py. Only 127.0.0.1 is ever used. The shared PostgreSQL is never
restarted: the restart test starts a private one (``initdb`` as the ``postgres`` user), and the
Redis test a private ``redis-server``. Every process started here is killed in a ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import psycopg
import pytest
import requests
from harness import Phone
from harness import enrol_resident
from harness import postgres_schema
from harness import register_relying_party
from joserfc import jwt
from joserfc.jwk import KeySet
from served import free_port
from served import served_idserver
from served import server_environment
from sqlalchemy import create_engine
from sqlalchemy import text
from sqlalchemy.engine import make_url

from idserver import create_app
from idserver.crosslogin.events import CHANNEL
from idserver.phone.authenticator import SoftAuthenticator

BIN = Path(sys.executable).parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")
REDIS_SERVER = Path("/usr/bin/redis-server")
REDIRECT = "http://localhost:8001/callback"
TIMEOUT = 10  # seconds, for every single HTTP request

needs_postgres = pytest.mark.skipif(
    not os.environ.get("IDSERVER_TEST_DATABASE_URL"),
    reason="IDSERVER_TEST_DATABASE_URL is not set (a PostgreSQL to create schemas in)",
)


# -- processes --------------------------------------------------------------------------------
def _wait_until(condition: Callable[[], Any], *, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.05)


def _children(pid: int) -> set[int]:
    """Process ids whose parent is ``pid`` (gunicorn's workers, for its master)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            # The command name in field 2 may hold spaces; the parent follows its ')'.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False


def _served(database_url: str, tmp: Path, *, workers: int = 1, **settings: str) -> Any:
    """``idserver serve`` on PostgreSQL, 50 threads a worker; stopped with SIGINT (quick)."""
    env = server_environment(tmp, database_url=database_url, **settings)
    return served_idserver(env, tmp, workers=workers, threads=50, stop_signal=signal.SIGINT)


def _test_config(env: dict[str, str]) -> dict[str, Any]:
    return {
        name: env[f"IDSERVER_{name}"]
        for name in ("ISSUER", "DATABASE_URL", "KEYS_DIR", "SECRET_KEY", "REDIS_URL")
        if f"IDSERVER_{name}" in env
    }


# -- a citizen, a phone and a relying party, all over HTTP ------------------------------------
class _Answer:
    """A ``requests`` response shaped like Flask's test response (``.json`` is an attribute)."""

    def __init__(self, response: requests.Response) -> None:
        self.status_code = response.status_code
        self.headers = response.headers
        self.text = response.text
        try:
            self.json = response.json()
        except ValueError:
            self.json = None


class _Http:
    """A browser or phone speaking HTTP to the served IdP; redirects are not followed."""

    def __init__(self, issuer: str, record: list[_Answer] | None = None) -> None:
        self.issuer = issuer
        self.session = requests.Session()
        self.record = record

    def _answer(self, response: requests.Response) -> _Answer:
        answer = _Answer(response)
        if self.record is not None:
            self.record.append(answer)
        return answer

    def _url(self, path: str) -> str:
        return path if path.startswith("http") else self.issuer + path

    def get(self, path: str, **kwargs: Any) -> _Answer:
        kwargs.setdefault("timeout", TIMEOUT)
        return self._answer(self.session.get(self._url(path), allow_redirects=False, **kwargs))

    def post(self, path: str, **kwargs: Any) -> _Answer:
        kwargs.setdefault("timeout", TIMEOUT)
        return self._answer(self.session.post(self._url(path), allow_redirects=False, **kwargs))


class _World:
    """One enrolled citizen's phone and one relying party on a served IdP."""

    def __init__(
        self, issuer: str, env: dict[str, str], tmp: Path, record: list[_Answer] | None = None
    ) -> None:
        app = create_app(_test_config(env))
        self.issuer = issuer
        self.record = record
        self.rp = register_relying_party(app, redirect_uri=REDIRECT)
        authenticator = SoftAuthenticator(path=tmp / f"phone-{secrets.token_hex(4)}.json")
        self.phone = Phone(_Http(issuer, record), authenticator, origin=issuer)  # type: ignore[arg-type]
        enrol_resident(app, self.phone)

    def start(self, desktop: _Http) -> tuple[str, dict[str, Any]]:
        """The relying party sends ``desktop`` to /authorize; the login id and its status."""
        started = desktop.get("/authorize?" + urlencode(self.rp.authorize_params()))
        assert started.status_code == 303, started.text
        login_url = started.headers["Location"]
        assert login_url.startswith(f"{self.issuer}/login/")
        status = desktop.get(login_url, headers={"Accept": "application/json"})
        assert status.status_code == 200, status.text
        return login_url.rsplit("/", 1)[-1], status.json

    def challenge(self, status: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The phone scans and asks for the challenge; the login id and the approve body."""
        login_id, scanned = self.phone.scan(status["phone_url"])
        assert scanned.status_code == 200, scanned.json
        binding = scanned.json["binding"]
        issued = self.phone.challenge(login_id, binding, status["number"])
        assert issued.status_code == 200, issued.json
        credential = self.phone.authenticator.get_assertion(
            issued.json["options"], origin=self.issuer
        )
        return login_id, {"binding": binding, "number": status["number"], "credential": credential}

    def approve(self, login_id: str, body: dict[str, Any]) -> _Answer:
        return self.phone.client.post(f"/api/v1/logins/{login_id}/approve", json=body)

    def continue_(self, desktop: _Http, login_id: str) -> _Answer:
        status = desktop.get(f"/login/{login_id}", headers={"Accept": "application/json"})
        assert status.status_code == 200, status.text  # a 503 is judged with the other answers
        assert status.json["status"] == "approved", status.json
        return desktop.get(status.json["continue_url"])

    def code_of(self, redirected: _Answer) -> str:
        assert redirected.status_code == 303, redirected.text
        query = parse_qs(urlsplit(redirected.headers["Location"]).query)
        assert query["state"] == [self.rp.state]
        return query["code"][0]

    def exchange(self, desktop: _Http, code: str) -> _Answer:
        return self.rp.exchange(desktop, code)  # type: ignore[arg-type]

    def login(self) -> dict[str, Any]:
        """A whole login from the start; the verified ID token's claims."""
        desktop = _Http(self.issuer, self.record)
        login_id, status = self.start(desktop)
        approved = self.approve(*self.challenge(status))
        assert approved.status_code == 200, approved.json
        tokens = self.exchange(desktop, self.code_of(self.continue_(desktop, login_id)))
        assert tokens.status_code == 200, tokens.json
        jwks = KeySet.import_key_set(requests.get(f"{self.issuer}/jwks.json", timeout=5).json())
        claims = jwt.decode(tokens.json["id_token"], jwks, algorithms=["ES256"]).claims
        assert claims["iss"] == self.issuer and claims["nonce"] == self.rp.nonce
        return claims


# -- 1. a worker killed with SIGKILL in the middle of a request ------------------------------
@contextlib.contextmanager
def _table_locked(database_url: str, table: str) -> Iterator[psycopg.Connection[Any]]:
    """Hold ``LOCK TABLE … ACCESS EXCLUSIVE`` until the block ends: a worker touching the
    table waits inside its transaction, where it can be killed."""
    url = make_url(database_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), connect_timeout=5) as holder:
        holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        try:
            yield holder
        finally:
            holder.rollback()


def _waiting_backend(holder: psycopg.Connection[Any], table: str) -> int | None:
    """The PostgreSQL backend waiting for our lock on ``table``, if one is."""
    row = holder.execute(
        "SELECT pid FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
        (table,),
    ).fetchone()
    return row[0] if row else None


def _backend_gone(database_url: str, backend: int) -> bool:
    url = make_url(database_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), connect_timeout=5) as conn:
        row = conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (backend,)).fetchone()
    return row is None


def _kill_worker_blocked_on(
    database_url: str, process: subprocess.Popen[bytes], table: str, request: Callable[[], Any]
) -> list[Any]:
    """Run ``request`` in a thread until it waits for ``table``, SIGKILL the worker serving it,
    release the lock, and wait until its abandoned transaction is gone; what ``request`` got."""
    (worker,) = _wait_until(lambda: _children(process.pid), seconds=10, what="the worker")
    outcome: list[Any] = []

    def send() -> None:
        try:
            outcome.append(request())
        except requests.RequestException as exc:
            outcome.append(exc)

    with _table_locked(database_url, table) as holder:
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        backend = _wait_until(
            lambda: _waiting_backend(holder, table), seconds=10, what=f"a request on {table}"
        )
        os.kill(worker, signal.SIGKILL)
        sender.join(timeout=TIMEOUT + 5)
        assert not sender.is_alive()
    # The backend of the dead worker finishes its statement, finds its client gone at the next
    # read and rolls back: nothing it did without a commit remains.
    _wait_until(lambda: _backend_gone(database_url, backend), seconds=10, what="the rollback")
    replaced = _wait_until(
        lambda: _children(process.pid) - {worker}, seconds=20, what="a new worker"
    )
    assert worker not in replaced
    return outcome


def _rows(database_url: str, query: str, **params: Any) -> list[Any]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(query), params))
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def served_on_postgres_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One served IdP for the worker-killing tests: each test kills its worker anyway."""
    if not os.environ.get("IDSERVER_TEST_DATABASE_URL"):
        pytest.skip("IDSERVER_TEST_DATABASE_URL is not set (a PostgreSQL to create schemas in)")
    tmp = tmp_path_factory.mktemp("served")
    with postgres_schema("faults_") as url, _served(url, tmp) as served:
        yield url, served.process, served.issuer, served.env


@pytest.fixture
def served_on_postgres(served_on_postgres_module: Any, tmp_path: Path) -> tuple[str, Any, _World]:
    """The served IdP with a new citizen, phone and relying party of this test's own."""
    url, process, issuer, env = served_on_postgres_module
    return url, process, _World(issuer, env, tmp_path)


def test_worker_killed_during_approval_leaves_the_login_unapproved(served_on_postgres):
    url, process, world = served_on_postgres
    desktop = _Http(world.issuer)
    login_id, status = world.start(desktop)
    login_id, body = world.challenge(status)

    # The approval's UPDATE (state, citizen, evidence) is made, then the audit entry waits.
    outcome = _kill_worker_blocked_on(
        url, process, "audit_events", lambda: world.approve(login_id, body)
    )
    assert isinstance(outcome[0], requests.ConnectionError)

    (row,) = _rows(
        url,
        "SELECT state, citizen_id, evidence, approved_at FROM login_transactions WHERE id = :id",
        id=login_id,
    )
    assert row.state == "scanned"
    assert (row.citizen_id, row.evidence, row.approved_at) == (None, None, None)
    audited = _rows(
        url,
        "SELECT event FROM audit_events WHERE data->>'login_id' = :id",
        id=login_id,
    )
    assert "login_approved" not in [event for (event,) in audited]
    # The same assertion cannot be replayed: its challenge was burned before it was verified.
    assert world.approve(login_id, body).status_code == 400
    world.login()


def test_worker_killed_while_issuing_the_code_leaves_no_code(served_on_postgres):
    url, process, world = served_on_postgres
    desktop = _Http(world.issuer)
    login_id, status = world.start(desktop)
    assert world.approve(*world.challenge(status)).status_code == 200
    continued = desktop.get(f"/login/{login_id}", headers={"Accept": "application/json"})

    # The login is consumed (committed), then storing the code waits.
    outcome = _kill_worker_blocked_on(
        url,
        process,
        "authorization_codes",
        lambda: desktop.get(continued.json["continue_url"]),
    )
    assert isinstance(outcome[0], requests.ConnectionError)

    assert _rows(url, "SELECT id FROM authorization_codes WHERE login_id = :id", id=login_id) == []
    (state,) = _rows(url, "SELECT state FROM login_transactions WHERE id = :id", id=login_id)
    assert state == ("consumed",)
    again = desktop.get(continued.json["continue_url"], headers={"Accept": "application/json"})
    assert again.status_code == 400 and again.json["error"] == "login_ended"
    world.login()


def test_worker_killed_during_token_exchange_keeps_the_code_unused(served_on_postgres):
    url, process, world = served_on_postgres
    desktop = _Http(world.issuer)
    login_id, status = world.start(desktop)
    assert world.approve(*world.challenge(status)).status_code == 200
    code = world.code_of(world.continue_(desktop, login_id))

    # The code is burned (not yet committed), then storing the token waits.
    outcome = _kill_worker_blocked_on(url, process, "tokens", lambda: world.exchange(desktop, code))
    assert isinstance(outcome[0], requests.ConnectionError)

    ((code_id, used_at),) = _rows(
        url, "SELECT id, used_at FROM authorization_codes WHERE login_id = :id", id=login_id
    )
    assert used_at is None
    tokens_of_code = "SELECT id FROM tokens WHERE code_id = :id"
    assert _rows(url, tokens_of_code, id=code_id) == []
    # The relying party simply asks again, and gets its tokens once.
    tokens = world.exchange(desktop, code)
    assert tokens.status_code == 200, tokens.json
    assert world.exchange(desktop, code).status_code == 400
    assert len(_rows(url, tokens_of_code, id=code_id)) == 1
    world.login()


# -- 2. PostgreSQL restarted during a load of logins -------------------------------------------
def _as_postgres(*command: str | Path) -> list[str]:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return prefix + [str(part) for part in command]


@pytest.fixture
def private_postgres() -> Iterator[tuple[str, Callable[[str], None]]]:
    """A PostgreSQL of this test's own on 127.0.0.1; its URL and ``pg_ctl(action)``."""
    if not (PG_BIN / "initdb").exists() or not (PG_BIN / "pg_ctl").exists():
        pytest.skip(f"no PostgreSQL server binaries in {PG_BIN}")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        pytest.skip("running as root and no runuser to run initdb as postgres")
    home = Path(tempfile.mkdtemp(prefix="idserver-pg-"))
    if os.geteuid() == 0:
        shutil.chown(home, "postgres", "postgres")
    data = home / "data"
    port = free_port()

    server = f"-c listen_addresses=127.0.0.1 -p {port} -k {home} -c fsync=off"
    options = {
        "start": ("-l", str(home / "log"), "-o", server),
        "restart": ("-l", str(home / "log"), "-m", "fast", "-o", server),
        "stop": ("-m", "fast"),
    }

    def pg_ctl(action: str) -> None:
        subprocess.run(
            _as_postgres(PG_BIN / "pg_ctl", "-D", data, "-w", "-t", "30", *options[action], action),
            check=True,
            capture_output=True,
            timeout=40,
        )

    try:
        subprocess.run(
            _as_postgres(PG_BIN / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-N"),
            check=True,
            capture_output=True,
            timeout=60,
        )
        pg_ctl("start")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", pg_ctl
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            pg_ctl("stop")
        shutil.rmtree(home, ignore_errors=True)


def _unavailable_as_documented(answer: _Answer, *, browser: bool) -> bool:
    if answer.status_code != 503 or answer.headers.get("Retry-After") != "5":
        return False
    if browser:
        return answer.headers["Content-Type"].startswith("text/html") and (
            "temporarily_unavailable" in answer.text
        )
    return answer.json is not None and answer.json["error"] == "temporarily_unavailable"


def test_postgres_restart_under_load_gives_503_then_recovers(private_postgres, tmp_path):
    url, pg_ctl = private_postgres
    generous = {"RATE_LIMIT_LOGIN": "10000/minute", "RATE_LIMIT_APPROVAL": "10000/minute"}
    with _served(url, tmp_path, workers=2, LONG_POLL_SECONDS="3", **generous) as served:
        issuer, env = served.issuer, served.env
        answers: list[_Answer] = []
        worlds = [_World(issuer, env, tmp_path, answers) for _ in range(3)]
        succeeded: list[float] = []
        unexpected: list[BaseException] = []
        stop = threading.Event()

        def load(world: _World) -> None:
            while not stop.is_set():
                try:
                    world.login()
                    succeeded.append(time.monotonic())
                except AssertionError:
                    time.sleep(0.2)  # judged below by the answers recorded
                except Exception as exc:  # noqa: BLE001 -- a dropped connection, for instance
                    unexpected.append(exc)

        threads = [threading.Thread(target=load, args=(w,), daemon=True) for w in worlds]
        for thread in threads:
            thread.start()
        try:
            _wait_until(lambda: len(succeeded) >= 3, seconds=30, what="logins before the restart")
            # A desktop held in the long poll across the restart gets a whole, valid answer.
            waiting = _Http(issuer)
            held_id, held_status = worlds[0].start(waiting)
            held: list[_Answer] = []
            holder = threading.Thread(
                target=lambda: held.append(
                    waiting.get(
                        f"/login/{held_id}",
                        params={"seen": held_status["version"]},
                        headers={"Accept": "application/json"},
                    )
                ),
                daemon=True,
            )
            holder.start()
            time.sleep(0.3)
            pg_ctl("restart")
            restarted = time.monotonic()
            _wait_until(
                lambda: any(at > restarted for at in succeeded),
                seconds=10,
                what="a login after the restart",
            )
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=TIMEOUT * 3)
        holder.join(timeout=TIMEOUT)
        assert held and held[0].status_code == 200 and held[0].json["status"] == "pending"

        assert not unexpected, unexpected
        refused = [a for a in answers if a.status_code >= 400]
        assert all(a.status_code == 503 for a in refused), [
            (a.status_code, a.text) for a in refused
        ]
        for answer in refused:
            browser = answer.headers["Content-Type"].startswith("text/html")
            assert _unavailable_as_documented(answer, browser=browser), answer.text
        log = served.log_text()
        assert '" 500 ' not in log, "a request answered 500 during the restart"

        # While the database is down: 503, Retry-After, JSON for APIs and a page for browsers.
        world = worlds[0]
        desktop = _Http(issuer)
        login_id, _status = world.start(desktop)
        pg_ctl("stop")
        try:
            api = desktop.get(f"/login/{login_id}", headers={"Accept": "application/json"})
            assert _unavailable_as_documented(api, browser=False), (api.status_code, api.text)
            page = desktop.get(f"/login/{login_id}", headers={"Accept": "text/html"})
            assert _unavailable_as_documented(page, browser=True), (page.status_code, page.text)
            token = world.exchange(desktop, "no-code")
            assert _unavailable_as_documented(token, browser=False), (token.status_code, token.text)
        finally:
            pg_ctl("start")
        _wait_until(lambda: _try_login(world), seconds=10, what="a login after the start")


def _try_login(world: _World) -> bool:
    try:
        world.login()
    except (AssertionError, requests.RequestException):
        return False
    return True


# -- 3. Redis stopped ---------------------------------------------------------------------------
@contextlib.contextmanager
def _redis_server(port: int, tmp: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        + ["--appendonly", "no", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = _redis(port)
        _wait_until(lambda: _pings(client), seconds=10, what="redis-server")
        yield process
    finally:
        process.kill()
        process.wait(timeout=10)


def _redis(port: int) -> Any:
    import redis

    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)


def _pings(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 -- not up yet
        return False


def _subscribers(client: Any) -> int:
    return int(dict(client.pubsub_numsub(CHANNEL))[CHANNEL.encode()])


def _counter_keys(client: Any, scope: str) -> list[bytes]:
    return list(client.scan_iter(match=f"*{scope}*"))


def _bad_token_request(issuer: str) -> _Answer:
    return _Answer(
        requests.post(
            f"{issuer}/token",
            data={"grant_type": "authorization_code", "code": "x", "redirect_uri": REDIRECT},
            auth=("no-such-client", "wrong"),
            timeout=TIMEOUT,
        )
    )


def _approve_while_desktop_waits(world: _World) -> _Answer:
    """A desktop waits in the long poll while the phone approves; what the wait returned."""
    desktop = _Http(world.issuer)
    login_id, status = world.start(desktop)
    login_id, body = world.challenge(status)
    scanned = desktop.get(f"/login/{login_id}", headers={"Accept": "application/json"})
    held: list[_Answer] = []
    waiter = threading.Thread(
        target=lambda: held.append(
            desktop.get(
                f"/login/{login_id}",
                params={"seen": scanned.json["version"]},
                headers={"Accept": "application/json"},
            )
        ),
        daemon=True,
    )
    waiter.start()
    time.sleep(0.3)  # the desktop is waiting
    approved_at = time.monotonic()
    assert world.approve(login_id, body).status_code == 200
    waiter.join(timeout=TIMEOUT)
    assert held, "the long poll did not end"
    assert time.monotonic() - approved_at < 3, "the waiting desktop heard late"
    tokens = world.exchange(desktop, world.code_of(world.continue_(desktop, login_id)))
    assert tokens.status_code == 200, tokens.json
    return held[0]


@needs_postgres
@pytest.mark.skipif(not REDIS_SERVER.exists(), reason=f"no {REDIS_SERVER}")
def test_redis_stopped_limits_count_in_the_database_and_logins_go_on(tmp_path):
    port = free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    client = _redis(port)
    limits = {"RATE_LIMIT_TOKEN": "3/minute", "LONG_POLL_SECONDS": "8"}
    with (
        postgres_schema("faults_") as url,
        _redis_server(port, tmp_path) as redis_process,
        _served(url, tmp_path, workers=1, REDIS_URL=redis_url, **limits) as served,
    ):
        world = _World(served.issuer, served.env, tmp_path)
        # With Redis: counters and notifications go through it.
        assert _approve_while_desktop_waits(world).json["status"] == "approved"
        assert _counter_keys(client, "approval")
        assert _subscribers(client) >= 1

        redis_process.kill()
        redis_process.wait(timeout=10)
        # Without Redis: logins complete (waiting desktops poll the database) ...
        assert _approve_while_desktop_waits(world).json["status"] == "approved"
        counted = _rows(url, "SELECT key FROM rate_limit_counters")
        assert any("approval" in key for (key,) in counted), counted
        # ... and the limits still hold, shared through the database: 3 failures, then 429.
        answers = [_bad_token_request(served.issuer).status_code for _ in range(4)]
        assert answers == [401, 401, 401, 429]

        # Redis back (empty): after the retry pause, counting and notifications use it again.
        with _redis_server(port, tmp_path):
            _wait_until(
                lambda: (
                    _bad_token_request(served.issuer).status_code in (401, 429)
                    and _counter_keys(client, "token")
                ),
                seconds=15,
                what="rate limits counting in Redis again",
            )
            assert _approve_while_desktop_waits(world).json["status"] == "approved"
            _wait_until(lambda: _subscribers(client) >= 1, seconds=10, what="a subscriber")
