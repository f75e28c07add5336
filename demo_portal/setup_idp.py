"""Operator set-up: what the city's IT does at Bürger-ID before the portals can be used.

The only module of ``demo_portal`` that touches Bürger-ID's own code, because it *operates*
the identity provider rather than relying on it: create or upgrade its schema (``idserver db
upgrade``), register both OIDC portals as clients (kept in ``instance/demo-clients.json``, mode
0600), register two demo residents and issue each a fresh activation code, and register the
SAML portal from its metadata file with ``idserver saml-sp add --metadata FILE``, the command
a municipal operator runs. The portals themselves speak only HTTP/OpenID Connect/SAML to
Bürger-ID.

Running it again keeps all data; only the activation codes are new.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from idserver import create_app
from idserver.admin.letter import activation_link
from idserver.citizens.models import Citizen
from idserver.citizens.service import activation_url
from idserver.citizens.service import issue_activation_code
from idserver.citizens.service import register_citizen
from idserver.config import effective_config
from idserver.db import db
from idserver.oidc.clients import register_client
from idserver.oidc.models import Client

from .app import load_portal
from .config import KINDS
from .demo_settings import DemoError
from .demo_settings import DemoSettings
from .demo_settings import Letter
from .private_files import write_private

__all__ = [
    "CLIENT_NAMES",
    "DEMO_RESIDENTS",
    "IdpSettingsRefused",
    "Preparation",
    "check_idp_settings",
    "idp_environment",
    "idp_serve_command",
    "prepare",
    "register_saml_portal",
]

BIN = Path(sys.executable).parent
# Shared state a scratch demo must not inherit from the environment (REDIS_URL empty: none).
ISOLATED: dict[str, str | int] = {"REDIS_URL": ""}

CLIENT_NAMES = {"parking": "Bewohnerparkausweis (Demo)", "jobs": "Bewerberportal (Demo)"}
SAML_NAMES = {"dogtax": "Hundesteuer-Anmeldung (Demo)"}

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


# Bürger-ID's MUNICIPALITY_NAME and OFFICE_*: an office in the city the demo residents live in.
DEMO_OFFICE: dict[str, str | int] = {
    "MUNICIPALITY_NAME": "Stadt Dortmund",
    "OFFICE_NAME": "Bürgerdienste",
    "OFFICE_STREET": "Friedensplatz 1",
    "OFFICE_POSTCODE": "44135",
    "OFFICE_CITY": "Dortmund",
    "OFFICE_CONTACT": "buergerdienste@dortmund.example, Mo–Fr 8–16 Uhr (Demo)",
}


class IdpSettingsRefused(DemoError):
    """Bürger-ID would refuse its IDSERVER_* settings; one problem per entry."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Preparation:
    clients: dict[str, dict[str, str]]
    letters: list[Letter]


# -- Bürger-ID's settings and command ---------------------------------------------------------
def idp_config(settings: DemoSettings) -> dict[str, str | int]:
    """IDSERVER_* for the demo: the issuer on our port, storage under the working dir.

    Settings the environment gives (directly or as ``IDSERVER_<NAME>_FILE``) are left to it,
    so Bürger-ID reads and checks them itself.
    """
    demo_defaults: dict[str, str | int] = {
        "DATABASE_URL": f"sqlite:///{settings.instance / 'idserver.sqlite3'}",
        "KEYS_DIR": str(settings.root / "keys"),
        # A person copying the phone URL into a terminal needs longer than the 5 s a camera
        # needs; the demo relaxes the QR freshness window (production keeps the default).
        "QR_MAX_AGE_SECONDS": 60,
        # The letterhead of activation letters and the clerk console: the demo residents' city.
        **DEMO_OFFICE,
    }
    config: dict[str, str | int] = {"ISSUER": settings.issuer}
    if settings.isolated:  # the scratch demo of --check: nothing shared with a running one
        return {**config, **demo_defaults, **ISOLATED}
    for name, value in demo_defaults.items():
        if not {f"IDSERVER_{name}", f"IDSERVER_{name}_FILE"} & os.environ.keys():
            config[name] = value
    return config


