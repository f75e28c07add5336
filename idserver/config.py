"""Every setting of Bürger-ID, its default and its meaning.

Settings come from environment variables named ``IDSERVER_<NAME>``; a secret setting may instead
name a file holding its value in ``IDSERVER_<NAME>_FILE`` (Docker and Kubernetes secrets). The
defaults run a local demo (SQLite under ``instance/``, keys created on first start). With
``IDSERVER_ENV=production`` the server refuses to start while any demo default that weakens
security is still in place, or while an ``IDSERVER_*`` variable names no setting (a misspelling
would otherwise silently leave a default in place; development only warns).

Every problem is collected before the start is refused, so an operator sees them all at once,
one line each (``ConfigError.problems``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import difflib
import logging
import os
import re
import zoneinfo
from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from urllib.parse import urlsplit

from flask import current_app

PREFIX = "IDSERVER_"
FILE_SUFFIX = "_FILE"
# Not settings of the server: the test suite's databases and the soft phone's options.
RESERVED_PREFIXES = (PREFIX + "TEST_", PREFIX + "PHONE_")
DEMO_SECRET_KEY = "demo-secret-key-change-me"  # noqa: S105 -- the known value production refuses
ATTESTATION_POLICIES = ("none", "self", "allowlist", "trusted")
PROXIMITY_POLICIES = ("warn", "deny")
REDIS_SCHEMES = ("redis", "rediss")
LOG_FORMATS = ("text", "json")
BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 §2.1 b64token

# What the server does, fixed in code rather than set (discovery announces it).
SIGNING_ALGORITHM = "ES256"  # the default: audit checkpoints, signed userinfo, ID tokens
# A client's ``id_token_signed_response_alg``; the key store keeps an active key for each.
# RS256 because OIDC Discovery §3 makes it mandatory to offer (and openid-client expects it).
ID_TOKEN_ALGORITHMS = (SIGNING_ALGORITHM, "RS256")
RSA_KEY_SIZE = 2048  # bits; NIST SP 800-57 rates 2048 fine through 2030
ACR_PHONE = "urn:buergerid:acr:phone-number-matching"  # approved in the app, number matched
ACR_PASSKEY = "urn:buergerid:acr:passkey"  # a passkey assertion made on the computer
# The method's names: the session's `acr`; in ID tokens until assurance levels replaced them.
ACR_VALUES = (ACR_PHONE, ACR_PASSKEY)
# Assurance levels, lowest first (eIDAS Regulation 910/2014 Art. 8); see idserver/assurance.py.
ASSURANCE_LEVELS = ("low", "substantial", "high")


class ConfigError(ValueError):
    """A setting is missing, malformed, or unsafe for the chosen mode.

    ``problems`` holds one readable line per problem; ``str()`` joins them.
    """

    def __init__(self, problems: str | Iterable[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


def issuer_is_https(config: Mapping[str, Any] | None = None) -> bool:
    """Whether browsers reach the server over https: ``__Host-`` cookies, ``Secure``, HSTS.

    ``config``: the application's settings (default: the current application's).
    """
    config = current_app.config if config is None else config
    return str(config["ISSUER"]).startswith("https://")


DURATION_UNITS = {"_SECONDS": "seconds", "_HOURS": "hours", "_DAYS": "days"}


def duration(name: str, config: Mapping[str, Any] | None = None) -> dt.timedelta:
    """The setting ``name`` (``…_SECONDS``, ``…_HOURS`` or ``…_DAYS``) as a time span.

    ``config``: the application's settings (default: the current application's).
    """
    config = current_app.config if config is None else config
    for suffix, unit in DURATION_UNITS.items():
        if name.endswith(suffix):
            return dt.timedelta(**{unit: config[name]})
    raise KeyError(f"{name} is not a duration setting")


def whole_minutes(name: str, config: Mapping[str, Any] | None = None) -> int:
    """A duration setting in whole minutes, at least one: how pages state a time limit."""
    return max(1, round(duration(name, config).total_seconds() / 60))


def parse_kek(value: str) -> bytes:
    """The 32 bytes of a key-encryption key (``KEY_ENCRYPTION_KEY``) written in base64
    (standard or URL-safe, padding optional); ``keys.sealing`` seals with it."""
    text = value.strip().replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("must be 32 random bytes in base64") from exc
    if len(raw) != 32:
        raise ValueError(f"must be 32 random bytes in base64, not {len(raw)} bytes")
    return raw


def _bool(value: str) -> bool:
    if value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if value.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"must be true or false, not {value!r}")


def _list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


@dataclass(frozen=True)
class Setting:
    """One setting. ``secret``: masked by ``idserver config check``, also read from a file
    named by ``IDSERVER_<NAME>_FILE``. ``minimum``: the least value of a whole-number setting."""

    name: str
    default: Any
    doc: str
    parse: Callable[[str], Any] = str
    secret: bool = False
    minimum: int = 1


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
        secret=True,
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
        minimum=0,
    ),
    Setting(
        "SECRET_KEY",
        DEMO_SECRET_KEY,
        "Secret for session cookies, QR-code MACs and WebAuthn user handles.",
        secret=True,
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
    Setting(
        "PAR_TTL_SECONDS",
        60,
        "Lifetime of a pushed authorization request's request_uri (RFC 9126).",
        int,
    ),
    Setting(
        "REQUIRE_PUSHED_AUTHORIZATION_REQUESTS",
        False,
        "Every client must push its authorization requests to /par first (RFC 9126 §5); "
        "per client: `client add/update --require-par`.",
        _bool,
    ),
    Setting(
        "REFRESH_TOKEN_TTL_DAYS",
        30,
        "Absolute lifetime of a refresh token family, from the login that started it; "
        "rotation does not extend it.",
        int,
    ),
    Setting(
        "REFRESH_TOKEN_IDLE_DAYS",
        7,
        "A refresh token not used this long expires (idle timeout); each use starts it anew.",
        int,
    ),
    Setting(
        "LOGOUT_DELIVERY_TIMEOUT_SECONDS",
        3,
        "How long one back-channel logout POST to a relying party may take.",
        int,
    ),
    Setting(
        "LOGOUT_DELIVERY_ATTEMPTS",
        6,
        "Back-channel logout deliveries tried this often before they are given up.",
        int,
    ),
    Setting(
        "LOGOUT_RETRY_SECONDS",
        30,
        "Wait before the first retry of a failed back-channel logout; it doubles on each retry.",
        int,
    ),
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
        secret=True,
    ),
    Setting(
        "RATE_LIMIT_ACTIVATION",
        "10/minute;50/hour",
        "Activation attempts (wrong codes and started enrolments) per client address.",
    ),
    Setting("RATE_LIMIT_LOGIN", "30/minute;300/hour", "New QR-code logins per client address."),
    Setting("RATE_LIMIT_APPROVAL", "10/minute;60/hour", "Approved logins per citizen."),
    Setting(
        "RATE_LIMIT_TOKEN",
        "20/minute;200/hour",
        "Failed token requests per client address (also at /revoke, /introspect and /par).",
    ),
    Setting(
        "RATE_LIMIT_CLERK_SEARCH",
        "20/minute;200/hour",
        "Resident searches in the clerk console per clerk (against enumeration).",
    ),
    Setting("MAX_CHALLENGES_PER_LOGIN", 5, "WebAuthn challenges one login may hand out.", int),
    Setting(
        "PAIRING_TTL_SECONDS",
        300,
        "Lifetime of an “Add another device” pairing, from its QR code to the new passkey.",
        int,
    ),
    Setting(
        "MAX_CHALLENGES_PER_PAIRING",
        5,
        "WebAuthn challenges one pairing may hand out for the citizen's confirmation.",
        int,
    ),
    Setting(
        "PROXIMITY_POLICY",
        "warn",
        "When the phone that scans a QR code is in another network than the computer that shows "
        "it (the QR-relay attack): `warn` (the phone warns the citizen prominently) or `deny` "
        "(the login is refused). A relying party may override it (`idserver client add "
        "--proximity-policy`).",
    ),
    Setting(
        "ASSURANCE_IN_PERSON",
        "low",
        "Assurance level of identity proofing by a clerk in person with an identity document "
        "(`low`, `substantial`, `high`). Raise it only after a formal assessment; a login's "
        "level is the lower of proofing and device (docs/relying-parties.md).",
    ),
    Setting(
        "ASSURANCE_HARDWARE_KEY",
        "low",
        "Assurance level of a device-bound passkey whose attestation proved a hardware key.",
    ),
    Setting(
        "ASSURANCE_SYNCED_PASSKEY",
        "low",
        "Assurance level of any other passkey (it may be synced to other devices).",
    ),
    Setting("ASSURANCE_APP_KEY", "low", "Assurance level of a phone app's key."),
    Setting(
        "VERIFIED_CLAIMS_TRUST_FRAMEWORK",
        "de_aml",
        "Trust framework named in `verified_claims` (OpenID Connect for Identity Assurance 1.0) "
        "for residents a clerk identified in person with an identity document: `de_aml`, the "
        "identification of the German Anti-Money Laundering Act (GwG §12, §13: a valid official "
        "photo ID checked in person). Empty: no `verified_claims`.",
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
    Setting(
        "AUDIT_CHECKPOINT_EVERY", 100, "Sign the audit chain's head every N events.", int, minimum=0
    ),
    Setting(
        "RETENTION_DAYS",
        90,
        "Days after a resident is deleted until the purge erases their data; also how long "
        "used and expired activation codes stay listed in the clerk console.",
        int,
        minimum=0,
    ),
    Setting(
        "PURGE_AFTER_HOURS",
        24,
        "Hours after a login, code, token, challenge, pairing or session has ended (used, "
        "expired, revoked) until the purge deletes it (IP addresses, user agents). 0: at once.",
        int,
        minimum=0,
    ),
    Setting(
        "PURGE_INTERVAL_SECONDS",
        3600,
        "`idserver serve` runs the purge this often (one instance at a time). 0: never; run "
        "`idserver maintenance purge` from cron instead.",
        int,
        minimum=0,
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
    Setting("OFFICE_POSTCODE", "12345", "The office's postcode, five digits (see OFFICE_STREET)."),
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
    Setting(
        "METRICS_TOKEN",
        "",
        "Secret bearer token Prometheus sends to scrape `/metrics` (production: 32 or more "
        "random characters). Empty: `/metrics` answers 404.",
        secret=True,
    ),
    Setting(
        "SAML_WANT_AUTHN_REQUESTS_SIGNED",
        True,
        "Refuse SAML AuthnRequests (and LogoutRequests) that are not signed with a key of the "
        "service provider's metadata.",
        _bool,
    ),
    Setting(
        "SAML_REQUEST_MAX_AGE_SECONDS",
        300,
        "A SAML request whose IssueInstant is older than this (or as far in the future) is "
        "refused; its ID is remembered this long, so it is accepted once.",
        int,
    ),
    Setting("TRUST_PROXY", False, "Trust one X-Forwarded-For/-Proto hop (behind a proxy).", _bool),
    Setting("TIMEZONE", "Europe/Berlin", "Time zone of dates shown to people (pages, letters)."),
    Setting("LOG_LEVEL", "INFO", "`DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`.", str.upper),
    Setting(
        "LOG_FORMAT",
        "",
        "`text` (a line for a terminal) or `json` (JSON lines for a collector), for the "
        "application and access log alike. Empty: `json` in production, else `text`.",
    ),
)


@dataclass
class ConfigReading:
    """What the environment says: every setting's value, its source, and what is wrong.

    A setting whose variable is malformed keeps its default (and a line in ``problems``), so the
    checks that follow report only their own problems, not consequences of the first.
    """

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    @property
    def explicit(self) -> set[str]:
        """Settings the operator set to something (not the default, not empty)."""
        return {
            name
            for name, source in self.sources.items()
            if source != "default" and self.values[name] != ""
        }


def read_secret_file(path: str) -> str:
    """A secret file's contents without the one trailing newline that ``echo`` and editors add."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    return text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")


