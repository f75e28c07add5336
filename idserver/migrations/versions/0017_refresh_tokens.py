"""refresh tokens: rotated, single-use refresh tokens in families; clients opt in by grant type

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 03:20:00.000000

New columns are added in place (SQLite's ALTER TABLE ADD COLUMN, no table copy): copying
``clients`` in batch mode would drop the old table, and with foreign keys on that deletes every
code and token of every client.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import idserver.db


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'refresh_tokens',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('family_id', sa.String(length=32), nullable=False),
        sa.Column('parent_id', sa.Integer(), nullable=True),
        sa.Column('client_id', sa.String(length=64), nullable=False),
        sa.Column('citizen_id', sa.String(length=36), nullable=False),
        sa.Column('scope', sa.String(length=500), nullable=False),
        sa.Column('credential_pk', sa.Integer(), nullable=True),
        sa.Column('issued_at', idserver.db.UTCDateTime(), nullable=False),
        sa.Column('expires_at', idserver.db.UTCDateTime(), nullable=False),
        sa.Column('idle_expires_at', idserver.db.UTCDateTime(), nullable=False),
        sa.Column('used_at', idserver.db.UTCDateTime(), nullable=True),
        sa.Column('revoked_at', idserver.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['citizen_id'], ['citizens.id'], name=op.f('fk_refresh_tokens_citizen_id_citizens'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['client_id'], ['clients.client_id'], name=op.f('fk_refresh_tokens_client_id_clients'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['credential_pk'], ['credentials.id'], name=op.f('fk_refresh_tokens_credential_pk_credentials'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['parent_id'], ['refresh_tokens.id'], name=op.f('fk_refresh_tokens_parent_id_refresh_tokens'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_refresh_tokens')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_refresh_tokens_token_hash')),
    )
    for column in ('citizen_id', 'credential_pk', 'expires_at', 'family_id'):
        op.create_index(op.f(f'ix_refresh_tokens_{column}'), 'refresh_tokens', [column], unique=False)
    op.add_column('tokens', sa.Column('refresh_family', sa.String(length=32), nullable=True))
    op.create_index(op.f('ix_tokens_refresh_family'), 'tokens', ['refresh_family'], unique=False)
    op.add_column('clients', sa.Column('grant_types', sa.JSON(), nullable=False,
                                       server_default='["authorization_code"]'))


def downgrade() -> None:
    with op.batch_alter_table('clients', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('grant_types')
    op.drop_index(op.f('ix_tokens_refresh_family'), table_name='tokens')
    with op.batch_alter_table('tokens', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('refresh_family')
    op.drop_table('refresh_tokens')
