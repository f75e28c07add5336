"""citizens.search_name: names spelt for the clerk search (ä/ae, ö/oe, ü/ue, ß/ss alike)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-14 12:00:00

Existing residents get their search name here; the application keeps it up to date on every
write from then on. The spelling rule is copied, not imported, so this revision stays what it
was when the application's rule changes.
"""

from __future__ import annotations

import unicodedata

import sqlalchemy as sa
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

_TRANSLITERATION = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})


def _searchable_name(text: str) -> str:
    spelt = unicodedata.normalize("NFC", text).casefold().translate(_TRANSLITERATION)
    plain = "".join(
        char for char in unicodedata.normalize("NFKD", spelt) if not unicodedata.combining(char)
    )
    return " ".join(plain.split())


def upgrade() -> None:
    with op.batch_alter_table('citizens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('search_name', sa.Text(), server_default='', nullable=False))
    citizens = sa.table(
        'citizens',
        sa.column('id', sa.String()),
        sa.column('given_name', sa.String()),
        sa.column('family_name', sa.String()),
        sa.column('search_name', sa.Text()),
    )
    connection = op.get_bind()
    rows = connection.execute(sa.select(citizens.c.id, citizens.c.given_name, citizens.c.family_name))
    for row in rows.all():
        connection.execute(
            citizens.update()
            .where(citizens.c.id == row.id)
            .values(search_name=_searchable_name(f"{row.given_name} {row.family_name}"))
        )


def downgrade() -> None:
    with op.batch_alter_table('citizens', schema=None) as batch_op:
        batch_op.drop_column('search_name')
