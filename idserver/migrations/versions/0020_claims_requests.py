"""claims requests and login hints: the validated OIDC ``claims`` parameter on codes, access and
refresh tokens; an index of each client's citizens for resolving a ``login_hint``

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 12:50:00.000000

Nullable JSON columns added in place (SQLite's ALTER TABLE ADD COLUMN, no table copy); codes and
tokens issued before have none, which means no claims beyond their scope.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None

TABLES = ('authorization_codes', 'tokens', 'refresh_tokens')


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column('claims_request', sa.JSON(), nullable=True))
    op.create_index('ix_tokens_client_citizen', 'tokens', ['client_id', 'citizen_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_tokens_client_citizen', table_name='tokens')
    for table in TABLES:
        with op.batch_alter_table(table, schema=None, recreate='never') as batch_op:
            batch_op.drop_column('claims_request')
