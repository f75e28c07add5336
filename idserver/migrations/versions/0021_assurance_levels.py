"""Assurance levels: identity proofing in person per resident, the level of each login

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04 12:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN: a batch copy of `citizens` would cascade-delete its dependents.
    op.add_column('citizens', sa.Column('proofing_document', sa.String(length=32), nullable=True))
    op.add_column('citizens', sa.Column('proofed_on', sa.Date(), nullable=True))
    op.add_column('citizens', sa.Column('proofing_office', sa.String(length=200), nullable=True))
    op.add_column('login_transactions', sa.Column('level', sa.String(length=16), nullable=True))


def downgrade() -> None:
    op.drop_column('login_transactions', 'level')
    op.drop_column('citizens', 'proofing_office')
    op.drop_column('citizens', 'proofed_on')
    op.drop_column('citizens', 'proofing_document')
