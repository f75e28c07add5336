"""ES256 signing keys and the pairwise salt, kept in the database for every instance.

Purposes: ``id_token`` keys sign ID tokens and signed userinfo and are published in the JWKS
(RFC 7517); ``audit`` keys sign the audit log's checkpoints and are never published. Each
purpose has one active key. Rotation adds a key and makes it the active one; the previous
ID-token key stays published until it is retired. A retired key is kept to verify what it once
signed (old audit checkpoints, a logout's ``id_token_hint``), but it never signs again and is
never published.

Private keys and the salt are sealed under the key-encryption key (``sealing``). A worker
caches what it opened and re-reads the key table every ``KEYS_REFRESH_SECONDS``, so a rotation
made by another instance reaches its JWKS and its tokens; verification always reads afresh.

``prepare`` runs once per process (at start when the schema exists, else before the first
request): it imports the keys folder of earlier versions into an empty table (``legacy``), then
creates whatever is still missing. Each creation is an insert-if-absent on a unique column
(``active_purpose``, the secret's name) followed by a re-read, so instances starting together
agree on one key per purpose and one salt.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask import current_app
from flask import request
from joserfc.jwk import ECKey
from joserfc.jwk import KeySet
from sqlalchemy import FromClause
from sqlalchemy import insert
from sqlalchemy import inspect
from sqlalchemy import literal
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

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
PURPOSES = (ID_TOKEN, AUDIT)
PAIRWISE_SALT = "pairwise_salt"

log = logging.getLogger(__name__)


class RecordEvent(Protocol):
    """Appends an audit event in ``session``'s transaction (``audit.service.append_event``)."""

    def __call__(
        self, session: Session, event: str, *, actor: str, data: dict[str, Any]
    ) -> object: ...


def _key_label(purpose: str, kid: str) -> str:
    return f"signing-key/{purpose}/{kid}"


def _secret_label(name: str) -> str:
    return f"server-secret/{name}"


def _new_kid() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d") + "-" + secrets.token_hex(4)


