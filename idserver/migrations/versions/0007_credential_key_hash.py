"""credentials.public_key_hash: one public key, one credential

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 22:30:00.000000

Every existing credential gets the SHA-256 of its key's SubjectPublicKeyInfo DER, as
``passkeys.ceremonies.public_key_fingerprint`` computes it for new ones. The computation is
repeated here with the libraries alone, so the migration does not change when the app does.
A key that cannot be read (it could never verify a login) and a key an older credential
already has (a copy of someone's public key under a new credential id) keep NULL, and the
credential holding it is revoked.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging

import sqlalchemy as sa
from alembic import op
from cryptography.hazmat.primitives import serialization
from webauthn.helpers import decode_credential_public_key
from webauthn.helpers import decoded_public_key_to_cryptography

import idserver.db


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

credentials = sa.table(
    'credentials',
    sa.column('id', sa.Integer()),
    sa.column('public_key', sa.LargeBinary()),
    sa.column('public_key_hash', sa.String(64)),
    sa.column('revoked_at', idserver.db.UTCDateTime()),
)


def _fingerprint(cose_key: bytes) -> str | None:
    try:
        key = decoded_public_key_to_cryptography(decode_credential_public_key(cose_key))
        spki = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except Exception:  # any unreadable key: the credential is revoked below
        return None
    return hashlib.sha256(spki).hexdigest()


def upgrade() -> None:
    with op.batch_alter_table('credentials', schema=None) as batch_op:
        batch_op.add_column(sa.Column('public_key_hash', sa.String(length=64), nullable=True))

    connection = op.get_bind()
    now = dt.datetime.now(dt.UTC)
    seen: set[str] = set()
    rows = connection.execute(
        sa.select(credentials.c.id, credentials.c.public_key).order_by(credentials.c.id)
    ).all()
    for credential_id, public_key in rows:
        fingerprint = _fingerprint(bytes(public_key))
        if fingerprint is None or fingerprint in seen:
            log.warning(
                "credential %s revoked: its public key is %s", credential_id,
                "unreadable" if fingerprint is None else "another credential's",
            )
            connection.execute(
                sa.update(credentials)
                .where(credentials.c.id == credential_id, credentials.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            continue
        seen.add(fingerprint)
        connection.execute(
            sa.update(credentials)
            .where(credentials.c.id == credential_id)
            .values(public_key_hash=fingerprint)
        )

    # A unique index rather than a constraint: SQLite can add it in place, where a constraint
    # would rebuild the table, and dropping the old one would fire ON DELETE SET NULL in the
    # pairings and login transactions that point at credentials.
    with op.batch_alter_table('credentials', schema=None) as batch_op:
        batch_op.create_index('ix_credentials_public_key_hash', ['public_key_hash'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('credentials', schema=None) as batch_op:
        batch_op.drop_index('ix_credentials_public_key_hash')
        batch_op.drop_column('public_key_hash')
