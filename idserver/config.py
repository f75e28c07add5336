"""Every setting of Bürger-ID, its default and its meaning.

Settings come from environment variables named ``IDSERVER_<NAME>``. The defaults run a local
demo (SQLite under ``instance/``, keys created on first start). With ``IDSERVER_ENV=production``
the server refuses to start while any demo default that weakens security is still in place.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

PREFIX = "IDSERVER_"
DEMO_SECRET_KEY = "demo-secret-key-change-me"  # noqa: S105 -- the known value production refuses
ATTESTATION_POLICIES = ("none", "self", "allowlist", "trusted")
PROXIMITY_POLICIES = ("warn", "deny")


class ConfigError(ValueError):
    """A setting is missing, malformed, or unsafe for the chosen mode."""


def _bool(value: str) -> bool:
    if value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if value.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    doc: str
    parse: Callable[[str], Any] = str
    secret: bool = False  # never printed; may come from a file (IDSERVER_<NAME>_FILE)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "ENV", "development", "`development` or `production`; production refuses demo defaults."
    ),
    Setting(
        "ISSUER", "http://localhost:5000", "Public base URL; the OIDC `iss` and WebAuthn origin."
    ),
    Setting(
        "DATABASE_URL",
        "",
        "SQLAlchemy URL. Empty: SQLite file `instance/idserver.sqlite3`.",
    ),
    Setting(
        "KEYS_DIR",
        "keys",
        "Keys folder of earlier versions (`keys.json`, `*.pem`, `pairwise-salt.hex`): "
        "imported into the database on the first start that finds no keys there, and may be "
        "deleted afterwards. The keys now live in the database.",
    ),
    Setting(
        "KEY_ENCRYPTION_KEY",
        "",
        "Key-encryption key (KEK): 32 random bytes in base64 (`idserver keys new-kek`), the same "
        "on every instance; seals the signing keys and the pairwise salt in the database. "
        "Required in production; development derives one from SECRET_KEY.",
        secret=True,
    ),
    Setting(
        "KEYS_REFRESH_SECONDS",
        10,
        "Each worker re-reads the signing keys at least this often, so a rotation made by "
        "another instance reaches its JWKS and its tokens.",
        int,
    ),
    Setting(
        "SECRET_KEY",
        DEMO_SECRET_KEY,
        "Secret for session cookies, QR-code MACs and WebAuthn user handles.",
    ),
    Setting("RP_ID", "", "WebAuthn RP ID. Empty: the issuer's host name."),
    Setting("RP_NAME", "Bürger-ID", "Name the phone shows when it creates a passkey."),
    Setting(
        "ALLOWED_ORIGINS",
        [],
        "Extra WebAuthn origins, comma-separated, e.g. native apps' `android:apk-key-hash:…`.",
        _list,
    ),
    Setting("ACTIVATION_TTL_DAYS", 14, "Days an activation code stays valid.", int),
    Setting("ACTIVATION_MAX_ATTEMPTS", 5, "Wrong tries after which one code is blocked.", int),
    Setting(
        "ACTIVATION_MAX_ATTEMPTS_PER_ADDRESS",
        20,
        "Wrong activation tries per client address per hour.",
        int,
    ),
    Setting("LOGIN_TTL_SECONDS", 120, "Lifetime of a QR-code login transaction.", int),
    Setting("QR_STEP_SECONDS", 1, "The animated QR code changes this often.", int),
    Setting("QR_MAX_AGE_SECONDS", 5, "A scanned QR code older than this is refused.", int),
    Setting("CEREMONY_TTL_SECONDS", 300, "Lifetime of a WebAuthn challenge.", int),
    Setting(
        "ATTESTATION_POLICY",
        "none",
        "`none` (any authenticator), `self` (a verified attestation statement, self attestation "
        "allowed), `allowlist` (attested AAGUIDs from AAGUID_ALLOWLIST) or `trusted` (a chain to "
        "a known or ATTESTATION_ROOTS root and an AAGUID from AAGUID_ALLOWLIST).",
    ),
    Setting(
        "AAGUID_ALLOWLIST", [], "Authenticator AAGUIDs accepted under `allowlist`/`trusted`.", _list
    ),
    Setting(
        "ATTESTATION_ROOTS",
        "",
        "PEM file or folder of attestation root certificates trusted under `trusted`.",
    ),
    Setting("ACCESS_TOKEN_TTL_SECONDS", 600, "Lifetime of access tokens.", int),
    Setting("ID_TOKEN_TTL_SECONDS", 600, "Lifetime of ID tokens.", int),
    Setting("AUTH_CODE_TTL_SECONDS", 60, "Lifetime of authorization codes.", int),
    Setting("SESSION_TTL_SECONDS", 1800, "Lifetime of a citizen's session at Bürger-ID.", int),
    Setting("SESSION_IDLE_SECONDS", 900, "A session unused this long ends (idle timeout).", int),
    Setting(
        "CLERK_SESSION_IDLE_SECONDS",
        600,
        "Idle timeout of a clerk's session (privileged); the shorter of this and "
        "SESSION_IDLE_SECONDS applies.",
        int,
    ),
    Setting(
        "REDIS_URL",
        "",
        "Redis for counters all workers share (rate limits). Empty: the database.",
    ),
    Setting(
        "RATE_LIMIT_ACTIVATION",
        "10/minute;50/hour",
        "Activation attempts (wrong codes and started enrolments) per client address.",
    ),
    Setting("RATE_LIMIT_LOGIN", "30/minute;300/hour", "New QR-code logins per client address."),
    Setting("RATE_LIMIT_APPROVAL", "10/minute;60/hour", "Approved logins per citizen."),
    Setting("RATE_LIMIT_TOKEN", "20/minute;200/hour", "Failed token requests per client address."),
    Setting(
        "RATE_LIMIT_CLERK_SEARCH",
        "20/minute;200/hour",
        "Resident searches in the clerk console per clerk (against enumeration).",
    ),
    Setting("MAX_CHALLENGES_PER_LOGIN", 5, "WebAuthn challenges one login may hand out.", int),
    Setting(
        "PROXIMITY_POLICY",
        "warn",
        "When the phone that scans a QR code is in another network than the computer that shows "
        "it (the QR-relay attack): `warn` (the phone warns the citizen prominently) or `deny` "
        "(the login is refused). A relying party may override it (`idserver client add "
        "--proximity-policy`).",
    ),
    Setting(
        "PROXIMITY_IPV4_PREFIX",
        24,
        "IPv4 addresses of phone and computer in the same /N count as one network.",
        int,
    ),
    Setting(
        "PROXIMITY_IPV6_PREFIX",
        56,
        "IPv6 addresses of phone and computer in the same /N count as one network.",
        int,
    ),
    Setting("AUDIT_CHECKPOINT_EVERY", 100, "Sign the audit chain's head every N events.", int),
    Setting(
        "RETENTION_DAYS",
        90,
        "Days after a resident is deleted until `idserver citizen purge` erases their data.",
        int,
    ),
    Setting(
        "MUNICIPALITY_NAME",
        "Stadt Musterstadt",
        "The municipality's name: letterhead of activation letters and the clerk console.",
    ),
    Setting("OFFICE_NAME", "Bürgerbüro", "The citizens' office that sends activation letters."),
    Setting(
        "OFFICE_STREET",
        "Marktplatz 1",
        "The office's street address: letters' return address, and clerks' address of record.",
    ),
    Setting("OFFICE_POSTCODE", "12345", "The office's postcode (see OFFICE_STREET)."),
    Setting("OFFICE_CITY", "Musterstadt", "The office's town (see OFFICE_STREET)."),
    Setting(
        "OFFICE_CONTACT",
        "",
        "How residents reach the office (phone, e-mail, opening hours); printed on letters.",
    ),
    Setting(
        "LETTER_FONT_DIR",
        "/usr/share/fonts/truetype/dejavu",
        "Folder with DejaVuSans.ttf, DejaVuSans-Bold.ttf and DejaVuSansMono.ttf for letters. "
        "Without them letters use PDF core fonts (Latin-1 only; other letters are simplified).",
    ),
    Setting(
        "LONG_POLL_SECONDS",
        150,
        "Longest hold of a waiting desktop's request; it answers at once when its login changes "
        "or ends, so the default outlasts a login and a desktop asks again only after news.",
        int,
    ),
    Setting(
        "LONG_POLL_KEEPALIVE_SECONDS",
        20,
        "While a desktop's request is held, a blank is sent this often, so proxies with a read "
        "timeout above it keep the request open.",
        int,
    ),
    Setting("TRUST_PROXY", False, "Trust one X-Forwarded-For/-Proto hop (behind a proxy).", _bool),
    Setting("TIMEZONE", "Europe/Berlin", "Time zone of dates shown to people (pages, letters)."),
    Setting("LOG_LEVEL", "INFO", "Python logging level."),
)


def load_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read every setting from ``environ`` (default: the process environment)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = environ.get(PREFIX + setting.name)
        if raw is None:
            values[setting.name] = setting.default
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{PREFIX}{setting.name}: {exc}") from exc
    return values


def derive_defaults(config: dict[str, Any], instance_path: str) -> None:
    """Fill in settings whose default depends on others."""
    config["ISSUER"] = config["ISSUER"].rstrip("/")
    if not config["DATABASE_URL"]:
        path = os.path.join(instance_path, "idserver.sqlite3")
        config["DATABASE_URL"] = f"sqlite:///{path}"
    if not config["RP_ID"]:
        config["RP_ID"] = urlsplit(config["ISSUER"]).hostname or ""


def validate_config(config: Mapping[str, Any]) -> None:
    """Refuse settings that cannot work, and demo defaults in production."""
    issuer = urlsplit(config["ISSUER"])
    if issuer.scheme not in ("http", "https") or not issuer.hostname:
        raise ConfigError("IDSERVER_ISSUER must be an absolute http(s) URL")
    if issuer.query or issuer.fragment:
        raise ConfigError("IDSERVER_ISSUER must not have a query or fragment")
    if config["ENV"] not in ("development", "production"):
        raise ConfigError("IDSERVER_ENV must be 'development' or 'production'")
    if config["ATTESTATION_POLICY"] not in ATTESTATION_POLICIES:
        raise ConfigError(f"IDSERVER_ATTESTATION_POLICY must be one of {ATTESTATION_POLICIES}")
    if config["ATTESTATION_POLICY"] in ("allowlist", "trusted") and not config["AAGUID_ALLOWLIST"]:
        raise ConfigError(
            f"IDSERVER_ATTESTATION_POLICY={config['ATTESTATION_POLICY']} "
            "needs IDSERVER_AAGUID_ALLOWLIST"
        )
    if config["PROXIMITY_POLICY"] not in PROXIMITY_POLICIES:
        raise ConfigError(f"IDSERVER_PROXIMITY_POLICY must be one of {PROXIMITY_POLICIES}")
    if not 8 <= config["PROXIMITY_IPV4_PREFIX"] <= 32:
        raise ConfigError("IDSERVER_PROXIMITY_IPV4_PREFIX must be between 8 and 32")
    if not 16 <= config["PROXIMITY_IPV6_PREFIX"] <= 128:
        raise ConfigError("IDSERVER_PROXIMITY_IPV6_PREFIX must be between 16 and 128")
    if config["ATTESTATION_ROOTS"] and not os.path.exists(config["ATTESTATION_ROOTS"]):
        raise ConfigError("IDSERVER_ATTESTATION_ROOTS names no file or folder")
    rp_id = config["RP_ID"]
    host = issuer.hostname or ""
    if host != rp_id and not host.endswith("." + rp_id):
        raise ConfigError("IDSERVER_RP_ID must be the issuer's host or a parent domain of it")
    if config["QR_MAX_AGE_SECONDS"] < config["QR_STEP_SECONDS"]:
        raise ConfigError("IDSERVER_QR_MAX_AGE_SECONDS must be at least IDSERVER_QR_STEP_SECONDS")
    if config["LONG_POLL_SECONDS"] < 1 or config["LONG_POLL_KEEPALIVE_SECONDS"] < 1:
        raise ConfigError(
            "IDSERVER_LONG_POLL_SECONDS and IDSERVER_LONG_POLL_KEEPALIVE_SECONDS must be at least 1"
        )
    if config["KEY_ENCRYPTION_KEY"]:
        from .keys.sealing import parse_kek

        try:
            parse_kek(config["KEY_ENCRYPTION_KEY"])
        except ValueError as exc:
            raise ConfigError(f"IDSERVER_KEY_ENCRYPTION_KEY {exc}") from exc
    if config["KEYS_REFRESH_SECONDS"] < 0:
        raise ConfigError("IDSERVER_KEYS_REFRESH_SECONDS must not be negative")
    if config["ENV"] != "production":
        return
    if config["SECRET_KEY"] == DEMO_SECRET_KEY or len(config["SECRET_KEY"]) < 32:
        raise ConfigError("production needs IDSERVER_SECRET_KEY: 32 or more random characters")
    if issuer.scheme != "https" and host not in ("localhost", "127.0.0.1"):
        raise ConfigError("production needs an https IDSERVER_ISSUER")
    if config["DATABASE_URL"].startswith("sqlite") and not os.environ.get(PREFIX + "DATABASE_URL"):
        raise ConfigError("production needs an explicit IDSERVER_DATABASE_URL")
    if not config["KEY_ENCRYPTION_KEY"]:
        raise ConfigError(
            "production needs IDSERVER_KEY_ENCRYPTION_KEY (32 random bytes in base64; "
            "`idserver keys new-kek` makes one), the same on every instance"
        )


def _markdown_default(value: Any) -> str:
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, list):
        return f"`{','.join(value)}`" if value else "(empty)"
    if value == "":
        return "(empty)"
    return f"`{value}`"


def settings_markdown() -> str:
    """Every setting as a Markdown table, for docs/operations.md.

    ``python -m idserver.config`` prints it.
    """
    lines = ["| setting | default | meaning |", "| --- | --- | --- |"]
    for setting in SETTINGS:
        default = _markdown_default(setting.default).replace("|", "\\|")
        meaning = setting.doc.replace("|", "\\|")
        lines.append(f"| `{PREFIX}{setting.name}` | {default} | {meaning} |")
    return "\n".join(lines) + "\n"


SETTINGS_BLOCK = re.compile(r"(<!-- settings:start -->\n).*?(<!-- settings:end -->)", re.S)


def with_settings_table(text: str) -> str:
    """``text`` with the block between the settings markers replaced by the current table."""
    return SETTINGS_BLOCK.sub(lambda m: m.group(1) + settings_markdown() + m.group(2), text)


if __name__ == "__main__":
    print(settings_markdown(), end="")
