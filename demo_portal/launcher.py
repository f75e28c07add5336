"""``python -m demo_portal``: Bürger-ID and both portals on localhost, ready to try.

1. prepare: the schema (``idserver db upgrade``), both portals registered as clients (kept in
   ``instance/demo-clients.json``, mode 0600), two demo residents, fresh activation codes;
2. start ``idserver serve`` and one gunicorn per portal as child processes (logs in
   ``instance/logs/``), and wait until all three answer;
3. print the URLs, the activation letters and the soft-phone commands;
4. on Ctrl-C or SIGTERM terminate the children and wait for them.

Everything lives under the working directory: ``instance/`` and ``keys/``, as for
``idserver`` itself. Running it again keeps all data; only the activation codes are new.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import TextIO

import requests
from sqlalchemy import select

from idserver import create_app
from idserver.admin.letter import activation_link
from idserver.citizens.models import Citizen
from idserver.citizens.service import activation_url
from idserver.citizens.service import issue_activation_code
from idserver.citizens.service import register_citizen
from idserver.config import ConfigError
from idserver.config import effective_config
from idserver.db import db
from idserver.oidc.clients import register_client
from idserver.oidc.models import Client

from .app import create_portal
from .app import load_portal
from .config import KINDS
from .config import prefix
from .db import db as portal_db
from .private_files import write_private

__all__ = ["DemoSettings", "Letter", "prepare", "run"]

BIN = Path(sys.executable).parent
PACKAGE_PARENT = Path(__file__).resolve().parents[1]
START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 10

CLIENT_NAMES = {"parking": "Bewohnerparkausweis (Demo)", "jobs": "Bewerberportal (Demo)"}
PORT_VARIABLES = {"idp": "DEMO_IDP_PORT", "parking": "DEMO_PARKING_PORT", "jobs": "DEMO_JOBS_PORT"}
DEFAULT_PORTS = {"idp": 5000, "parking": 5001, "jobs": 5002}

DEMO_RESIDENTS: tuple[dict[str, str], ...] = (
    {
        "key": "erika",
        "note": "lives in the Kreuzviertel resident parking zone",
        "given_name": "Erika",
        "family_name": "Mustermann",
        "birthdate": "1984-08-12",
        "street": "Kreuzstraße 5",
        "postcode": "44139",
        "city": "Dortmund",
        "email": "erika.mustermann@example.org",
    },
    {
        "key": "jonas",
        "note": "lives outside every resident parking zone",
        "given_name": "Jonas",
        "family_name": "Becker",
        "birthdate": "1991-05-23",
        "street": "Benninghofer Straße 20",
        "postcode": "44267",
        "city": "Dortmund",
        "email": "jonas.becker@example.org",
    },
)


class DemoError(RuntimeError):
    """The demo cannot start; the message says why and what to do."""


@dataclass(frozen=True)
class DemoSettings:
    root: Path
    ports: Mapping[str, int]

    @classmethod
    def from_environ(cls, root: Path, environ: Mapping[str, str] | None = None) -> DemoSettings:
        environ = os.environ if environ is None else environ
        ports = {}
        for name, variable in PORT_VARIABLES.items():
            raw = environ.get(variable, str(DEFAULT_PORTS[name]))
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise DemoError(f"{variable} must be a port number, not {raw!r}")
            ports[name] = int(raw)
        if len(set(ports.values())) != len(ports):
            raise DemoError("DEMO_IDP_PORT, DEMO_PARKING_PORT and DEMO_JOBS_PORT must differ")
        return cls(root=root.resolve(), ports=ports)

    @property
    def issuer(self) -> str:
        # A host name, not 127.0.0.1: WebAuthn does not accept IP addresses as RP ID.
        return f"http://localhost:{self.ports['idp']}"

    def portal_url(self, kind: str) -> str:
        return f"http://localhost:{self.ports[kind]}"

    @property
    def instance(self) -> Path:
        return self.root / "instance"

    @property
    def logs(self) -> Path:
        return self.instance / "logs"

    def idp_config(self) -> dict[str, str | int]:
        """IDSERVER_* for the demo: the issuer on our port, storage under the working dir.

        Settings the environment gives (directly or as ``IDSERVER_<NAME>_FILE``) are left to it,
        so Bürger-ID reads and checks them itself.
        """
        demo_defaults: dict[str, str | int] = {
            "DATABASE_URL": f"sqlite:///{self.instance / 'idserver.sqlite3'}",
            "KEYS_DIR": str(self.root / "keys"),
            # A person copying the phone URL into a terminal needs longer than the 5 s a camera
            # needs; the demo relaxes the QR freshness window (production keeps the default).
            "QR_MAX_AGE_SECONDS": 60,
        }
        config: dict[str, str | int] = {"ISSUER": self.issuer}
        for name, value in demo_defaults.items():
            if not {f"IDSERVER_{name}", f"IDSERVER_{name}_FILE"} & os.environ.keys():
                config[name] = value
        return config

    def idp_environment(self) -> dict[str, str]:
        return {
            **os.environ,
            **{f"IDSERVER_{name}": str(value) for name, value in self.idp_config().items()},
        }


@dataclass(frozen=True)
class Letter:
    """An activation letter, as the citizens' office would post it."""

    key: str
    name: str
    address: str
    note: str
    activation_url: str
    code: str
    expires_at: str

    @property
    def link(self) -> str:
        """The link in the letter's QR code: the code rides in the fragment (``#code=…``)."""
        return activation_link(self.activation_url, self.code)