def _public_jwk(kid: str, private_key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    return dict(ECKey.import_key(private_key.public_key(), {"kid": kid}).as_dict(private=False))


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
    """What one read of the key table gave: opened active keys and the published JWKs."""

    at: float
    active: dict[str, ECKey] = field(default_factory=dict)
    published: list[dict[str, Any]] = field(default_factory=list)


class KeyStore:
    """The keys of one deployment, as this process sees them; safe to share between threads."""

    def __init__(
        self, app: Flask, engine: Engine, *, record_event: RecordEvent, subjects: FromClause
    ) -> None:
        self.directory = os.path.abspath(app.config["KEYS_DIR"])
        self._engine = engine
        self._sealer = Sealer(key_encryption_key(app.config))
        self._refresh_seconds = app.config["KEYS_REFRESH_SECONDS"]
        self._production = app.config["ENV"] == "production"
        self._record_event = record_event
        self._subjects = subjects
        self._lock = threading.RLock()
        self._prepared = False
        self._preparing_thread: int | None = None
        self._loaded: _Loaded | None = None
        self._opened: dict[str, ECKey] = {}
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
                self._create_first_key(AUDIT)
                if keys or salt is not None:
                    self._import_folder(keys, salt)
                self._create_first_key(ID_TOKEN)
                self._create_salt()
                self._loaded = self._read()
                for purpose in PURPOSES:
                    if purpose not in self._loaded.active:
                        raise KeyStoreError(f"the database holds no active {purpose} key")
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

    def _create_first_key(self, purpose: str) -> None:
        with self._session() as session:
            query = select(SigningKey.kid).where(SigningKey.active_purpose == purpose)
            if session.scalars(query).first() is not None:
                return
        kid = _new_kid()
        with self._session() as session, session.begin():
            created = _insert_if_absent(session, SigningKey, self._new_row(kid, purpose))
        if created:
            log.info("created the first %s signing key %s", purpose, kid)

    def _new_row(
        self,
        kid: str,
        purpose: str,
        *,
        private_key: ec.EllipticCurvePrivateKey | None = None,
        state: str = "active",
    ) -> dict[str, Any]:
        private_key = private_key or ec.generate_private_key(ec.SECP256R1())
        der = private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        now = utcnow()
        return {
            "kid": kid,
            "purpose": purpose,
            "active_purpose": purpose if state == "active" else None,
            "public_jwk": _public_jwk(kid, private_key),
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
            self._record_event(
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
            if self._production and self._has_subjects(session):
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

    def _has_subjects(self, session: Session) -> bool:
        query = select(literal(1)).select_from(self._subjects).limit(1)
        return session.scalars(query).first() is not None

    # -- reading -------------------------------------------------------------------------
    def _open(self, row: SigningKey) -> ECKey:
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
        key = ECKey.import_key(der, {"kid": row.kid, "alg": SIGNING_ALGORITHM, "use": "sig"})
        public = key.as_dict(private=False)
        if (public.get("x"), public.get("y")) != (row.public_jwk.get("x"), row.public_jwk.get("y")):
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
                loaded.active[row.active_purpose] = self._open(row)
            if row.purpose == ID_TOKEN and row.retired_at is None:
                loaded.published.append(dict(row.public_jwk))
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
    def signing_key(self, purpose: str = ID_TOKEN) -> ECKey:
        """The private key that signs for ``purpose`` now."""
        key = self._current().active.get(purpose)
        if key is None:
            raise KeyStoreError(f"no active {purpose} key")
        return key

    def jwks(self) -> dict[str, Any]:
        """The public ID-token keys that are not retired, newest first; never an audit key."""
        published = self._current().published
        return {"keys": [{**jwk, "alg": SIGNING_ALGORITHM, "use": "sig"} for jwk in published]}

    def verification_keys(self, purpose: str | None = None) -> KeySet:
        """Public keys of ``purpose`` (default: every purpose), retired ones included, read
        afresh; for verifying what this server signed, never for publishing."""
        self.prepare()
        rows = [row for row in self._rows() if purpose is None or row.purpose == purpose]
        return KeySet([ECKey.import_key(dict(row.public_jwk)) for row in rows])

    def pairwise_salt(self) -> bytes:
        """The secret behind pairwise ``sub`` values: created once, never rotated."""
        self.prepare()
        return self._salt if self._salt is not None else self._open_salt()

    def describe(self) -> dict[str, Any]:
        rows = self._rows()
        return {
            "active": next((r.kid for r in rows if r.active_purpose == ID_TOKEN), None),
            "published": [r.kid for r in rows if r.purpose == ID_TOKEN and r.retired_at is None],
            "keys": [
                {
                    "kid": row.kid,
                    "purpose": row.purpose,
                    "state": row.state,
                    "created_at": row.created_at.isoformat(),
                    "retired_at": row.retired_at.isoformat() if row.retired_at else None,
                }
                for row in rows
            ],
        }

    # -- operator's changes --------------------------------------------------------------
    def rotate(self, purpose: str = ID_TOKEN, *, actor: str = "operator") -> str:
        """Add a key and sign with it from now on, on every instance; audited."""
        if purpose not in PURPOSES:
            raise KeyStoreError(f"unknown key purpose {purpose!r}; one of {', '.join(PURPOSES)}")
        self.prepare()
        kid = _new_kid()
        row = self._new_row(kid, purpose)
        try:
            with self._session() as session, session.begin():
                demoted = session.execute(
                    update(SigningKey)
                    .where(SigningKey.active_purpose == purpose)
                    .values(active_purpose=None)
                )
                if demoted.rowcount != 1:  # type: ignore[attr-defined]
                    raise KeyStoreError(f"no active {purpose} key to rotate")
                session.execute(insert(SigningKey).values(**row))
                self._record_event(
                    session, "key_rotated", actor=actor, data={"kid": kid, "purpose": purpose}
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
            self._record_event(
                session, "key_retired", actor=actor, data={"kid": kid, "purpose": purpose}
            )
        self._loaded = None


def _schema_exists(engine: Engine) -> bool:
    """True when the key tables exist; False too when the database does not answer yet (the
    keys are then prepared before the first request, and ``/readyz`` reports them)."""
    try:
        names = set(inspect(engine).get_table_names())
    except SQLAlchemyError:
        log.warning("database not reachable at start; the keys are prepared later")
        return False
    return {"signing_keys", "server_secrets", "audit_events"} <= names


def init_app(app: Flask, *, record_event: RecordEvent, subjects: FromClause) -> None:
    """Attach the key store; prepare it now if the schema exists, else before the first request.

    ``record_event`` audits the store's changes in their own transactions. ``subjects``: the
    table of the people pairwise ``sub`` values are made for (residents); production refuses to
    make a new pairwise salt while it has rows, as that would give each of them new ``sub``s.

    Preparing at start makes a wrong KEK or a missing salt refuse the start (ConfigError, one
    line). Preparing before a request, never inside one: a first start writes its keys in
    transactions of its own, which on SQLite must not wait behind the request's.
    """
    engine = app.extensions["idserver.db"][0]
    store = KeyStore(app, engine, record_event=record_event, subjects=subjects)
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
