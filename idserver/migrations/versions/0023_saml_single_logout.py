"""saml single logout: which SAML service providers each browser session sent an assertion to,
and SAML LogoutRequests in the logout outbox

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05 10:00:00.000000

``logout_deliveries`` gains ``protocol`` (existing rows are OIDC's) and its ``client_id`` names
an OIDC client or a SAML service provider, so the foreign key to ``clients`` goes (as in 0022 for
``login_transactions``); SQLite copies the table to drop it (batch mode). Nothing refers to
logout_deliveries.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import idserver.db


revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'saml_session_providers',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('session_id', sa.String(length=64), nullable=False),
        sa.Column('sp_id', sa.String(length=64), nullable=False),
        sa.Column('citizen_id', sa.String(length=36), nullable=False),
        sa.Column('login_id', sa.String(length=64), nullable=False),
        sa.Column('name_id', sa.String(length=64), nullable=False),
        sa.Column('session_index', sa.String(length=64), nullable=False),
        sa.Column('attributes', sa.JSON(), nullable=False),
        sa.Column('created_at', idserver.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['citizen_id'], ['citizens.id'], name=op.f('fk_saml_session_providers_citizen_id_citizens'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['session_id'], ['browser_sessions.id'], name=op.f('fk_saml_session_providers_session_id_browser_sessions'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['sp_id'], ['saml_service_providers.id'], name=op.f('fk_saml_session_providers_sp_id_saml_service_providers'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_saml_session_providers')),
    )
    op.create_index(op.f('ix_saml_session_providers_session_id'), 'saml_session_providers', ['session_id'], unique=False)
    op.create_index('ix_saml_session_providers_citizen', 'saml_session_providers', ['citizen_id'], unique=False)
    with op.batch_alter_table('logout_deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('protocol', sa.String(length=8), server_default='oidc', nullable=False))
        batch_op.drop_constraint('fk_logout_deliveries_client_id_clients', type_='foreignkey')


def downgrade() -> None:
    # SAML deliveries have no client to refer to: they go with the feature.
    op.execute("DELETE FROM logout_deliveries WHERE protocol <> 'oidc'")
    with op.batch_alter_table('logout_deliveries', schema=None) as batch_op:
        batch_op.create_foreign_key(
            'fk_logout_deliveries_client_id_clients', 'clients', ['client_id'], ['client_id'],
            ondelete='CASCADE',
        )
        batch_op.drop_column('protocol')
    op.drop_index('ix_saml_session_providers_citizen', table_name='saml_session_providers')
    op.drop_index(op.f('ix_saml_session_providers_session_id'), table_name='saml_session_providers')
    op.drop_table('saml_session_providers')