def _raw_value(
    setting: Setting, environ: Mapping[str, str], problems: list[str]
) -> tuple[str | None, str]:
    variable = PREFIX + setting.name
    raw = environ.get(variable)
    path = environ.get(variable + FILE_SUFFIX) if setting.secret else None
    if path is None:
        return raw, "environment"
    if raw is not None:
        problems.append(f"{variable} and {variable}{FILE_SUFFIX} are both set; set only one")
        return None, "default"
    try:
        return read_secret_file(path), "file"
    except OSError as exc:
        problems.append(f"{variable}{FILE_SUFFIX}: cannot read {path!r}: {exc.strerror or exc}")
    except UnicodeDecodeError:
        problems.append(f"{variable}{FILE_SUFFIX}: {path!r} is not UTF-8 text")
    return None, "default"


def known_variables() -> list[str]:
    """Every variable the server reads: the settings and the ``_FILE`` forms of the secret ones."""
    names = [PREFIX + setting.name for setting in SETTINGS]
    return names + [PREFIX + s.name + FILE_SUFFIX for s in SETTINGS if s.secret]


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A line for each ``IDSERVER_*`` variable that names no setting, with the likeliest one."""
    known = known_variables()
    lines = []
    for variable in sorted(environ):
        upper = variable.upper()
        if not upper.startswith(PREFIX) or variable in known or upper.startswith(RESERVED_PREFIXES):
            continue
        base = upper.removesuffix(FILE_SUFFIX)
        if upper.endswith(FILE_SUFFIX) and base in known and upper not in known:
            lines.append(f"{variable}: only secret settings can be read from a file; set {base}")
            continue
        guesses = difflib.get_close_matches(
            upper.removeprefix(PREFIX), [name.removeprefix(PREFIX) for name in known], n=1
        )
        hint = f"; did you mean {PREFIX}{guesses[0]}?" if guesses else ""
        lines.append(f"{variable} is not a known setting{hint}")
    return lines


def read_config(environ: Mapping[str, str] | None = None) -> ConfigReading:
    """Read every setting from ``environ`` (default: the process environment)."""
    environ = os.environ if environ is None else environ
    reading = ConfigReading()
    for setting in SETTINGS:
        reading.values[setting.name] = setting.default
        reading.sources[setting.name] = "default"
        raw, source = _raw_value(setting, environ, reading.problems)
        if raw is None:
            continue
        try:
            reading.values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            if setting.parse is int:
                reading.problems.append(
                    f"{PREFIX}{setting.name} must be a whole number, not {raw!r}"
                )
            else:
                reading.problems.append(f"{PREFIX}{setting.name} {exc}")
            continue
        reading.sources[setting.name] = source
    reading.unknown = unknown_variables(environ)
    return reading


def derive_defaults(config: dict[str, Any], instance_path: str) -> None:
    """Fill in settings whose default depends on others."""
    config["ISSUER"] = config["ISSUER"].rstrip("/")
    if not config["DATABASE_URL"]:
        path = os.path.join(instance_path, "idserver.sqlite3")
        config["DATABASE_URL"] = f"sqlite:///{path}"
    if not config["RP_ID"]:
        try:
            config["RP_ID"] = urlsplit(config["ISSUER"]).hostname or ""
        except ValueError:  # a malformed issuer; reported by config_problems
            config["RP_ID"] = ""
    if not config["LOG_FORMAT"]:
        config["LOG_FORMAT"] = "json" if config["ENV"] == "production" else "text"


def _whole_number_problems(config: Mapping[str, Any]) -> list[str]:
    problems = []
    for setting in SETTINGS:
        value = config[setting.name]
        if setting.parse is int and (
            isinstance(value, bool) or not isinstance(value, int) or value < setting.minimum
        ):
            problems.append(
                f"{PREFIX}{setting.name} must be a whole number of at least {setting.minimum}, "
                f"not {value!r}"
            )
    return problems


def _issuer_problems(config: Mapping[str, Any]) -> list[str]:
    try:
        issuer = urlsplit(config["ISSUER"])
        host = issuer.hostname or ""
        _ = issuer.port  # a malformed port raises here
    except ValueError:
        return ["IDSERVER_ISSUER must be an absolute http(s) URL"]
    if issuer.scheme not in ("http", "https") or not host:
        return ["IDSERVER_ISSUER must be an absolute http(s) URL"]
    if issuer.query or issuer.fragment:
        return ["IDSERVER_ISSUER must not have a query or fragment"]
    problems = []
    rp_id = config["RP_ID"]
    if host != rp_id and not host.endswith("." + rp_id):
        problems.append("IDSERVER_RP_ID must be the issuer's host or a parent domain of it")
    if config["ENV"] == "production" and issuer.scheme != "https":
        if host not in ("localhost", "127.0.0.1"):
            problems.append("production needs an https IDSERVER_ISSUER")
    return problems


def _database_problems(config: Mapping[str, Any]) -> list[str]:
    """The URL parses and names a database whose driver is installed; never echoes the URL."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    from sqlalchemy.exc import NoSuchModuleError

    try:
        url = make_url(config["DATABASE_URL"])
    except ArgumentError:
        return [
            "IDSERVER_DATABASE_URL is not a database URL "
            "(such as postgresql+psycopg://USER:PASSWORD@HOST/DBNAME)"
        ]
    try:
        url.get_dialect().import_dbapi()
    except NoSuchModuleError:
        return [f"IDSERVER_DATABASE_URL names an unknown database {url.drivername!r}"]
    except ImportError:
        return [
            f"IDSERVER_DATABASE_URL needs the Python driver for {url.drivername!r} "
            "(PostgreSQL: pip install 'idserver[postgres]')"
        ]
    return []


