"""signing keys and the pairwise salt in the database, sealed under the KEK

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 10:00:00.000000

The tables start empty: the first start after this upgrade imports the keys folder
(IDSERVER_KEYS_DIR) with the same key ids and salt, since sealing needs the key-encryption
key, which only the application has (``idserver.keys.service.KeyStore.prepare``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import idserver.db


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'signing_keys',
        sa.Column('kid', sa.String(length=64), nullable=False),
        sa.Column('purpose', sa.String(length=16), nullable=False),
        sa.Column('active_purpose', sa.String(length=16), nullable=True),
        sa.Column('public_jwk', sa.JSON(), nullable=False),
        sa.Column('sealed_private_key', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', idserver.db.UTCDateTime(), nullable=False),
        sa.Column('retired_at', idserver.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('kid', name=op.f('pk_signing_keys')),
        sa.UniqueConstraint('active_purpose', name=op.f('uq_signing_keys_active_purpose')),
    )
    op.create_table(
        'server_secrets',
        sa.Column('name', sa.String(length=32), nullable=False),
        sa.Column('sealed_value', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', idserver.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_server_secrets')),
    )


def downgrade() -> None:
    op.drop_table('server_secrets')
    op.drop_table('signing_keys')