@dataclass(frozen=True)
class Preparation:
    clients: dict[str, dict[str, str]]
    letters: list[Letter]


# -- preparing Bürger-ID ---------------------------------------------------------------------
def _idserver_command() -> list[str]:
    script = BIN / "idserver"
    return [str(script)] if script.exists() else [sys.executable, "-m", "idserver.cli"]


def upgrade_schema(settings: DemoSettings) -> None:
    """``idserver db upgrade``: create or upgrade Bürger-ID's schema."""
    result = subprocess.run(  # noqa: S603 -- our own console script, fixed arguments
        [*_idserver_command(), "db", "upgrade"],
        env=settings.idp_environment(),
        cwd=settings.root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise DemoError(f"idserver db upgrade failed:\n{result.stdout}{result.stderr}")


def _ensure_clients(settings: DemoSettings, path: Path) -> dict[str, dict[str, str]]:
    """Both portals as clients; registered once, redirect URIs kept in step with the ports."""
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = {}
    clients: dict[str, dict[str, str]] = {}
    for kind in KINDS:
        base_url = settings.portal_url(kind)
        redirect_uris = [f"{base_url}/callback"]
        logout_uris = [f"{base_url}/logged-out"]
        entry = known.get(kind) or {}
        stored = db.session.get(Client, entry["client_id"]) if entry.get("client_id") else None
        if stored is None or not stored.check_client_secret(entry.get("client_secret", "")):
            client, secret = register_client(
                name=CLIENT_NAMES[kind],
                redirect_uris=redirect_uris,
                post_logout_redirect_uris=logout_uris,
                scope=load_portal(kind).scope,
            )
            assert secret is not None
            entry = {"client_id": client.client_id, "client_secret": secret}
        elif (
            stored.redirect_uris != redirect_uris or stored.post_logout_redirect_uris != logout_uris
        ):
            stored.redirect_uris = redirect_uris  # the demo's ports changed since last time
            stored.post_logout_redirect_uris = logout_uris
            db.session.commit()
        clients[kind] = {"client_id": entry["client_id"], "client_secret": entry["client_secret"]}
    write_private(path, (json.dumps(clients, indent=2) + "\n").encode())
    return clients


def _ensure_residents() -> list[Letter]:
    """The demo residents (registered once) and a fresh activation code for each."""
    letters = []
    for resident in DEMO_RESIDENTS:
        fields = {k: v for k, v in resident.items() if k not in ("key", "note")}
        citizen = db.session.scalars(
            select(Citizen).where(
                Citizen.given_name == fields["given_name"],
                Citizen.family_name == fields["family_name"],
                Citizen.birthdate == dt.date.fromisoformat(fields["birthdate"]),
                Citizen.deleted_at.is_(None),
            )
        ).first()
        if citizen is None:
            citizen = register_citizen(**fields)
        record, code = issue_activation_code(citizen.id, actor="demo")
        letters.append(
            Letter(
                key=resident["key"],
                name=f"{citizen.given_name} {citizen.family_name}",
                address=f"{citizen.street}, {citizen.postcode} {citizen.city}",
                note=resident["note"],
                activation_url=activation_url(record),
                code=code,
                expires_at=record.expires_at.date().isoformat(),
            )
        )
    return letters


def prepare(settings: DemoSettings) -> Preparation:
    """Schema, clients, residents and activation codes; safe to run again and again."""
    settings.instance.mkdir(mode=0o700, parents=True, exist_ok=True)
    upgrade_schema(settings)
    app = create_app(settings.idp_config())
    try:
        with app.app_context():
            clients = _ensure_clients(settings, settings.instance / "demo-clients.json")
            letters = _ensure_residents()
    finally:
        with app.app_context():
            db.engine.dispose()
    return Preparation(clients=clients, letters=letters)


def prepare_portals(settings: DemoSettings, clients: dict[str, dict[str, str]]) -> None:
    """Create each portal once here, so its tables and keys exist before workers start."""
    for kind in KINDS:
        app = create_portal(kind, portal_config(settings, kind, clients[kind]))
        with app.app_context():
            portal_db.engine.dispose()


def portal_config(settings: DemoSettings, kind: str, client: dict[str, str]) -> dict[str, str]:
    return {
        "ISSUER": settings.issuer,
        "CLIENT_ID": client["client_id"],
        "CLIENT_SECRET": client["client_secret"],
        "BASE_URL": settings.portal_url(kind),
        "INSTANCE_PATH": str(settings.instance / kind),
    }


# -- running ---------------------------------------------------------------------------------
@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    ready_url: str


def check_idp_settings(settings: DemoSettings) -> None:
    """Refuse unusable IDSERVER_* settings before any work (ConfigError names every one)."""
    effective = effective_config(settings.idp_config(), instance_path=str(settings.instance))
    if effective.problems:
        raise ConfigError(effective.problems + effective.warnings)


def check_ports_free(settings: DemoSettings) -> None:
    for name, port in settings.ports.items():
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError as exc:
                raise DemoError(
                    f"port {port} is in use; choose another with {PORT_VARIABLES[name]}=…"
                ) from exc


def _spawn(
    name: str, command: list[str], env: dict[str, str], settings: DemoSettings
) -> tuple[subprocess.Popen[bytes], Path]:
    settings.logs.mkdir(parents=True, exist_ok=True)
    log = settings.logs / f"{name}.log"
    with log.open("ab") as handle:
        process = subprocess.Popen(  # noqa: S603 -- our own programs, fixed arguments
            command,
            cwd=settings.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
        )
    return process, log


def start(settings: DemoSettings, clients: dict[str, dict[str, str]]) -> list[Child]:
    """Start Bürger-ID and both portals; returns once all three answer."""
    check_ports_free(settings)
    children: list[Child] = []
    try:
        process, log = _spawn(
            "idserver",
            [
                *_idserver_command(),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(settings.ports["idp"]),
            ],
            settings.idp_environment(),
            settings,
        )
        discovery = f"{settings.issuer}/.well-known/openid-configuration"
        children.append(Child("idserver", process, log, discovery))
        for kind in KINDS:
            config = portal_config(settings, kind, clients[kind])
            env = {
                **os.environ,
                **{prefix(kind) + name: value for name, value in config.items()},
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(PACKAGE_PARENT), os.environ.get("PYTHONPATH")) if p
                ),
            }
            command = [
                sys.executable,
                "-m",
                "gunicorn",
                "--bind",
                f"127.0.0.1:{settings.ports[kind]}",
                "--workers",
                "1",
                "--worker-class",
                "gthread",
                "--threads",
                "8",
                "--graceful-timeout",
                "5",
                "--access-logfile",
                "-",
                f"demo_portal.app:create_portal({kind!r})",
            ]
            process, log = _spawn(kind, command, env, settings)
            children.append(Child(kind, process, log, f"{settings.portal_url(kind)}/"))
        wait_until_ready(children)
    except BaseException:
        stop(children)
        raise
    return children


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def wait_until_ready(children: list[Child], timeout: float = START_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    for child in children:
        while True:
            if child.process.poll() is not None:
                raise DemoError(f"{child.name} exited during start:\n{_log_tail(child.log)}")
            try:
                if requests.get(child.ready_url, timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise DemoError(f"{child.name} did not answer in time:\n{_log_tail(child.log)}")
            time.sleep(0.2)


def stop(children: list[Child]) -> None:
    """SIGTERM to each child (gunicorn shuts down gracefully), then wait; kill stragglers."""
    for child in children:
        if child.process.poll() is None:
            child.process.terminate()
    for child in children:
        try:
            child.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()


class Stopped(Exception):
    """SIGTERM or SIGINT arrived."""


def _raise_stopped(signum: int, _frame: Any) -> None:
    raise Stopped(signal.Signals(signum).name)


# -- telling the user ------------------------------------------------------------------------
def _shown_path(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def print_instructions(settings: DemoSettings, letters: list[Letter], out: TextIO) -> None:
    phone = _shown_path(BIN / "idserver-phone", settings.root)
    lines = [
        "",
        "Bürger-ID demo is running. Press Ctrl-C to stop.",
        "",
        f"  Bürger-ID (identity provider)      {settings.issuer}",
        f"  Bewohnerparkausweis (parking)      {settings.portal_url('parking')}",
        f"  Bewerberportal (jobs)              {settings.portal_url('jobs')}",
        "",
        "Demo residents, each with a fresh activation code:",
    ]
    for letter in letters:
        lines += [
            "",
            f"  {letter.name}, {letter.address} — {letter.note}",
            f"    activation URL: {letter.activation_url}",
            f"    code:           {letter.code}   (valid until {letter.expires_at})",
            f"    QR-code link:   {letter.link}",
            "    enrol a soft phone (once per key file) with the QR-code link:",
            f"      {phone} --key-file .phone/{letter.key}.json enrol {shlex.quote(letter.link)}",
        ]
    lines += [
        "",
        "To sign in: open a portal and choose “Mit Bürger-ID anmelden”. On the QR-code page open",
        "“Can't scan the code?”, copy the phone URL and type the two-digit number shown there:",
        f"  {phone} --key-file .phone/erika.json approve '<phone URL>' --number NN",
        "(The demo accepts a copied phone URL for 60 s; in production a QR frame is stale after",
        " 5 s, see IDSERVER_QR_MAX_AGE_SECONDS.)",
        "",
        f"Logs: {_shown_path(settings.logs, settings.root)}/ · "
        f"client secrets: {_shown_path(settings.instance / 'demo-clients.json', settings.root)}",
        "",
    ]
    out.write("\n".join(lines) + "\n")
    out.flush()


def run(root: Path, *, check: bool = False, out: TextIO = sys.stdout) -> int:
    """The demo (until Ctrl-C), or with ``check`` the scripted walk-through; exit status."""
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in (signal.SIGINT, signal.SIGTERM)}
    children: list[Child] = []
    try:
        settings = DemoSettings.from_environ(root)
        check_idp_settings(settings)
        check_ports_free(settings)  # before any work, so a clash is reported at once
        out.write("Preparing Bürger-ID and the portals …\n")
        out.flush()
        preparation = prepare(settings)
        prepare_portals(settings, preparation.clients)
        children = start(settings, preparation.clients)
        if check:
            from .walkthrough import run_walkthrough

            return 0 if run_walkthrough(settings, preparation.letters, out=out) else 1
        print_instructions(settings, preparation.letters, out)
        while True:
            for child in children:
                if child.process.poll() is not None:
                    out.write(f"{child.name} stopped unexpectedly:\n{_log_tail(child.log)}\n")
                    return 1
            time.sleep(0.5)
    except DemoError as exc:
        out.write(f"error: {exc}\n")
        return 1
    except ConfigError as exc:  # as `idserver` does: one line per problem, exit status 2
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except Stopped:
        out.write("\nStopping …\n")
        return 0
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        stop(children)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if children:
            out.write("Bürger-ID and both portals have stopped.\n")
        out.flush()
