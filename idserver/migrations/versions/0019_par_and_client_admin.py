"""pushed authorization requests (RFC 9126), clients that require them, the clerk role admin

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 12:45:00.000000

The new column of ``clients`` is added in place (SQLite's ALTER TABLE ADD COLUMN, no table
copy), as in 0017: copying ``clients`` would delete every code and token through their foreign
keys. ``clerks`` is copied in batch mode to widen its role check; nothing refers to it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import idserver.db


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'pushed_authorization_requests',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('request_uri_hash', sa.String(length=64), nullable=False),
        sa.Column('client_id', sa.String(length=64), nullable=False),
        sa.Column('params', sa.JSON(), nullable=False),
        sa.Column('created_at', idserver.db.UTCDateTime(), nullable=False),
        sa.Column('expires_at', idserver.db.UTCDateTime(), nullable=False),
        sa.Column('used_at', idserver.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['client_id'], ['clients.client_id'], name=op.f('fk_pushed_authorization_requests_client_id_clients'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_pushed_authorization_requests')),
        sa.UniqueConstraint('request_uri_hash', name=op.f('uq_pushed_authorization_requests_request_uri_hash')),
    )
    op.create_index(op.f('ix_pushed_authorization_requests_expires_at'), 'pushed_authorization_requests', ['expires_at'], unique=False)
    op.add_column('clients', sa.Column('require_pushed_authorization_requests', sa.Boolean(),
                                       nullable=False, server_default=sa.false()))
    with op.batch_alter_table('clerks', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_clerks_role'), type_='check')
        batch_op.create_check_constraint(op.f('ck_clerks_role'), "role IN ('clerk', 'supervisor', 'admin')")


def downgrade() -> None:
    with op.batch_alter_table('clerks', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_clerks_role'), type_='check')
        batch_op.create_check_constraint(op.f('ck_clerks_role'), "role IN ('clerk', 'supervisor')")
    with op.batch_alter_table('clients', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('require_pushed_authorization_requests')
    op.drop_index(op.f('ix_pushed_authorization_requests_expires_at'), table_name='pushed_authorization_requests')
    op.drop_table('pushed_authorization_requests')
