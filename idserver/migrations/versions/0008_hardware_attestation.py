"""credentials.hardware_attested: did attestation prove a hardware-bound key (amr hwk)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10 12:00:00

Credentials enrolled before this revision are marked not proved: the attestation that would
show otherwise was checked against the roots of that day and is not re-checked here, and
claiming ``hwk`` without proof is the defect this column fixes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('credentials', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('hardware_attested', sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table('credentials', schema=None) as batch_op:
        batch_op.drop_column('hardware_attested')
