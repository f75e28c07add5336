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
from collections.abc import Mapping
from typing import Any

from sqlalchemy import CheckConstraint
from sqlalchemy import Update
from sqlalchemy import bindparam
from sqlalchemy import update
from sqlalchemy.sql.elements import ClauseElement

from .db import db

__all__ = ["edges", "state_check", "transition"]


def state_check(states: type[enum.StrEnum], column: str = "state") -> CheckConstraint:
    """``CHECK (state IN (…))``: the database refuses a state the code does not know."""
    allowed = ", ".join(f"'{state.value}'" for state in states)
    return CheckConstraint(f"{column} IN ({allowed})", name=column)


def edges(*moves: tuple[Collection[str], str]) -> frozenset[tuple[str, str]]:
    """A model's ``TRANSITIONS`` from ``(from_states, to_state)`` pairs."""
    return frozenset((before, after) for before_states, after in moves for before in before_states)


# One statement per (model, from-states, conditions, columns set, SQL expressions set): the
# login path's transitions are a handful, and building an UPDATE costs more than running it
# (issue 16). Conditions and expressions are the caller's objects, built once; the entry keeps
# them alive, so their ids in its key stay theirs. A caller building them per call would only
# fill the cache, which therefore stops growing at MAX_CACHED_STATEMENTS.
MAX_CACHED_STATEMENTS = 256
_STATEMENTS: dict[tuple[Any, ...], tuple[Update, tuple[Any, ...]]] = {}


def transition(
    model: Any,
    row_id: str,
    from_states: Collection[str],
    *,
    where: tuple[Any, ...] = (),
    params: Mapping[str, Any] | None = None,
    announce: bool = True,
    **values: Any,
) -> bool:
    """Set ``values`` on row ``row_id`` of ``model`` if its state is one of ``from_states``
    (and the ``where`` conditions hold); True if exactly this row changed.

    ``where`` conditions are built once (module constants) and take their values from
    ``params`` by ``bindparam`` name; a value may be a SQL expression built once too
    (``Model.count + 1``). A new ``state`` in ``values`` must be one of the model's
    ``TRANSITIONS`` from each of ``from_states``. ``announce`` bumps the row's ``version``,
    which pollers watch; leave it False for a change no one waits for (a challenge counted, a
    nonce burnt). Never commits: the caller owns the transaction, so a transition can share it
    with what it records.
    """
    after = values.get("state")
    if after is not None:
        undeclared = {(before, after) for before in from_states} - model.TRANSITIONS
        if undeclared:
            raise ValueError(f"{model.__name__}: no such transition {sorted(undeclared)}")
    statement = _statement(model, tuple(from_states), where, announce, values)
    bound = dict(params or {})
    bound["transition_row_id"] = row_id
    for name, value in values.items():
        if not isinstance(value, ClauseElement):
            bound[f"new_{name}"] = value
    # The table, not the mapped class, on the session's connection: the ORM's bulk-update
    # machinery costs more than the statement here, and there is nothing in the session to
    # synchronise.
    result = db.session.connection().execute(statement, bound)
    return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


def _statement(
    model: Any,
    from_states: tuple[str, ...],
    where: tuple[Any, ...],
    announce: bool,
    values: Mapping[str, Any],
) -> Update:
    """``UPDATE … SET … WHERE id = :transition_row_id AND state IN (from_states) AND where``,
    each plain value bound as ``:new_<column>``; from the cache when it was built before."""
    shape = tuple(
        (name, id(value) if isinstance(value, ClauseElement) else None)
        for name, value in values.items()
    )
    key = (model, from_states, tuple(map(id, where)), announce, shape)
    cached = _STATEMENTS.get(key)
    if cached is not None:
        return cached[0]
    table = model.__table__
    settings: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, ClauseElement):
            settings[name] = value
        else:
            settings[name] = bindparam(f"new_{name}", type_=table.c[name].type)
    if announce:
        settings["version"] = model.version + 1
    statement = (
        update(table)
        .where(model.id == bindparam("transition_row_id"), model.state.in_(from_states), *where)
        .values(**settings)
    )
    if len(_STATEMENTS) < MAX_CACHED_STATEMENTS:
        expressions = tuple(v for v in values.values() if isinstance(v, ClauseElement))
        _STATEMENTS[key] = (statement, (*where, *expressions))
    return statement
