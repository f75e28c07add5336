"""logout everywhere: clients' back- and front-channel logout URIs, the clients each browser
session logged in to, and the outbox of logout tokens

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 12:50:00.000000

New columns are added in place (as in 0017): copying ``clients`` in batch mode would drop it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import idserver.db


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('clients', sa.Column('backchannel_logout_uri', sa.String(length=500), nullable=True))
    op.add_column('clients', sa.Column('frontchannel_logout_uri', sa.String(length=500), nullable=True))
    op.create_table(
        'session_clients',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('session_id', sa.String(length=64), nullable=False),
        sa.Column('client_id', sa.String(length=64), nullable=False),
        sa.Column('citizen_id', sa.String(length=36), nullable=False),
        sa.Column('login_id', sa.String(length=64), nullable=False),
        sa.Column('created_at', idserver.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['citizen_id'], ['citizens.id'], name=op.f('fk_session_clients_citizen_id_citizens'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['client_id'], ['clients.client_id'], name=op.f('fk_session_clients_client_id_clients'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['session_id'], ['browser_sessions.id'], name=op.f('fk_session_clients_session_id_browser_sessions'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_session_clients')),
    )
    op.create_index(op.f('ix_session_clients_session_id'), 'session_clients', ['session_id'], unique=False)
    op.create_table(
        'logout_deliveries',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('client_id', sa.String(length=64), nullable=False),
        sa.Column('sid', sa.String(length=64), nullable=False),
        sa.Column('sub', sa.String(length=64), nullable=False),
        sa.Column('created_at', idserver.db.UTCDateTime(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', idserver.db.UTCDateTime(), nullable=False),
        sa.Column('delivered_at', idserver.db.UTCDateTime(), nullable=True),
        sa.Column('failed_at', idserver.db.UTCDateTime(), nullable=True),
        sa.Column('last_error', sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(['client_id'], ['clients.client_id'], name=op.f('fk_logout_deliveries_client_id_clients'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_logout_deliveries')),
    )
    op.create_index(op.f('ix_logout_deliveries_next_attempt_at'), 'logout_deliveries', ['next_attempt_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_logout_deliveries_next_attempt_at'), table_name='logout_deliveries')
    op.drop_table('logout_deliveries')
    op.drop_index(op.f('ix_session_clients_session_id'), table_name='session_clients')
    op.drop_table('session_clients')
    with op.batch_alter_table('clients', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('frontchannel_logout_uri')
        batch_op.drop_column('backchannel_logout_uri')
