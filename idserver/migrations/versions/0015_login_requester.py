"""login requester: what a login shows and enforces about its client is kept on the login

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 03:00:00.000000

The login no longer looks the client up (``crosslogin.models.Requester``): ``oidc`` gives the
name, the claim names, the proximity policy and where "back" leads when it starts the login.
Logins already in the table learn theirs from their client, as the code before this revision
looked them up.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

SELF_CLIENT_ID = 'buergerid'
ORIGIN_NETLOC = re.compile(r'[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:]+\](:[0-9]{1,5})?')
# oidc.claims.SCOPE_CLAIMS as of this revision (a migration does not follow later changes).
SCOPE_CLAIMS = {
    'openid': ('sub',),
    'profile': ('name', 'given_name', 'family_name'),
    'email': ('email', 'email_verified'),
    'address': ('address',),
    'birthdate': ('birthdate',),
}


def _claims(scope: str | None) -> list[str]:
    names: list[str] = []
    for item in (scope or '').split():
        names.extend(n for n in SCOPE_CLAIMS.get(item, ()) if n not in names)
    return names


def _origin(uri: Any) -> str:
    if not isinstance(uri, str):
        return ''
    parts = urlsplit(uri)
    if parts.scheme not in ('http', 'https') or not ORIGIN_NETLOC.fullmatch(parts.netloc):
        return ''
    return f'{parts.scheme}://{parts.netloc}'


def _loaded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def upgrade() -> None:
    with op.batch_alter_table('login_transactions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('requester', sa.JSON(), nullable=True))
    connection = op.get_bind()
    rows = connection.execute(sa.text(
        'SELECT login_transactions.id, login_transactions.client_id, login_transactions.scope, '
        'login_transactions.request_params, clients.name, clients.redirect_uris, '
        'clients.proximity_policy FROM login_transactions '
        'LEFT JOIN clients ON clients.client_id = login_transactions.client_id'
    )).all()
    for login_id, client_id, scope, params, name, redirect_uris, policy in rows:
        params = _loaded(params) or {}
        uris = _loaded(redirect_uris) or []
        own = client_id == SELF_CLIENT_ID
        site = uris[0] if own and uris else (_origin(uris[0]) + '/' if uris and _origin(uris[0]) else '')
        requester = {
            'name': name or client_id,
            'claims': _claims(scope),
            'proximity_policy': policy,
            'site_url': site,
            'form_origin': _origin(params.get('redirect_uri')),
            'answers_endings': not own,
        }
        connection.execute(
            sa.text('UPDATE login_transactions SET requester = :requester WHERE id = :id')
            .bindparams(sa.bindparam('requester', type_=sa.JSON())),
            {'requester': requester, 'id': login_id},
        )
    with op.batch_alter_table('login_transactions', schema=None) as batch_op:
        batch_op.alter_column('requester', existing_type=sa.JSON(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('login_transactions', schema=None) as batch_op:
        batch_op.drop_column('requester')
