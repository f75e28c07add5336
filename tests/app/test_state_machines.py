"""The two state machines (login transactions, device pairings): the diagrams in the docstrings
show exactly the moves ``states.transition`` allows, and the database refuses unknown states."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from sqlalchemy import literal
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from idserver import states as state_machine
from idserver.account import pairing
from idserver.account.models import Pairing
from idserver.account.models import PairingState
from idserver.crosslogin import service as crosslogin
from idserver.crosslogin.models import LoginState
from idserver.crosslogin.models import LoginTransaction
from idserver.db import db
from idserver.oidc.models import Client
from idserver.oidc.views import requester_for
from idserver.states import transition

MACHINES = [
    pytest.param(crosslogin, LoginTransaction, LoginState, id="login"),
    pytest.param(pairing, Pairing, PairingState, id="pairing"),
]
MIGRATION = Path(__file__).parents[2] / "idserver/migrations/versions/0013_state_checks.py"


def diagram_edges(docstring: str, states: set[str]) -> set[tuple[str, str, str]]:
    """(from, label, to) for every arrow of the ``::`` box drawing in ``docstring``.

    Arrows run to the right and end in ``▶ state``; a state's line runs down from below it
    (``│``), and leaves to the right at ``├``/``┼`` (going on down) or ``└``/``┴`` (ending).
    """
    block = docstring.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    grid = block.splitlines()

    def at(row: int, col: int) -> str:
        return grid[row][col] if row < len(grid) and col < len(grid[row]) else " "

    def right(row: int, col: int) -> tuple[str, str]:
        start = col
        while at(row, start - 1) not in "├└ ":  # joining a line drawn from further left
            start -= 1
        label = grid[row][start:col]
        while at(row, col) != "▶":
            assert col < len(grid[row]), f"no arrowhead on {grid[row]!r}"
            label += at(row, col)
            col += 1
        target = re.match(r" ([a-z_]+)", grid[row][col + 1 :])
        assert target and target[1] in states, f"no state after the arrow on {grid[row]!r}"
        return re.sub(r"[─┼┴│ ]+", " ", label).strip(), target[1]

    def down(row: int, col: int) -> list[tuple[str, str]]:
        ends = []
        while True:
            row += 1
            glyph = at(row, col)
            if glyph in "├┼└┴":
                ends.append(right(row, col + 1))
            if glyph in "└┴":
                return ends
            assert glyph in "│├┼", f"the line below column {col} breaks off at row {row}"

    found = set()
    for row, line in enumerate(grid):
        for word in re.finditer(r"[a-z_]+", line):
            if word[0] not in states:
                continue
            if line[word.end() : word.end() + 2] == " ─":
                found.add((word[0], *right(row, word.end() + 1)))
            for col in range(word.start(), word.end()):
                if at(row + 1, col) == "│":
                    found.update((word[0], label, to) for label, to in down(row, col))
    return found


@pytest.mark.parametrize(("module", "model", "states"), MACHINES)
def test_the_diagram_shows_exactly_the_transitions_the_code_allows(module, model, states):
    edges = diagram_edges(module.__doc__, {state.value for state in states})
    assert {(before, after) for before, _label, after in edges} == model.TRANSITIONS
    for _before, label, _after in edges:  # each arrow is named after the function that moves it
        assert callable(getattr(module, label, None)), label


def test_the_login_diagram_has_the_late_endings():
    edges = diagram_edges(crosslogin.__doc__, set(LoginState))
    assert ("denied", "consume_denied", "consumed") in edges
    assert ("expired", "consume_denied", "consumed") in edges
    assert ("approved", "expire", "expired") in edges


def test_the_login_diagram_in_the_flows_document_shows_the_same_transitions():
    flows = (Path(__file__).parents[2] / "docs/flows.md").read_text()
    diagram = flows.split("### The login transaction's states", 1)[1].split("```", 2)[1]
    arrows = set(re.findall(r"^ +([a-z]+) --> ([a-z]+):", diagram, flags=re.MULTILINE))
    assert arrows == LoginTransaction.TRANSITIONS


@pytest.mark.parametrize(("module", "model", "states"), MACHINES)
def test_the_migration_checks_the_states_the_code_knows(module, model, states):
    spec = importlib.util.spec_from_file_location("state_checks", MIGRATION)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    assert migration.STATES[model.__tablename__] == tuple(state.value for state in states)


def _rows(app, citizen, relying_party):
    """A fresh login and a fresh pairing: (model, id) each."""
    with app.app_context():
        client = db.session.get(Client, relying_party.client_id)
        params = {"client_id": client.client_id, "scope": "openid"}
        login, _secret = crosslogin.create_transaction(
            client_id=client.client_id,
            params=params,
            scope="openid",
            requester=requester_for(client, params),
            desktop_ip="192.0.2.1",
            user_agent="test",
        )
        return [(LoginTransaction, login.id), (Pairing, pairing.create_pairing(citizen.id).id)]


def test_rejects_an_unknown_state(app, citizen, relying_party, db_state):
    rows = _rows(app, citizen, relying_party)
    before = db_state()
    with app.app_context():
        for model, row_id in rows:
            with pytest.raises(IntegrityError):
                db.session.execute(update(model).where(model.id == row_id).values(state="lost"))
            db.session.rollback()
    assert db_state() == before


def test_raises_for_a_transition_the_diagram_does_not_show(app, citizen, relying_party, db_state):
    rows = _rows(app, citizen, relying_party)
    before = db_state()
    with app.app_context():
        backwards = [(LoginState.CONSUMED, LoginState.PENDING), (PairingState.USED, "approved")]
        for (model, row_id), (old, new) in zip(rows, backwards, strict=True):
            with pytest.raises(ValueError, match="no such transition"):
                transition(model, row_id, (old,), state=new)
            db.session.rollback()
    assert db_state() == before


def test_a_transition_statement_is_built_once_and_the_cache_stays_bounded(monkeypatch):
    """Issue 16: the same move reuses its UPDATE; conditions built per call (a caller's
    mistake) cannot grow the cache without bound."""
    monkeypatch.setattr(state_machine, "_STATEMENTS", {})
    live = LoginTransaction.expires_at > literal(0)
    move = (LoginTransaction, (LoginState.PENDING,), (live,), True)
    first = state_machine._statement(*move, {"state": LoginState.SCANNED, "phone_ip": "x"})
    again = state_machine._statement(*move, {"state": LoginState.SCANNED, "phone_ip": "y"})
    assert again is first
    other = state_machine._statement(*move, {"state": LoginState.DENIED, "deny_reason": "x"})
    assert other is not first
    for n in range(state_machine.MAX_CACHED_STATEMENTS + 10):
        fresh = LoginTransaction.expires_at > literal(n)
        state_machine._statement(
            LoginTransaction, (LoginState.PENDING,), (fresh,), True, {"state": "x"}
        )
    assert len(state_machine._STATEMENTS) == state_machine.MAX_CACHED_STATEMENTS
