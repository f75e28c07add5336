"""clients can be disabled and deleted (kept, so their citizens' records stay)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import idserver.db


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE, no batch mode: SQLite's batch copy would drop `clients`, and with
    # foreign keys on that drop deletes every code, token, login and consent withdrawal of every
    # client (ON DELETE CASCADE). SQLite has ADD/DROP COLUMN since 3.35 (limits.py needs it too).
    op.add_column('clients', sa.Column('disabled_at', idserver.db.UTCDateTime(), nullable=True))
    op.add_column('clients', sa.Column('deleted_at', idserver.db.UTCDateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column('clients', 'deleted_at')
    op.drop_column('clients', 'disabled_at')
