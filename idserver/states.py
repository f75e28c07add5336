"""State machines kept in the database: named states and one guarded transition for all.

A login transaction (``crosslogin.service``) and a device pairing (``account.pairing``) each
have a ``state`` column whose values are a ``StrEnum`` and which the database checks
(``state_check``). The state changes only by ``transition``: one conditional
``UPDATE … WHERE id = :id AND state IN (:from_states)``, whose row count says whether this
caller won, so nothing is decided by a read followed by a write (GUIDE rules 2 and 3).

Each model lists the moves its diagram shows in ``TRANSITIONS``; asking ``transition`` for
another is a programming error, and a test compares the list with the diagram.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from typing import Any

from sqlalchemy import CheckConstraint
from sqlalchemy import update

from .db import db

__all__ = ["edges", "state_check", "transition"]


def state_check(states: type[enum.StrEnum], column: str = "state") -> CheckConstraint:
    """``CHECK (state IN (…))``: the database refuses a state the code does not know."""
    allowed = ", ".join(f"'{state.value}'" for state in states)
    return CheckConstraint(f"{column} IN ({allowed})", name=column)


def edges(*moves: tuple[Collection[str], str]) -> frozenset[tuple[str, str]]:
    """A model's ``TRANSITIONS`` from ``(from_states, to_state)`` pairs."""
    return frozenset((before, after) for before_states, after in moves for before in before_states)


def transition(
    model: Any,
    row_id: str,
    from_states: Collection[str],
    *,
    where: tuple[Any, ...] = (),
    announce: bool = True,
    **values: Any,
) -> bool:
    """Set ``values`` on row ``row_id`` of ``model`` if its state is one of ``from_states``
    (and the ``where`` conditions hold); True if exactly this row changed.

    A new ``state`` in ``values`` must be one of the model's ``TRANSITIONS`` from each of
    ``from_states``. ``announce`` bumps the row's ``version``, which pollers watch; leave it
    False for a change no one waits for (a challenge counted, a nonce burnt). Never commits:
    the caller owns the transaction, so a transition can share it with what it records.
    """
    after = values.get("state")
    if after is not None:
        undeclared = {(before, after) for before in from_states} - model.TRANSITIONS
        if undeclared:
            raise ValueError(f"{model.__name__}: no such transition {sorted(undeclared)}")
    if announce:
        values["version"] = model.version + 1
    # The table, not the mapped class, on the session's connection: the ORM's bulk-update
    # machinery costs more than the statement here, and there is nothing in the session to
    # synchronise.
    result = db.session.connection().execute(
        update(model.__table__)
        .where(model.id == row_id, model.state.in_(tuple(from_states)), *where)
        .values(**values)
    )
    return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]
