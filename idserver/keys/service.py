"""Signing keys and the pairwise salt, kept in the database for every instance.

Purposes: ``id_token`` keys sign ID tokens and signed userinfo and are published in the JWKS
(RFC 7517); ``audit`` keys sign the audit log's checkpoints and are never published. Each
purpose has one active key per algorithm: ES256 for both, and RS256 for ID tokens too (a
client's ``id_token_signed_response_alg``, OIDC Discovery §3). Rotation adds a key and makes it
the active one for its algorithm; the previous ID-token key stays published until it is
retired. A retired key is kept to verify what it once
signed (old audit checkpoints, a logout's ``id_token_hint``), but it never signs again and is
never published.

Private keys and the salt are sealed under the key-encryption key (``sealing``). A worker
caches what it opened and re-reads the key table every ``KEYS_REFRESH_SECONDS``, so a rotation
made by another instance reaches its JWKS and its tokens; verification always reads afresh.

``prepare`` runs once per process (at start when the schema exists, else before the first
request): it imports the keys folder of earlier versions into an empty table (``legacy``), then
creates whatever is still missing. Each creation is an insert-if-absent on a unique column
(``active_purpose`` with ``alg``, the secret's name) followed by a re-read, so instances
starting together agree on one key per purpose and algorithm, and one salt. A key missing
from an existing deployment (the RS256 key after an upgrade) is created the same way at its
next start.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from flask import Flask
from flask import current_app
from flask import request
from joserfc.jwk import ECKey
from joserfc.jwk import KeySet
from joserfc.jwk import RSAKey
from sqlalchemy import insert
from sqlalchemy import inspect
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ..config import ID_TOKEN_ALGORITHMS
from ..config import RSA_KEY_SIZE
from ..config import SIGNING_ALGORITHM
from ..config import ConfigError
from ..db import utcnow
from . import legacy
from .errors import KeyStoreError
from .models import ServerSecret
from .models import SigningKey
from .sealing import SealBroken
from .sealing import Sealer
from .sealing import key_encryption_key

ID_TOKEN = "id_token"  # noqa: S105 -- a key purpose, not a secret
AUDIT = "audit"
SAML = "saml"
PURPOSES = (ID_TOKEN, AUDIT, SAML)
# The algorithms each purpose signs with, one active key for each.
ALGORITHMS = {ID_TOKEN: ID_TOKEN_ALGORITHMS, AUDIT: (SIGNING_ALGORITHM,), SAML: ("RS256",)}
# Made when first used (the first SAML request), not at start: most deployments speak OIDC only.
ON_FIRST_USE = (SAML,)
SAML_CERTIFICATE_YEARS = 10
PAIRWISE_SALT = "pairwise_salt"

log = logging.getLogger(__name__)


def _key_label(purpose: str, kid: str) -> str:
    return f"signing-key/{purpose}/{kid}"


def _secret_label(name: str) -> str:
    return f"server-secret/{name}"


def _new_kid() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d") + "-" + secrets.token_hex(4)


PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
Key = ECKey | RSAKey


def _key_type(alg: str) -> type[ECKey] | type[RSAKey]:
    return RSAKey if alg == "RS256" else ECKey


def _generate(alg: str) -> PrivateKey:
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_SIZE)
    return ec.generate_private_key(ec.SECP256R1())


def _public_jwk(kid: str, alg: str, private_key: PrivateKey) -> dict[str, Any]:
    key = _key_type(alg).import_key(private_key.public_key(), {"kid": kid})  # type: ignore[arg-type]
    return dict(key.as_dict(private=False))


def _check_algorithm(purpose: str, alg: str) -> None:
    if purpose not in PURPOSES:
        raise KeyStoreError(f"unknown key purpose {purpose!r}; one of {', '.join(PURPOSES)}")
    if alg not in ALGORITHMS[purpose]:
        raise KeyStoreError(
            f"{purpose} keys sign with {', '.join(ALGORITHMS[purpose])}, not {alg!r}"
        )


def _insert_if_absent(session: Session, model: type[Any], values: Mapping[str, Any]) -> bool:
    """INSERT unless a unique column already holds the value; True if the row was added."""
    dialect = session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        build = postgresql.insert if dialect == "postgresql" else sqlite.insert
        result = session.execute(
            build(model).values(**values).on_conflict_do_nothing(),
            execution_options={"preserve_rowcount": True},  # not kept for INSERT otherwise
        )
        return result.rowcount == 1  # type: ignore[attr-defined]
    try:
        with session.begin_nested():
            session.execute(insert(model).values(**values))
    except IntegrityError:
        return False
    return True


@dataclass
class _Loaded:
    """What one read of the key table gave: opened active keys (by purpose and algorithm)
    and the published JWKs."""

    at: float
    active: dict[tuple[str, str], Key] = field(default_factory=dict)
    published: list[dict[str, Any]] = field(default_factory=list)


# ``audit.service.append_event(session, event, *, actor, data)``: the audit log builds on the
# keys (its checkpoints are signed with them), so the key store is handed its writer.
AuditWriter = Callable[..., object]
# Whether residents are registered already (``citizens.service.has_residents``).
ResidentCheck = Callable[[Session], bool]


class KeyStore:
    """The keys of one deployment, as this process sees them; safe to share between threads."""

    def __init__(
        self, app: Flask, engine: Engine, *, audit: AuditWriter, has_residents: ResidentCheck
    ) -> None:
        self._append_event = audit
        self._has_residents = has_residents
        self.directory = os.path.abspath(app.config["KEYS_DIR"])
        self._engine = engine
        self._sealer = Sealer(key_encryption_key(app.config))
        self._refresh_seconds = app.config["KEYS_REFRESH_SECONDS"]
        self._production = app.config["ENV"] == "production"
        self._lock = threading.RLock()
        self._prepared = False
        self._preparing_thread: int | None = None
        self._loaded: _Loaded | None = None
        self._opened: dict[str, Key] = {}
        self._salt: bytes | None = None

    def _session(self) -> Session:
        return Session(self._engine, expire_on_commit=False)

    # -- first start ---------------------------------------------------------------------
    def prepare(self) -> None:
        """Import the old keys folder or create the first keys and salt, then open them.

        Raises ConfigError (one line) when the KEK does not open the stored keys, and in
        production rather than create a new salt for a database that has residents.
        """
        if self._prepared or self._preparing_thread == threading.get_ident():
            return
        with self._lock:
            if self._prepared:
                return
            self._preparing_thread = threading.get_ident()
            try:
                # Before any write: nothing is sealed under a wrong KEK, and a folder that
                # cannot be imported leaves the database as it was.
                self._check_kek()
                keys, salt = self._read_folder()
                # The audit key before the import: the import is audited, and an audit entry
                # may fall due for a signed checkpoint.
                self._create_first_key(AUDIT, SIGNING_ALGORITHM)
                if keys or salt is not None:
                    self._import_folder(keys, salt)
                for alg in ALGORITHMS[ID_TOKEN]:
                    self._create_first_key(ID_TOKEN, alg)
                self._create_salt()
                self._loaded = self._read()
                for purpose, algs in ALGORITHMS.items():
                    for alg in algs:
                        if purpose in ON_FIRST_USE:
                            continue
                        if (purpose, alg) not in self._loaded.active:
                            raise KeyStoreError(f"the database holds no active {purpose} {alg} key")
                self._open_salt()
                self._prepared = True
            finally:
                self._preparing_thread = None

    def _check_kek(self) -> None:
        """ConfigError unless the KEK opens what the database already holds."""
        with self._session() as session:
            row = session.scalars(select(SigningKey).limit(1)).first()
        if row is not None:
            self._open(row)
        with self._session() as session:
            if session.get(ServerSecret, PAIRWISE_SALT) is not None:
                self._open_salt()

    def _create_first_key(self, purpose: str, alg: str) -> None:
        with self._session() as session:
            query = select(SigningKey.kid).where(
                SigningKey.active_purpose == purpose, SigningKey.alg == alg
            )
            if session.scalars(query).first() is not None:
                return
        kid = _new_kid()
        with self._session() as session, session.begin():
            created = _insert_if_absent(session, SigningKey, self._new_row(kid, purpose, alg=alg))
        if created:
            log.info("created the first %s %s signing key %s", purpose, alg, kid)

    def _new_row(
        self,
        kid: str,
        purpose: str,
        *,
        alg: str = SIGNING_ALGORITHM,
        private_key: PrivateKey | None = None,
        state: str = "active",
    ) -> dict[str, Any]:
        private_key = private_key or _generate(alg)
        der = private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        now = utcnow()
        return {
            "kid": kid,
            "purpose": purpose,
            "alg": alg,
            "active_purpose": purpose if state == "active" else None,
            "public_jwk": _public_jwk(kid, alg, private_key),
            "sealed_private_key": self._sealer.seal(der, label=_key_label(purpose, kid)),
            "created_at": now,
            "retired_at": now if state == "retired" else None,
        }

    def _read_folder(self) -> tuple[list[legacy.LegacyKey], bytes | None]:
        """What the keys folder of earlier versions holds that the database does not."""
        directory = self.directory
        with self._session() as session:
            no_keys = (
                session.scalars(
                    select(SigningKey.kid).where(SigningKey.purpose == ID_TOKEN).limit(1)
                ).first()
                is None
            )
            no_salt = session.get(ServerSecret, PAIRWISE_SALT) is None
        keys = legacy.read_keys(directory) if no_keys and legacy.has_keys(directory) else []
        salt = legacy.read_salt(directory) if no_salt and legacy.has_salt(directory) else None
        if not no_salt and legacy.has_salt(directory):
            self._warn_if_salt_differs(directory)
        return keys, salt

    def _warn_if_salt_differs(self, directory: str) -> None:
        """A folder whose salt is not the database's: an instance made its own once."""
        try:
            folder_salt = legacy.read_salt(directory)
        except KeyStoreError:
            folder_salt = None
        if folder_salt != self._salt:
            log.warning(
                "the pairwise salt in %s differs from the database's, which is used: `sub`s "
                "follow the database; the folder is not read (archive and delete it)",
                directory,
            )

    def _import_folder(self, keys: list[legacy.LegacyKey], salt: bytes | None) -> None:
        """The folder's keys into an empty table and its salt: same kids, same ``sub``s."""
        directory = self.directory
        imported: list[str] = []
        with self._session() as session, session.begin():
            # The active key decides: if another instance has made or imported one meanwhile,
            # the folder's keys are not mixed into its set.
            if keys and _insert_if_absent(
                session, SigningKey, self._folder_row(keys[0].kid, keys[0])
            ):
                imported.append(keys[0].kid)
                for key in keys[1:]:
                    if _insert_if_absent(session, SigningKey, self._folder_row(key.kid, key)):
                        imported.append(key.kid)
            salt_imported = salt is not None and _insert_if_absent(
                session, ServerSecret, self._secret_row(PAIRWISE_SALT, salt)
            )
            if not imported and not salt_imported:
                session.rollback()
                return
            self._append_event(
                session,
                "keys_imported",
                actor="system",
                data={"kids": imported, "pairwise_salt": salt_imported, "directory": directory},
            )
        log.warning(
            "imported %d signing key(s)%s from %s into the database; the folder is no longer "
            "used and may be archived and deleted",
            len(imported),
            " and the pairwise salt" if salt_imported else "",
            directory,
        )

    def _folder_row(self, kid: str, key: legacy.LegacyKey) -> dict[str, Any]:
        return self._new_row(kid, ID_TOKEN, private_key=key.private_key, state=key.state)

    def _secret_row(self, name: str, value: bytes) -> dict[str, Any]:
        sealed = self._sealer.seal(value, label=_secret_label(name))
        return {"name": name, "sealed_value": sealed, "created_at": utcnow()}

    def _create_salt(self) -> None:
        with self._session() as session:
            if session.get(ServerSecret, PAIRWISE_SALT) is not None:
                return
            if self._production and self._has_residents(session):
                raise ConfigError(
                    "refusing to start: the database has residents but no pairwise salt, and a "
                    "new salt would give each of them a new `sub` at every relying party; "
                    f"restore the database, or put the old keys folder at {self.directory} "
                    "(IDSERVER_KEYS_DIR, with pairwise-salt.hex) to import it"
                )
        with self._session() as session, session.begin():
            row = self._secret_row(PAIRWISE_SALT, secrets.token_bytes(32))
            if _insert_if_absent(session, ServerSecret, row):
                log.info("created the pairwise salt")

    # -- reading -------------------------------------------------------------------------
    def _open(self, row: SigningKey) -> Key:
        """The private key of ``row``, opened once per process and checked against its JWK."""
        opened = self._opened.get(row.kid)
        if opened is not None:
            return opened
        try:
            der = self._sealer.open(row.sealed_private_key, label=_key_label(row.purpose, row.kid))
        except SealBroken as exc:
            raise ConfigError(
                f"IDSERVER_KEY_ENCRYPTION_KEY does not open the {row.purpose} key {row.kid} in "
                "the database: it is not the key-encryption key the keys were sealed with"
            ) from exc
        key = _key_type(row.alg).import_key(der, {"kid": row.kid, "alg": row.alg, "use": "sig"})
        public = key.as_dict(private=False)
        if any(public.get(p) != row.public_jwk.get(p) for p in ("kty", "x", "y", "n", "e")):
            raise KeyStoreError(f"key {row.kid}: the stored public key is not its own")
        self._opened[row.kid] = key
        return key

    def _rows(self) -> list[SigningKey]:
        with self._session() as session:
            query = select(SigningKey).order_by(SigningKey.created_at.desc(), SigningKey.kid)
            return list(session.scalars(query))

    def _read(self) -> _Loaded:
        loaded = _Loaded(at=time.monotonic())
        for row in self._rows():
            if row.active_purpose is not None:
                loaded.active[(row.active_purpose, row.alg)] = self._open(row)
            if row.purpose == ID_TOKEN and row.retired_at is None:
                loaded.published.append({**row.public_jwk, "alg": row.alg, "use": "sig"})
        return loaded

    def _current(self) -> _Loaded:
        self.prepare()
        loaded = self._loaded
        if loaded is not None and time.monotonic() - loaded.at < self._refresh_seconds:
            return loaded
        with self._lock:
            loaded = self._loaded
            if loaded is None or time.monotonic() - loaded.at >= self._refresh_seconds:
                loaded = self._loaded = self._read()
            return loaded

    def _open_salt(self) -> bytes:
        with self._session() as session:
            row = session.get(ServerSecret, PAIRWISE_SALT)
        if row is None:
            raise KeyStoreError("the database holds no pairwise salt")
        try:
            self._salt = self._sealer.open(row.sealed_value, label=_secret_label(PAIRWISE_SALT))
        except SealBroken as exc:
            raise ConfigError(
                "IDSERVER_KEY_ENCRYPTION_KEY does not open the pairwise salt in the database: "
                "it is not the key-encryption key the salt was sealed with"
            ) from exc
        return self._salt

    # -- use -----------------------------------------------------------------------------
    def signing_key(self, purpose: str = ID_TOKEN, alg: str = SIGNING_ALGORITHM) -> Key:
        """The private key that signs for ``purpose`` with ``alg`` now."""
        key = self._current().active.get((purpose, alg))
        if key is None:
            raise KeyStoreError(f"no active {purpose} {alg} key")
        return key

    def saml_credentials(self) -> tuple[bytes, bytes]:
        """The SAML signing key (PKCS#8 PEM) and its self-signed certificate (PEM).

        The key is made on first use, like the others (insert-if-absent, so instances agree).
        The certificate is derived from the key row alone (validity from its creation, serial
        from its kid, RSA PKCS#1 v1.5 signatures are deterministic), so every instance
        publishes the same certificate without storing it.
        """
        self.prepare()
        if (SAML, "RS256") not in self._current().active:
            self._create_first_key(SAML, "RS256")
            with self._lock:
                self._loaded = self._read()
        key = self.signing_key(SAML, "RS256")
        with self._session() as session:
            row = session.get(SigningKey, key.kid)
        assert row is not None
        private_key = key.private_key
        assert isinstance(private_key, rsa.RSAPrivateKey)
        return (
            private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            _self_signed_certificate(private_key, kid=row.kid, created_at=row.created_at),
        )

    def jwks(self) -> dict[str, Any]:
        """The public ID-token keys that are not retired, newest first, each with its ``alg``
        and ``use``; never an audit key."""
        return {"keys": [dict(jwk) for jwk in self._current().published]}

    def verification_keys(self, purpose: str | None = None) -> KeySet:
        """Public keys of ``purpose`` (default: every purpose), retired ones included, read
        afresh; for verifying what this server signed, never for publishing."""
        self.prepare()
        rows = [row for row in self._rows() if purpose is None or row.purpose == purpose]
        return KeySet.import_key_set(
            {"keys": [{**row.public_jwk, "alg": row.alg, "use": "sig"} for row in rows]}
        )

    def pairwise_salt(self) -> bytes:
        """The secret behind pairwise ``sub`` values: created once, never rotated."""
        self.prepare()
        return self._salt if self._salt is not None else self._open_salt()

    def describe(self) -> dict[str, Any]:
        rows = self._rows()
        return {
            # The default (ES256) ID-token key, and the active ID-token key of each algorithm.
            "active": next(
                (
                    r.kid
                    for r in rows
                    if r.active_purpose == ID_TOKEN and r.alg == SIGNING_ALGORITHM
                ),
                None,
            ),
            "active_by_alg": {r.alg: r.kid for r in reversed(rows) if r.active_purpose == ID_TOKEN},
            "published": [r.kid for r in rows if r.purpose == ID_TOKEN and r.retired_at is None],
            "keys": [
                {
                    "kid": row.kid,
                    "purpose": row.purpose,
                    "alg": row.alg,
                    "state": row.state,
                    "created_at": row.created_at.isoformat(),
                    "retired_at": row.retired_at.isoformat() if row.retired_at else None,
                }
                for row in rows
            ],
        }

    # -- operator's changes --------------------------------------------------------------
    def rotate(
        self, purpose: str = ID_TOKEN, *, alg: str = SIGNING_ALGORITHM, actor: str = "operator"
    ) -> str:
        """Add a key for ``purpose`` and ``alg`` and sign with it from now on, on every
        instance; audited. The other algorithm's key is left as it is."""
        _check_algorithm(purpose, alg)
        self.prepare()
        kid = _new_kid()
        row = self._new_row(kid, purpose, alg=alg)
        try:
            with self._session() as session, session.begin():
                demoted = session.execute(
                    update(SigningKey)
                    .where(SigningKey.active_purpose == purpose, SigningKey.alg == alg)
                    .values(active_purpose=None)
                )
                if demoted.rowcount != 1:  # type: ignore[attr-defined]
                    raise KeyStoreError(f"no active {purpose} {alg} key to rotate")
                session.execute(insert(SigningKey).values(**row))
                self._append_event(
                    session,
                    "key_rotated",
                    actor=actor,
                    data={"kid": kid, "purpose": purpose, "alg": alg},
                )
        except IntegrityError as exc:
            raise KeyStoreError(
                "another instance changed the keys at the same moment; see `idserver keys list`"
            ) from exc
        self._loaded = None
        return kid

    def retire(self, kid: str, *, actor: str = "operator") -> None:
        """Take an older key out of service: no longer published; kept to verify; audited."""
        self.prepare()
        with self._session() as session, session.begin():
            retired = session.execute(
                update(SigningKey)
                .where(
                    SigningKey.kid == kid,
                    SigningKey.active_purpose.is_(None),
                    SigningKey.retired_at.is_(None),
                )
                .values(retired_at=utcnow())
            )
            if retired.rowcount != 1:  # type: ignore[attr-defined]
                row = session.get(SigningKey, kid)
                if row is None:
                    raise KeyStoreError(f"no key {kid}")
                if row.active_purpose is not None:
                    raise KeyStoreError("the active key cannot be retired; rotate first")
                raise KeyStoreError(f"key {kid} is retired already")
            purpose = session.scalars(select(SigningKey.purpose).where(SigningKey.kid == kid)).one()
            self._append_event(
                session, "key_retired", actor=actor, data={"kid": kid, "purpose": purpose}
            )
        self._loaded = None


