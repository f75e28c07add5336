"""``python -m bench profile``: where a login's server CPU goes, measured in-process.

Complete logins are driven one after another through the Flask test client (no HTTP server,
no threads), each request timed with ``time.process_time`` and its SQL statements and commits
counted, optionally under cProfile. It leaves out gunicorn (HTTP parsing, the access log and the
hand-over between threads, about 0.7 ms per request), which ``python -m bench run`` includes.

The long polls are asked with the version the desktop last saw right after each phone step, so
they answer at once, as in a real login where the change arrives while the poll waits.

It prints the figures as JSON and as a table (CPU median, SQL statements and commits per step,
and ``noop``: the CPU of a ``GET /jwks.json``, what every request pays around its view), and
writes them to ``bench/results/<time>-profile-<database>.json``.
"""

from __future__ import annotations

import base64
import cProfile
import hashlib
import io
import pstats
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

from flask import Flask
from sqlalchemy import event

from idserver.crosslogin import qr
from idserver.db import db

from .logins import parse_desktop_page
from .seed import REDIRECT_URI
from .seed import SCOPE
from .seed import bulk_load_citizens
from .seed import enrol_phones
from .seed import fresh_database
from .seed import make_app
from .seed import register_relying_party
from .targets import own_time_by_layer

__all__ = ["bare_wsgi_cpu_ms", "noop_cpu_ms", "profile_logins", "step_table"]

ISSUER = "http://localhost:8999"
_SELECT = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|COMMIT|BEGIN)", re.IGNORECASE)


class _Counter:
    """SQL statements and commits seen by the application's engine."""

    def __init__(self, app: Flask) -> None:
        self.statements: Counter[str] = Counter()
        self.commits = 0
        with app.app_context():
            engine = db.engine
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._commit)
        self.engine = engine

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements[" ".join(statement.split())[:90]] += 1

    def _commit(self, _conn: Any) -> None:
        self.commits += 1

    def total(self) -> int:
        return sum(self.statements.values())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class _Login:
    """One complete login, step by step, with CPU time, statements and commits per step."""

    def __init__(self, app: Flask, counter: _Counter, phone: Any, rp: tuple[str, str]) -> None:
        self.app = app
        self.counter = counter
        self.phone = phone
        self.rp = rp
        self.cpu: dict[str, float] = defaultdict(float)
        self.sql: dict[str, int] = defaultdict(int)
        self.commits: dict[str, int] = defaultdict(int)

    def _call(self, step: str, client: Any, method: str, url: str, **kwargs: Any) -> Any:
        statements, commits = self.counter.total(), self.counter.commits
        started = time.process_time()
        response = client.open(url, method=method, **kwargs)
        self.cpu[step] += (time.process_time() - started) * 1000
        self.sql[step] += self.counter.total() - statements
        self.commits[step] += self.counter.commits - commits
        return response

    def run(self) -> None:
        desktop = self.app.test_client()
        phone = self.app.test_client()
        backend = self.app.test_client()
        verifier = secrets.token_urlsafe(48)
        params = {
            "response_type": "code",
            "client_id": self.rp[0],
            "redirect_uri": REDIRECT_URI,
            "scope": SCOPE,
            "state": secrets.token_urlsafe(12),
            "nonce": secrets.token_urlsafe(12),
            "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()),
            "code_challenge_method": "S256",
        }
        started = self._call("authorize", desktop, "GET", "/authorize?" + urlencode(params))
        assert started.status_code == 303, started.get_data(as_text=True)
        login_url = urlsplit(started.headers["Location"]).path
        page = self._call(
            "desktop_page", desktop, "GET", login_url, headers={"Accept": "text/html"}
        )
        shown = parse_desktop_page(page.get_data(as_text=True))
        login_id, version = shown["login_id"], shown["version"]
        frame = urlsplit(qr.frame_url(ISSUER, login_id, shown["qr_key"], qr.current_step(1)))
        t_h = parse_qs(frame.query)
        base = f"/api/v1/logins/{login_id}"
        json = {"Accept": "application/json"}

        def poll() -> dict[str, Any]:
            reply = self._call(
                "long_poll", desktop, "GET", f"{login_url}?seen={version}", headers=json
            )
            assert reply.status_code == 200
            return reply.get_json()  # type: ignore[no-any-return]

        scanned = self._call(
            "scan", phone, "POST", f"{base}/scan", json={"t": t_h["t"][0], "h": t_h["h"][0]}
        )
        assert scanned.status_code == 200, scanned.get_data(as_text=True)
        version = poll()["version"]
        binding = scanned.get_json()["binding"]
        number = shown["number"]
        issued = self._call(
            "challenge",
            phone,
            "POST",
            f"{base}/challenge",
            json={"binding": binding, "number": number},
        )
        assert issued.status_code == 200, issued.get_data(as_text=True)
        credential = self.phone.get_assertion(issued.get_json()["options"], origin=ISSUER)
        approved = self._call(
            "approve",
            phone,
            "POST",
            f"{base}/approve",
            json={"binding": binding, "number": number, "credential": credential},
        )
        assert approved.status_code == 200, approved.get_data(as_text=True)
        status = poll()
        assert status["status"] == "approved", status
        back = self._call("continue", desktop, "GET", urlsplit(status["continue_url"]).path)
        assert back.status_code == 303, back.get_data(as_text=True)
        code = parse_qs(urlsplit(back.headers["Location"]).query)["code"][0]
        token = self._call(
            "token",
            backend,
            "POST",
            "/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
            },
            headers={
                "Authorization": "Basic " + base64.b64encode(":".join(self.rp).encode()).decode()
            },
        )
        assert token.status_code == 200, token.get_data(as_text=True)


