"""A resident's own records, as both portals keep them: listed, found and changed by owner.

Every look-up is scoped to the owner's ``sub``: another resident's permit or application is
answered exactly like a missing one, so its id reveals nothing (no IDOR, no existence oracle).
"""

from __future__ import annotations

from typing import Any
from typing import TypeVar

from sqlalchemy import ColumnElement
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import InstrumentedAttribute

from .db import db

__all__ = ["change_owned", "find_owned", "list_owned"]

Record = TypeVar("Record")


def list_owned(owner: InstrumentedAttribute[str], sub: str, *, newest: Any) -> list[Any]:
    """Every record whose ``owner`` column is ``sub``, the newest (by ``newest``) first."""
    query = select(owner.class_).where(owner == sub).order_by(newest.desc())
    return list(db.session.scalars(query))


def find_owned(
    model: type[Record], record_id: str, owner: InstrumentedAttribute[str], sub: str
) -> Record | None:
    """The record if it belongs to ``sub``; anybody else's is as good as missing."""
    record = db.session.get(model, record_id)
    if record is None or getattr(record, owner.key) != sub:
        return None
    return record


def change_owned(
    owner: InstrumentedAttribute[str],
    sub: str,
    record_id: str,
    *,
    only_if: ColumnElement[bool],
    **values: Any,
) -> bool:
    """One conditional UPDATE of ``sub``'s record while ``only_if`` holds; False if none did.

    Checking and changing in one statement keeps a double click or two tabs from changing a
    record twice (the second finds the condition no longer true).
    """
    model = owner.class_
    result = db.session.execute(
        update(model).where(model.id == record_id, owner == sub, only_if).values(**values)
    )
    db.session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]
