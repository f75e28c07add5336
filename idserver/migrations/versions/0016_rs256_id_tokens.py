"""RS256 ID tokens: an algorithm per signing key and per client

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 03:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing keys are ES256; each purpose now has one active key per algorithm. Batch mode
    # for SQLite, which cannot drop a constraint otherwise; nothing references signing_keys.
    with op.batch_alter_table('signing_keys') as batch:
        batch.add_column(
            sa.Column('alg', sa.String(length=8), nullable=False, server_default='ES256')
        )
        batch.drop_constraint('uq_signing_keys_active_purpose', type_='unique')
        batch.create_unique_constraint(
            'uq_signing_keys_active_purpose', ['active_purpose', 'alg']
        )
    # Plain ADD COLUMN on `clients`: a batch copy would cascade-delete its codes and tokens
    # (see 0014).
    op.add_column(
        'clients',
        sa.Column(
            'id_token_signed_response_alg',
            sa.String(length=8),
            nullable=False,
            server_default='ES256',
        ),
    )


def downgrade() -> None:
    op.drop_column('clients', 'id_token_signed_response_alg')
    op.execute("DELETE FROM signing_keys WHERE alg <> 'ES256'")
    with op.batch_alter_table('signing_keys') as batch:
        batch.drop_constraint('uq_signing_keys_active_purpose', type_='unique')
        batch.create_unique_constraint('uq_signing_keys_active_purpose', ['active_purpose'])
        batch.drop_column('alg')
