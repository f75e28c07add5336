"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

import datetime as dt

import cbor2
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from cryptography.hazmat.primitives.asymmetric import ec

from idserver import create_app
from idserver.db import Base
from idserver.db import UTCDateTime
from idserver.db import make_engine
from idserver.db_migrate import alembic_config
from idserver.db_migrate import upgrade
from idserver.passkeys.ceremonies import public_key_fingerprint


def test_upgrade_from_empty_matches_the_models(app_config, tmp_path):
    app = create_app(app_config)
    assert upgrade(app) is not None
    engine = make_engine(app.config["DATABASE_URL"])
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []


def test_upgrade_twice_is_harmless(app_config, tmp_path):
    app = create_app(app_config)
    assert upgrade(app) == upgrade(app)


def _es256_cose(x: int, y: int, **extra: bytes) -> bytes:
    cose = {1: 2, 3: -7, -1: 1, -2: x.to_bytes(32, "big"), -3: y.to_bytes(32, "big")}
    return cbor2.dumps({**cose, **({2: extra["kid"]} if "kid" in extra else {})})


# credentials and citizens as migration 0005 left them: the columns an insert must fill
OLD_CITIZENS = sa.table(
    "citizens",
    *(sa.column(name) for name in ("id", "given_name", "family_name", "street", "postcode")),
    sa.column("city"),
    sa.column("birthdate", sa.Date()),
    sa.column("created_at", UTCDateTime()),
)
OLD_CREDENTIALS = sa.table(
    "credentials",
    *(sa.column(name) for name in ("id", "credential_id", "citizen_id", "name", "kind")),
    *(sa.column(name) for name in ("public_key", "sign_count", "aaguid", "attestation_format")),
    *(sa.column(name) for name in ("attestation_object", "origin", "backup_eligible")),
    sa.column("backed_up"),
    sa.column("transports", sa.JSON()),
    sa.column("created_at", UTCDateTime()),
)


def test_upgrade_fingerprints_existing_keys_and_revokes_copies(app_config):
    # Before credentials.public_key_hash a key could be enrolled twice, or be no key at all: the
    # upgrade fingerprints every key and revokes the credential of a later copy or a bad key.
    app = create_app(app_config)
    url = app.config["DATABASE_URL"]
    engine = make_engine(url)
    config = alembic_config(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0005")
    shared = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    own = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    keys = {
        1: _es256_cose(shared.x, shared.y),
        2: _es256_cose(shared.x, shared.y, kid=b"copy"),  # the same key, spelt otherwise
        3: _es256_cose(shared.x, shared.y ^ 1),  # not on the curve
        4: _es256_cose(own.x, own.y),
    }
    now = dt.datetime.now(dt.UTC)
    citizen = {"id": "c1", "given_name": "Erika", "family_name": "Mustermann", "city": "Dortmund"}
    citizen |= {"street": "Kampstraße 12", "postcode": "44137", "birthdate": dt.date(1984, 8, 12)}
    device = {"citizen_id": "c1", "name": "Handy", "kind": "passkey", "sign_count": 0}
    device |= {"aaguid": "0" * 36, "attestation_format": "none", "attestation_object": b""}
    device |= {"origin": "http://localhost", "transports": [], "created_at": now}
    device |= {"backup_eligible": False, "backed_up": False}
    with engine.begin() as connection:
        connection.execute(sa.insert(OLD_CITIZENS).values(created_at=now, **citizen))
        for number, public_key in keys.items():
            connection.execute(
                sa.insert(OLD_CREDENTIALS).values(
                    id=number, credential_id=bytes([number]) * 16, public_key=public_key, **device
                )
            )

    upgrade(app)
    credentials = Base.metadata.tables["credentials"]
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                credentials.c.id,
                credentials.c.public_key_hash,
                credentials.c.revoked_at.is_not(None),
            ).order_by(credentials.c.id)
        ).all()
    engine.dispose()
    assert [tuple(row) for row in rows] == [
        (1, public_key_fingerprint(keys[1]), False),
        (2, None, True),
        (3, None, True),
        (4, public_key_fingerprint(keys[4]), False),
    ]