def _format_problems(config: Mapping[str, Any]) -> list[str]:
    """Settings with a fixed vocabulary or syntax: modes, levels, zones, URLs, rate limits."""
    from limits import parse_many

    problems = []
    if config["ENV"] not in ("development", "production"):
        problems.append("IDSERVER_ENV must be 'development' or 'production'")
    if config["ATTESTATION_POLICY"] not in ATTESTATION_POLICIES:
        problems.append(
            f"IDSERVER_ATTESTATION_POLICY must be one of {', '.join(ATTESTATION_POLICIES)}"
        )
    elif (
        config["ATTESTATION_POLICY"] in ("allowlist", "trusted") and not config["AAGUID_ALLOWLIST"]
    ):
        problems.append(
            f"IDSERVER_ATTESTATION_POLICY={config['ATTESTATION_POLICY']} "
            "needs IDSERVER_AAGUID_ALLOWLIST"
        )
    if config["PROXIMITY_POLICY"] not in PROXIMITY_POLICIES:
        problems.append(f"IDSERVER_PROXIMITY_POLICY must be one of {', '.join(PROXIMITY_POLICIES)}")
    for setting in SETTINGS:
        if setting.name.startswith("ASSURANCE_") and config[setting.name] not in ASSURANCE_LEVELS:
            problems.append(f"{PREFIX}{setting.name} must be one of {', '.join(ASSURANCE_LEVELS)}")
    if not re.fullmatch(r"[a-z0-9_]*", str(config["VERIFIED_CLAIMS_TRUST_FRAMEWORK"])):
        problems.append(
            "IDSERVER_VERIFIED_CLAIMS_TRUST_FRAMEWORK must be a trust framework identifier "
            "such as de_aml, or empty"
        )
    for name, lowest, highest in (
        ("PROXIMITY_IPV4_PREFIX", 8, 32),
        ("PROXIMITY_IPV6_PREFIX", 16, 128),
    ):
        value = config[name]
        if isinstance(value, int) and not lowest <= value <= highest:
            problems.append(f"{PREFIX}{name} must be between {lowest} and {highest}, not {value}")
    if config["ATTESTATION_ROOTS"] and not os.path.exists(config["ATTESTATION_ROOTS"]):
        problems.append("IDSERVER_ATTESTATION_ROOTS names no file or folder")
    if str(config["LOG_LEVEL"]).upper() not in logging.getLevelNamesMapping():
        problems.append(
            "IDSERVER_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, "
            f"not {config['LOG_LEVEL']!r}"
        )
    if not re.fullmatch(r"[0-9]{5}", str(config["OFFICE_POSTCODE"])):
        # clerks' records carry the office's address, checked like every resident's
        problems.append(
            f"IDSERVER_OFFICE_POSTCODE must be five digits, not {config['OFFICE_POSTCODE']!r}"
        )
    if config["LOG_FORMAT"] not in LOG_FORMATS:
        problems.append(f"IDSERVER_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}")
    if config["METRICS_TOKEN"] and not BEARER_TOKEN.fullmatch(str(config["METRICS_TOKEN"])):
        problems.append(
            "IDSERVER_METRICS_TOKEN may hold only letters, digits and -._~+/ (RFC 6750 b64token)"
        )
    try:
        zoneinfo.ZoneInfo(config["TIMEZONE"])
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        problems.append(f"IDSERVER_TIMEZONE is not a known time zone: {config['TIMEZONE']!r}")
    problems += _database_problems(config)
    if config["REDIS_URL"]:
        try:
            scheme = urlsplit(config["REDIS_URL"]).scheme
        except ValueError:
            scheme = ""
        if scheme not in REDIS_SCHEMES:
            problems.append("IDSERVER_REDIS_URL must be a redis:// or rediss:// URL")
    for setting in SETTINGS:
        if setting.name.startswith("RATE_LIMIT_"):
            try:
                parse_many(str(config[setting.name]))
            except ValueError:
                problems.append(
                    f"{PREFIX}{setting.name} must be limits such as '10/minute;50/hour', "
                    f"not {config[setting.name]!r}"
                )
    if config["KEY_ENCRYPTION_KEY"]:
        try:
            parse_kek(config["KEY_ENCRYPTION_KEY"])
        except ValueError as exc:
            problems.append(f"IDSERVER_KEY_ENCRYPTION_KEY {exc}")
    return problems


