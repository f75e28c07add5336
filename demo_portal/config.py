"""Every setting of a demo portal, its default and its meaning.

Each portal reads ``PORTAL_<KIND>_<NAME>`` from the environment (``PORTAL_PARKING_ISSUER``,
``PORTAL_JOBS_CLIENT_ID`` …); a dict given to ``create_portal`` overrides those. The
portals share no setting: each is its own relying party with its own registration. The OpenID
Connect portals (``KINDS``) need a client; the SAML portal (``SAML_KINDS``) needs none: it
signs with its own key and Bürger-ID knows it by its metadata.
"""

from __future__ import annotations

import os
import shutil
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "ALL_KINDS",
    "DEFAULT_PORTS",
    "KINDS",
    "SAML_KINDS",
    "SETTINGS",
    "ConfigError",
    "load_config",
    "started_kinds",
    "validate_config",
]

KINDS = ("parking", "jobs")  # OpenID Connect
SAML_KINDS = ("dogtax",)
ALL_KINDS = KINDS + SAML_KINDS
NO_XMLSEC = (
    "xmlsec1 not found: the SAML portal (Hundesteuer-Anmeldung) is not started; "
    "install it to see SAML too (Debian/Ubuntu: apt-get install xmlsec1)"
)
DEFAULT_PORTS = {"parking": 5001, "jobs": 5002, "dogtax": 5003}
LOOPBACK = ("localhost", "127.0.0.1", "::1")


def started_kinds() -> tuple[str, ...]:
    """The portals the demo runs: the SAML one only where xmlsec1, which pysaml2 signs and
    checks signatures with, is installed (``make demo`` needs nothing but Python and make)."""
    return ALL_KINDS if shutil.which("xmlsec1") else KINDS


class ConfigError(ValueError):
    """A setting is missing or malformed."""


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    doc: str


SETTINGS: tuple[Setting, ...] = (
    Setting("ISSUER", "http://localhost:5000", "Bürger-ID's issuer URL; discovery is read there."),
    Setting("CLIENT_ID", "", "The client_id Bürger-ID registered for this portal."),
    Setting("CLIENT_SECRET", "", "Its client secret (client_secret_basic)."),
    Setting("BASE_URL", "", "This portal's public URL. Empty: http://localhost:<5001|5002>."),
    Setting("DATABASE_URL", "", "SQLAlchemy URL. Empty: SQLite file in the instance folder."),
    Setting(
        "SECRET_KEY", "", "Cookie signing key. Empty: a random key kept in the instance folder."
    ),
    Setting("INSTANCE_PATH", "", "Folder for database and keys. Empty: instance/<kind>."),
    Setting("TIMEZONE", "Europe/Berlin", "IANA time zone in which pages show times."),
)


def prefix(kind: str) -> str:
    return f"PORTAL_{kind.upper()}_"


def load_config(kind: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every setting of portal ``kind`` from ``environ`` (default: the process environment)."""
    if kind not in ALL_KINDS:
        raise ConfigError(f"unknown portal {kind!r}; choose one of {', '.join(ALL_KINDS)}")
    environ = os.environ if environ is None else environ
    return {s.name: environ.get(prefix(kind) + s.name, s.default) for s in SETTINGS}


def derive_defaults(config: dict[str, Any], kind: str, default_instance_path: str) -> None:
    """Fill in settings whose default depends on the portal or on other settings."""
    config["ISSUER"] = str(config["ISSUER"]).rstrip("/")
    config["BASE_URL"] = str(
        config["BASE_URL"] or f"http://localhost:{DEFAULT_PORTS[kind]}"
    ).rstrip("/")
    config["INSTANCE_PATH"] = os.path.abspath(
        config["INSTANCE_PATH"] or os.path.join(default_instance_path, kind)
    )
    if not config["DATABASE_URL"]:
        path = os.path.join(config["INSTANCE_PATH"], f"{kind}.sqlite3")
        config["DATABASE_URL"] = f"sqlite:///{path}"


def _check_url(config: Mapping[str, Any], kind: str, name: str) -> None:
    parts = urlsplit(config[name])
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{prefix(kind)}{name} must be an absolute http(s) URL")
    if parts.query or parts.fragment:
        raise ConfigError(f"{prefix(kind)}{name} must not have a query or fragment")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        raise ConfigError(f"{prefix(kind)}{name} must use https unless it is localhost")


def validate_config(config: Mapping[str, Any], kind: str) -> None:
    """Refuse settings that cannot work, naming the variable to fix."""
    _check_url(config, kind, "ISSUER")
    _check_url(config, kind, "BASE_URL")
    try:
        zoneinfo.ZoneInfo(str(config["TIMEZONE"]))
    except (ValueError, zoneinfo.ZoneInfoNotFoundError) as exc:
        raise ConfigError(
            f"{prefix(kind)}TIMEZONE must be an IANA time zone such as Europe/Berlin"
        ) from exc
    if kind in SAML_KINDS:
        return  # a SAML service provider has no client registration
    for name in ("CLIENT_ID", "CLIENT_SECRET"):
        if not config[name]:
            raise ConfigError(
                f"{prefix(kind)}{name} is not set: register the portal at Bürger-ID "
                "(`idserver client add`) or start the whole demo with `python -m demo_portal`"
            )