def _self_signed_certificate(
    private_key: rsa.RSAPrivateKey, *, kid: str, created_at: dt.datetime
) -> bytes:
    """A certificate carrying the SAML key for metadata and signatures (SAML V2.0 Metadata
    Interoperability Profile: only the key counts, the certificate is its wrapper)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Buerger-ID SAML {kid}")])
    start = created_at.replace(microsecond=0)
    serial = int.from_bytes(hashlib.sha256(kid.encode()).digest()[:16], "big") >> 1 or 1
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=365 * SAML_CERTIFICATE_YEARS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(private_key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def _schema_exists(engine: Engine) -> bool:
    """True when the key tables exist; False too when the database does not answer yet (the
    keys are then prepared before the first request, and ``/readyz`` reports them)."""
    try:
        names = set(inspect(engine).get_table_names())
    except SQLAlchemyError:
        log.warning("database not reachable at start; the keys are prepared later")
        return False
    return {"signing_keys", "server_secrets", "audit_events"} <= names


def init_app(app: Flask, *, audit: AuditWriter, has_residents: ResidentCheck) -> None:
    """Attach the key store; prepare it now if the schema exists, else before the first request.

    ``audit`` appends an event in the key store's own transaction (``audit.service.append_event``);
    ``has_residents`` tells whether residents exist (a production start then refuses to make a
    new pairwise salt).

    Preparing at start makes a wrong KEK or a missing salt refuse the start (ConfigError, one
    line). Preparing before a request, never inside one: a first start writes its keys in
    transactions of its own, which on SQLite must not wait behind the request's.
    """
    engine = app.extensions["idserver.db"][0]
    store = KeyStore(app, engine, audit=audit, has_residents=has_residents)
    app.extensions["idserver.keys"] = store

    @app.before_request
    def _prepare_before_request() -> None:
        # Not for the probes: /healthz touches nothing, /readyz reports the keys itself.
        if (request.endpoint or "").startswith("health."):
            return
        try:
            store.prepare()
        except SQLAlchemyError as exc:
            # No database (yet), or no schema: a page that needs neither still answers; one
            # that uses the keys prepares them itself and fails as any database use would.
            # A KEK that does not open the keys (ConfigError) is not caught.
            log.debug("keys not prepared before %s: %s", request.path, type(exc).__name__)

    if _schema_exists(engine):
        with app.app_context():
            try:
                store.prepare()
            except KeyStoreError as exc:
                raise ConfigError(f"signing keys: {exc}") from exc


def key_store() -> KeyStore:
    return current_app.extensions["idserver.keys"]  # type: ignore[no-any-return]