def config_problems(config: Mapping[str, Any], *, explicit: Collection[str]) -> list[str]:
    """One line per setting that cannot work, and per demo default left in production.

    ``explicit``: the settings the operator set (production insists on its own database).
    """
    whole_numbers = _whole_number_problems(config)
    problems = whole_numbers + _issuer_problems(config) + _format_problems(config)
    qr_settings_valid = not any("QR_" in line for line in whole_numbers)
    if qr_settings_valid and config["QR_MAX_AGE_SECONDS"] < config["QR_STEP_SECONDS"]:
        problems.append("IDSERVER_QR_MAX_AGE_SECONDS must be at least IDSERVER_QR_STEP_SECONDS")
    if config["ENV"] != "production":
        return problems
    if config["SECRET_KEY"] == DEMO_SECRET_KEY or len(config["SECRET_KEY"]) < 32:
        problems.append("production needs IDSERVER_SECRET_KEY: 32 or more random characters")
    if str(config["DATABASE_URL"]).startswith("sqlite") and "DATABASE_URL" not in explicit:
        problems.append("production needs an explicit IDSERVER_DATABASE_URL")
    if config["METRICS_TOKEN"] and len(config["METRICS_TOKEN"]) < 32:
        problems.append("IDSERVER_METRICS_TOKEN must have 32 or more random characters")
    if not config["KEY_ENCRYPTION_KEY"]:
        problems.append(
            "production needs IDSERVER_KEY_ENCRYPTION_KEY (32 random bytes in base64; "
            "`idserver keys new-kek` makes one), the same on every instance"
        )
    return problems


