"""retention purge: its bookkeeping table and the indexes its batches search by

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-12 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import idserver.db


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

INDEXES = (
    ('authorization_codes', 'expires_at'),
    ('tokens', 'expires_at'),
    ('browser_sessions', 'expires_at'),
    ('webauthn_challenges', 'expires_at'),
    ('activation_attempts', 'at'),
)


def upgrade() -> None:
    op.create_table('maintenance_runs',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('holder', sa.String(length=64), nullable=True),
    sa.Column('leased_until', idserver.db.UTCDateTime(), nullable=True),
    sa.Column('finished_at', idserver.db.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_maintenance_runs'))
    )
    for table, column in INDEXES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(batch_op.f(f'ix_{table}_{column}'), [column], unique=False)


def downgrade() -> None:
    for table, column in reversed(INDEXES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f'ix_{table}_{column}'))
    op.drop_table('maintenance_runs')
