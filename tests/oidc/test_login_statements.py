"""What a login's OIDC requests ask of the database (issue 16, docs/sizing.md): the client
read once per request, and continue's code, session and session record in one transaction
after the login's consume. Counted on the engine, on every database the suite runs on."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

from harness import desktop_status
from sqlalchemy import event

from idserver.db import db


class _Recorder:
    """The SQL statements and commits the application's engine sees, in order."""

    def __init__(self, app: Any) -> None:
        with app.app_context():
            self.engine = db.engine
        self.seen: list[str] = []
        event.listen(self.engine, "before_cursor_execute", self._statement)
        event.listen(self.engine, "commit", self._commit)

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.seen.append(" ".join(statement.split()))

    def _commit(self, _conn: Any) -> None:
        self.seen.append("COMMIT")

    def during(self, call: Any) -> tuple[Any, list[str]]:
        self.seen = []
        result = call()
        return result, self.seen

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "commit", self._commit)


def _client_reads(seen: list[str]) -> int:
    return sum(1 for line in seen if line.startswith("SELECT") and " FROM clients" in line)


def test_a_login_reads_its_client_once_per_request(app, client, relying_party, enrolled_phone):
    recorder = _Recorder(app)
    try:
        params = relying_party.authorize_params()
        started, at_authorize = recorder.during(
            lambda: client.get("/authorize", query_string=params)
        )
        assert started.status_code == 303
        login_id = started.headers["Location"].rsplit("/", 1)[-1]
        status = desktop_status(client, login_id).json
        assert enrolled_phone.approve(status["phone_url"], status["number"]).status_code == 200
        continue_url = desktop_status(client, login_id).json["continue_url"]
        back, at_continue = recorder.during(lambda: client.get(continue_url))
        assert back.status_code == 303
        code = parse_qs(urlsplit(back.headers["Location"]).query)["code"][0]
        tokens, at_token = recorder.during(lambda: relying_party.exchange(client, code))
        assert tokens.status_code == 200, tokens.json
    finally:
        recorder.close()
    assert [_client_reads(at_authorize), _client_reads(at_continue), _client_reads(at_token)] == [
        1,
        1,
        1,
    ]


def test_continue_stores_code_session_and_its_client_in_one_transaction(
    app, client, relying_party, enrolled_phone
):
    """The login is consumed and committed first (it is answered once); the code, the browser
    session and the record of the client it logged in to follow in one commit, so a worker
    dying in between leaves a consumed login with neither (reported as ended)."""
    login_id = relying_party.start_login(client)
    status = desktop_status(client, login_id).json
    assert enrolled_phone.approve(status["phone_url"], status["number"]).status_code == 200
    continue_url = desktop_status(client, login_id).json["continue_url"]
    recorder = _Recorder(app)
    try:
        back, seen = recorder.during(lambda: client.get(continue_url))
    finally:
        recorder.close()
    assert back.status_code == 303 and "code=" in back.headers["Location"]
    assert seen.count("COMMIT") == 2
    consumed = next(i for i, line in enumerate(seen) if line.startswith("UPDATE login_trans"))
    first, last = (i for i, line in enumerate(seen) if line == "COMMIT")
    assert consumed < first
    written = [
        i
        for i, line in enumerate(seen)
        if line.startswith(
            (
                "INSERT INTO authorization_codes",
                "INSERT INTO browser_sessions",
                "INSERT INTO session_clients",
            )
        )
    ]
    assert len(written) == 3 and all(first < i < last for i in written)
