"""state checks: the database refuses a login or pairing state the code does not know

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 03:00:00.000000

``CHECK (state IN (…))`` on login_transactions and pairings, spelt out here as they are at this
revision (``crosslogin.models.LoginState``, ``account.models.PairingState``). SQLite copies
each table to add the constraint (batch mode); nothing refers to either table.
"""

from __future__ import annotations

from alembic import op


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

STATES = {
    'login_transactions': ('pending', 'scanned', 'approved', 'denied', 'expired', 'consumed'),
    'pairings': ('pending', 'claimed', 'approved', 'used', 'cancelled', 'expired'),
}


def upgrade() -> None:
    for table, states in STATES.items():
        allowed = ', '.join(f"'{state}'" for state in states)
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_check_constraint(op.f(f'ck_{table}_state'), f'state IN ({allowed})')


def downgrade() -> None:
    for table in reversed(STATES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(op.f(f'ck_{table}_state'), type_='check')