@dataclass
class EffectiveConfig:
    """The settings a server would run with, where each came from, and what is wrong with them.

    ``problems`` refuse the start; ``warnings`` (unknown variables, in development) do not.
    """

    values: dict[str, Any]
    sources: dict[str, str]
    problems: list[str]
    warnings: list[str]

    def masked(self) -> dict[str, dict[str, Any]]:
        """Every setting's value and source, secrets as ``***`` (``idserver config check``)."""
        shown = {}
        for setting in SETTINGS:
            value = self.values[setting.name]
            if setting.secret and value:
                value = "***"
            shown[PREFIX + setting.name] = {"value": value, "source": self.sources[setting.name]}
        return shown


def effective_config(
    overrides: Mapping[str, Any] | None = None,
    *,
    instance_path: str,
    environ: Mapping[str, str] | None = None,
) -> EffectiveConfig:
    """Read the environment, apply ``overrides`` (``create_app``'s test config), fill in the
    derived defaults, and collect every problem. An unknown ``IDSERVER_*`` variable is a
    problem in production and a warning otherwise."""
    reading = read_config(environ)
    values = {**reading.values, **(overrides or {})}
    sources = {**reading.sources, **dict.fromkeys(overrides or {}, "caller")}
    derive_defaults(values, instance_path)
    problems = reading.problems + config_problems(values, explicit=reading.explicit)
    production = values["ENV"] == "production"
    return EffectiveConfig(
        values=values,
        sources=sources,
        problems=problems + reading.unknown if production else problems,
        warnings=[] if production else reading.unknown,
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
        if setting.secret:
            meaning += (
                f" Secret: or a file holding it, named in `{PREFIX}{setting.name}{FILE_SUFFIX}`."
            )
        lines.append(f"| `{PREFIX}{setting.name}` | {default} | {meaning} |")
    return "\n".join(lines) + "\n"


SETTINGS_BLOCK = re.compile(r"(<!-- settings:start -->\n).*?(<!-- settings:end -->)", re.S)


def with_settings_table(text: str) -> str:
    """``text`` with the block between the settings markers replaced by the current table."""
    return SETTINGS_BLOCK.sub(lambda m: m.group(1) + settings_markdown() + m.group(2), text)


if __name__ == "__main__":
    print(settings_markdown(), end="")
