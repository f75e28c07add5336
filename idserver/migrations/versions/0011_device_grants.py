"""device grants: sessions, codes and tokens name the device that approved their login

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 22:10:35.838110

Existing rows learn their device from their login transaction (a token through its code), so
revoking a device ends what it obtained before this revision too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

import idserver.db


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


@contextmanager
def _keeping_token_codes() -> Iterator[None]:
    """SQLite's batch mode copies authorization_codes and drops the old table; with foreign keys
    on, the drop sets every tokens.code_id to NULL. Keep them aside and put them back."""
    sqlite = op.get_bind().dialect.name == 'sqlite'
    if sqlite:
        op.execute('CREATE TEMPORARY TABLE kept_token_codes AS '
                   'SELECT id, code_id FROM tokens WHERE code_id IS NOT NULL')
    yield
    if sqlite:
        op.execute('UPDATE tokens SET code_id = (SELECT kept_token_codes.code_id '
                   'FROM kept_token_codes WHERE kept_token_codes.id = tokens.id) '
                   'WHERE id IN (SELECT id FROM kept_token_codes)')
        op.execute('DROP TABLE kept_token_codes')


def upgrade() -> None:
    with _keeping_token_codes():
        with op.batch_alter_table('authorization_codes', schema=None) as batch_op:
            batch_op.add_column(sa.Column('credential_pk', sa.Integer(), nullable=True))
            batch_op.add_column(sa.Column('revoked_at', idserver.db.UTCDateTime(), nullable=True))
            batch_op.create_index('ix_authorization_codes_credential', ['credential_pk'], unique=False)
            batch_op.create_foreign_key(batch_op.f('fk_authorization_codes_credential_pk_credentials'), 'credentials', ['credential_pk'], ['id'], ondelete='SET NULL')

    with op.batch_alter_table('browser_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('credential_pk', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_browser_sessions_credential_pk_credentials'), 'credentials', ['credential_pk'], ['id'], ondelete='SET NULL')

    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('credential_pk', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_tokens_credential_pk_credentials'), 'credentials', ['credential_pk'], ['id'], ondelete='SET NULL')

    for table in ('browser_sessions', 'authorization_codes'):  # fixed names, no input
        op.execute(
            f'UPDATE {table} SET credential_pk = (SELECT login_transactions.credential_pk '  # nosec B608
            f'FROM login_transactions WHERE login_transactions.id = {table}.login_id) '
            'WHERE login_id IS NOT NULL'
        )
    op.execute(
        'UPDATE tokens SET credential_pk = (SELECT authorization_codes.credential_pk '
        'FROM authorization_codes WHERE authorization_codes.id = tokens.code_id) '
        'WHERE code_id IS NOT NULL'
    )


def downgrade() -> None:
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_tokens_credential_pk_credentials'), type_='foreignkey')
        batch_op.drop_column('credential_pk')

    with op.batch_alter_table('browser_sessions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_browser_sessions_credential_pk_credentials'), type_='foreignkey')
        batch_op.drop_column('credential_pk')

    with _keeping_token_codes():
        with op.batch_alter_table('authorization_codes', schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f('fk_authorization_codes_credential_pk_credentials'), type_='foreignkey')
            batch_op.drop_index('ix_authorization_codes_credential')
            batch_op.drop_column('revoked_at')
            batch_op.drop_column('credential_pk')
