"""saml: registered service providers, used request IDs; logins may be started by SAML

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04 13:00:00.000000

``login_transactions.client_id`` names an OIDC client or a SAML service provider
(``requester.protocol``), so its foreign key to ``clients`` goes; SQLite copies the table to
drop it (batch mode). Nothing refers to login_transactions.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import idserver.db


revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None

STATES = ('pending', 'scanned', 'approved', 'denied', 'expired', 'consumed')


def upgrade() -> None:
    op.create_table(
        'saml_service_providers',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('entity_id', sa.String(length=512), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('metadata_xml', sa.Text(), nullable=False),
        sa.Column('source', sa.String(length=1000), nullable=False),
        sa.Column('created_at', idserver.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_saml_service_providers')),
        sa.UniqueConstraint('entity_id', name=op.f('uq_saml_service_providers_entity_id')),
    )
    op.create_table(
        'saml_requests',
        sa.Column('sp_id', sa.String(length=64), nullable=False),
        sa.Column('request_id', sa.String(length=256), nullable=False),
        sa.Column('received_at', idserver.db.UTCDateTime(), nullable=False),
        sa.Column('expires_at', idserver.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('sp_id', 'request_id', name=op.f('pk_saml_requests')),
    )
    op.create_index('ix_saml_requests_expires_at', 'saml_requests', ['expires_at'], unique=False)
    with op.batch_alter_table('login_transactions', schema=None) as batch_op:
        batch_op.drop_constraint('fk_login_transactions_client_id_clients', type_='foreignkey')


def downgrade() -> None:
    with op.batch_alter_table('login_transactions', schema=None) as batch_op:
        batch_op.create_foreign_key(
            'fk_login_transactions_client_id_clients', 'clients', ['client_id'], ['client_id'],
            ondelete='CASCADE',
        )
    op.drop_index('ix_saml_requests_expires_at', table_name='saml_requests')
    op.drop_table('saml_requests')
    op.drop_table('saml_service_providers')
