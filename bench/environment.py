"""One benchmark environment: a fresh database, seeded, and ``idserver serve`` on top of it."""

from __future__ import annotations

import contextlib
import os
import platform
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .logins import RelyingPartyCredentials
from .procstat import pids_named
from .seed import BenchDatabase
from .seed import Enrolled
from .seed import bulk_load_citizens
from .seed import bulk_load_codes
from .seed import count_citizens
from .seed import enrol_phones
from .seed import fresh_database
from .seed import make_app
from .seed import register_relying_party
from .server import Server
from .server import free_port
from .server import start_server

__all__ = ["Environment", "machine", "prepared"]


@dataclass
class Environment:
    database: BenchDatabase
    server: Server
    phones: list[Enrolled]
    rp: RelyingPartyCredentials
    citizens: int
    seeding: dict[str, Any]
    redis_url: str | None

    def side_pids(self) -> dict[str, list[int]]:
        """Processes outside gunicorn that serve it: PostgreSQL backends, Redis."""
        side: dict[str, list[int]] = {}
        if self.database.kind == "postgresql":
            side["postgres"] = pids_named("postgres")
        if self.redis_url:
            side["redis"] = pids_named("redis-server")
        return side

    def describe(self) -> dict[str, Any]:
        return {
            "database": self.database.kind,
            "server": self.server.name,
            "citizens": self.citizens,
            "phones": len(self.phones),
            "workers": self.server.workers,
            "threads": self.server.threads or "idserver serve default",
            "notifications": _notification_backend(self.database.kind, self.redis_url),
            "seeding": self.seeding,
        }


def _notification_backend(kind: str, redis_url: str | None) -> str:
    if redis_url:
        return "redis pub/sub"
    if kind == "postgresql":
        return "postgresql LISTEN/NOTIFY"
    return "sqlite watcher (PRAGMA data_version)"


def machine() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


@contextlib.contextmanager
def prepared(
    kind: str,
    *,
    citizens: int,
    phones: int,
    workers: int,
    threads: int | None,
    server_name: str = "gunicorn",
    database_url: str | None = None,
    base_url: str | None = None,
    redis_url: str | None = None,
    history: int = 0,
    extra_env: dict[str, str] | None = None,
    log: Any = print,
) -> Iterator[Environment]:
    """Seed a database (or reuse ``database_url``), serve it, and clean everything up after."""
    with tempfile.TemporaryDirectory(prefix="idserver-bench-") as tmp:
        workdir = Path(tmp)
        if database_url:
            kind = "postgresql" if database_url.startswith("postgresql") else "sqlite"
            database = BenchDatabase(kind, database_url, lambda: None)
        else:
            database = fresh_database(kind, workdir, base_url=base_url)
        try:
            port = free_port()
            issuer = f"http://localhost:{port}"
            keys_dir = workdir / "keys"
            secret_key = secrets.token_urlsafe(32)
            app = make_app(
                database_url=database.url, issuer=issuer, keys_dir=keys_dir, secret_key=secret_key
            )
            seeding: dict[str, Any] = {}
            with app.app_context():
                from idserver.db import db

                if citizens:
                    log(f"[{kind}] bulk-loading {citizens:,} citizens …")
                    seeding = bulk_load_citizens(db.engine, citizens)
                    log(f"[{kind}] … {seeding['seconds']} s ({seeding['rows_per_second']:,}/s)")
                    owners = seeding.pop("sample_ids")[:phones]
                else:
                    owners = []
            if len(owners) < phones:
                owners += _register_extra(app, phones - len(owners))
            started = time.perf_counter()
            enrolled = enrol_phones(app, owners, origin=issuer)
            seeding["phones_enrolled_seconds"] = round(time.perf_counter() - started, 2)
            client_id, client_secret = register_relying_party(app)
            if history:
                log(f"[{kind}] bulk-loading {history:,} past authorization codes …")
                with app.app_context():
                    from idserver.db import db

                    seeding["history"] = bulk_load_codes(
                        db.engine, history, client_id=client_id, citizen_id=enrolled[0].citizen_id
                    )
            total = count_citizens(app)
            with app.app_context():
                from idserver.db import db

                db.engine.dispose()
            env = {"IDSERVER_REDIS_URL": redis_url} if redis_url else {}
            env.update(extra_env or {})
            server = start_server(
                database_url=database.url,
                keys_dir=keys_dir,
                secret_key=secret_key,
                workdir=workdir,
                port=port,
                workers=workers,
                threads=threads,
                server_name=server_name,
                extra_env=env,
            )
            try:
                yield Environment(
                    database,
                    server,
                    enrolled,
                    RelyingPartyCredentials(client_id, client_secret),
                    total,
                    seeding,
                    redis_url,
                )
            finally:
                server.stop()
        finally:
            database.drop()


def _register_extra(app: Any, count: int) -> list[str]:
    from idserver.citizens.service import register_citizen

    ids = []
    with app.app_context():
        for number in range(count):
            citizen = register_citizen(
                given_name="Bench",
                family_name=f"Phone {number}",
                birthdate="1980-01-01",
                street="Kampstraße 12",
                postcode="44137",
                city="Dortmund",
            )
            ids.append(citizen.id)
    return ids