def noop_cpu_ms(app: Flask, requests: int = 2000) -> float:
    """Server CPU of a request that does nothing (GET /jwks.json), in-process: what every
    request pays for the hooks around its view (headers, logs, metrics, input checks)."""
    client = app.test_client()
    for _ in range(min(200, requests)):  # warm-up
        client.get("/jwks.json")
    started = time.process_time()
    for _ in range(requests):
        client.get("/jwks.json")
    return round((time.process_time() - started) * 1000 / requests, 3)


def bare_wsgi_cpu_ms(app: Flask, requests: int = 2000) -> float:
    """The same request called as a WSGI application, with no server and no test client:
    the floor that a server's figure is compared with (both measured back to back, so that
    the load of other processes on the machine weighs on both alike)."""
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/jwks.json",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "5000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "localhost:5000",
        "HTTP_USER_AGENT": "buerger-id-bench",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return None

    def call() -> None:
        body = app({**environ, "wsgi.input": io.BytesIO()}, start_response)
        try:
            b"".join(body)
        finally:
            getattr(body, "close", lambda: None)()

    for _ in range(min(200, requests)):  # warm-up
        call()
    started = time.process_time()
    for _ in range(requests):
        call()
    return round((time.process_time() - started) * 1000 / requests, 3)


def step_table(result: dict[str, Any]) -> str:
    """The per-step figures of ``profile_logins`` as a table to read."""

    def line(name: str, cpu: str, sql: str = "", commits: str = "") -> str:
        return f"{name:<18} {cpu:>8} {sql:>5} {commits:>7}".rstrip()

    rule = "-" * len(line("", "", "", "commits"))
    lines = [line("step (median)", "CPU ms", "SQL", "commits"), rule]
    for step, row in result["steps"].items():
        lines.append(line(step, f"{row['cpu_ms']:.2f}", f"{row['sql']:g}", f"{row['commits']:g}"))
    lines += [
        rule,
        line(
            "login (mean)",
            f"{result['server_cpu_ms_per_login']:.2f}",
            f"{result['sql_statements_per_login']:g}",
            f"{result['commits_per_login']:g}",
        ),
        line("noop (/jwks.json)", f"{result['noop_cpu_ms']:.3f}"),
    ]
    return "\n".join(lines)


def _package(filename: str) -> str:
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    for ours in ("idserver", "bench"):
        if f"/{ours}/" in filename:
            return ours
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins"
    return "stdlib"


def _by_package(stats: pstats.Stats) -> dict[str, float]:
    """Own (exclusive) time per package, in percent of the whole profile."""
    own: Counter[str] = Counter()
    for (filename, _line, _name), row in stats.stats.items():  # type: ignore[attr-defined]
        own[_package(filename)] += row[2]
    total = sum(own.values()) or 1.0
    return {name: round(100 * value / total, 1) for name, value in own.most_common(15)}


def profile_logins(
    *,
    logins: int,
    database: str,
    base_url: str | None,
    cprofile: bool,
    top: int,
    noop_requests: int = 2000,
) -> dict[str, Any]:
    """Run ``logins`` complete logins in-process; CPU, statements and commits per step."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    bench_db = fresh_database(database, workdir, base_url=base_url)
    try:
        app = make_app(
            database_url=bench_db.url,
            issuer=ISSUER,
            keys_dir=workdir / "keys",
            secret_key=secrets.token_urlsafe(32),
        )
        with app.app_context():
            engine = db.engine
        loaded = bulk_load_citizens(engine, 1000)
        phone = enrol_phones(app, loaded["sample_ids"][:1], origin=ISSUER)[0].authenticator
        rp = register_relying_party(app)
        counter = _Counter(app)
        for _ in range(20):  # warm-up: imports, caches, compiled statements
            _Login(app, counter, phone, rp).run()
        counter.statements.clear()
        runs: list[_Login] = []
        profiler = cProfile.Profile() if cprofile else None
        started, wall = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        for _ in range(logins):
            login = _Login(app, counter, phone, rp)
            login.run()
            runs.append(login)
        if profiler:
            profiler.disable()
        total_ms = (time.process_time() - started) * 1000
        waiting = time.perf_counter() - wall - total_ms / 1000  # for the database server
        noop_ms = noop_cpu_ms(app, noop_requests) if noop_requests else None
        bare_ms = bare_wsgi_cpu_ms(app, noop_requests) if noop_requests else None
        steps = list(runs[0].cpu)
        result: dict[str, Any] = {
            "database": database,
            "logins": logins,
            "cpu_ms_per_login_incl_client": round(total_ms / logins, 2),
            "server_cpu_ms_per_login": round(
                statistics.fmean(sum(r.cpu.values()) for r in runs), 2
            ),
            "sql_statements_per_login": round(counter.total() / logins, 1),
            "commits_per_login": round(statistics.fmean(sum(r.commits.values()) for r in runs), 1),
            "noop_cpu_ms": noop_ms,
            "noop_bare_wsgi_cpu_ms": bare_ms,
            "steps": {
                step: {
                    "cpu_ms": round(statistics.median(r.cpu[step] for r in runs), 2),
                    "sql": round(statistics.fmean(r.sql[step] for r in runs), 1),
                    "commits": round(statistics.fmean(r.commits[step] for r in runs), 1),
                }
                for step in steps
            },
            "statements": {
                text: round(count / logins, 2) for text, count in counter.statements.most_common(40)
            },
        }
        if profiler:
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            result["own_time_by_package_percent"] = _by_package(stats)
            result["own_time_by_layer_seconds"] = own_time_by_layer(stats, waiting)
            stats.sort_stats("cumulative").print_stats(top)
            stats.sort_stats("tottime").print_stats(top)
            result["profile"] = out.getvalue()
        return result
    finally:
        bench_db.drop()