def idp_environment(settings: DemoSettings) -> dict[str, str]:
    config = idp_config(settings)
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not (
            settings.isolated
            and name.startswith("IDSERVER_")
            and name.removesuffix("_FILE")[len("IDSERVER_") :] in config
        )
    }
    return {**inherited, **{f"IDSERVER_{name}": str(value) for name, value in config.items()}}


def _idserver_command() -> list[str]:
    script = BIN / "idserver"
    return [str(script)] if script.exists() else [sys.executable, "-m", "idserver.cli"]


def idp_serve_command(settings: DemoSettings) -> list[str]:
    """``idserver serve`` on the demo's port (run with ``idp_environment``)."""
    port = str(settings.ports["idp"])
    return [*_idserver_command(), "serve", "--host", "127.0.0.1", "--port", port]


def check_idp_settings(settings: DemoSettings) -> None:
    """Refuse unusable IDSERVER_* settings before any work, naming every one."""
    effective = effective_config(idp_config(settings), instance_path=str(settings.instance))
    if effective.problems:
        raise IdpSettingsRefused(list(effective.problems) + list(effective.warnings))


def upgrade_schema(settings: DemoSettings) -> None:
    """``idserver db upgrade``: create or upgrade Bürger-ID's schema."""
    result = subprocess.run(  # noqa: S603 -- our own console script, fixed arguments
        [*_idserver_command(), "db", "upgrade"],
        env=idp_environment(settings),
        cwd=settings.root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise DemoError(f"idserver db upgrade failed:\n{result.stdout}{result.stderr}")


def register_saml_portal(settings: DemoSettings, kind: str, metadata_file: Path) -> None:
    """``idserver saml-sp add --metadata FILE``: register (or refresh) a SAML portal."""
    result = subprocess.run(  # noqa: S603 -- our own console script, fixed arguments
        [
            *_idserver_command(),
            "saml-sp",
            "add",
            "--metadata",
            str(metadata_file),
            "--name",
            SAML_NAMES[kind],
        ],
        env=idp_environment(settings),
        cwd=settings.root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise DemoError(f"idserver saml-sp add failed:\n{result.stdout}{result.stderr}")


# -- clients and residents --------------------------------------------------------------------
def _ensure_clients(settings: DemoSettings) -> dict[str, dict[str, str]]:
    """Both portals as clients; registered once, redirect and logout URIs (the back-channel
    one too) kept in step with the ports."""
    path = settings.clients_file
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = {}
    clients: dict[str, dict[str, str]] = {}
    for kind in KINDS:
        base_url = settings.portal_url(kind)
        redirect_uris = [f"{base_url}/callback"]
        logout_uris = [f"{base_url}/logged-out"]
        backchannel_uri = f"{base_url}/backchannel-logout"
        entry = known.get(kind) or {}
        stored = db.session.get(Client, entry["client_id"]) if entry.get("client_id") else None
        if stored is None or not stored.check_client_secret(entry.get("client_secret", "")):
            client, secret = register_client(
                name=CLIENT_NAMES[kind],
                redirect_uris=redirect_uris,
                post_logout_redirect_uris=logout_uris,
                scope=load_portal(kind).scope,
                backchannel_logout_uri=backchannel_uri,
            )
            assert secret is not None
            entry = {"client_id": client.client_id, "client_secret": secret}
        elif (
            stored.redirect_uris != redirect_uris
            or stored.post_logout_redirect_uris != logout_uris
            or stored.backchannel_logout_uri != backchannel_uri
        ):
            stored.redirect_uris = redirect_uris  # the demo's ports changed since last time
            stored.post_logout_redirect_uris = logout_uris
            stored.backchannel_logout_uri = backchannel_uri
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
                link=activation_link(activation_url(record), code),
            )
        )
    return letters


def prepare(settings: DemoSettings) -> Preparation:
    """Schema, clients, residents and activation codes; safe to run again and again."""
    settings.instance.mkdir(mode=0o700, parents=True, exist_ok=True)
    upgrade_schema(settings)
    app = create_app(idp_config(settings))
    try:
        with app.app_context():
            clients = _ensure_clients(settings)
            letters = _ensure_residents()
    finally:
        with app.app_context():
            db.engine.dispose()
    return Preparation(clients=clients, letters=letters)
