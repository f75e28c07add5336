"""Logs: one format for the application and its access log, with the request's id on each line.

The lines are read as an operator's collector would: from standard error, where the one
handler of ``idserver/logs.py`` writes them (``capsys`` stands in for the terminal).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re

import pytest
from harness import desktop_status

from idserver import create_app
from idserver.config import ConfigError
from idserver.config import effective_config
from idserver.logs import ACCESS_LOGGER

ACCESS_FIELDS = {"method", "route", "status", "duration_ms"}
TEXT_LINE = re.compile(
    r"(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (?P<level>[A-Z]+) +(?P<logger>\S+) "
    r"\[(?P<request_id>[A-Za-z0-9._-]+)\] (?P<message>.*)"
)


@pytest.fixture
def app_config(app_config):
    return {**app_config, "LOG_FORMAT": "json"}


def _lines(capsys) -> list[dict]:
    err = capsys.readouterr().err
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def _access(capsys) -> list[dict]:
    return [line for line in _lines(capsys) if line["logger"] == ACCESS_LOGGER]


def test_the_access_line_is_json_with_every_field(app, client, relying_party, capsys):
    capsys.readouterr()
    login_id = relying_party.start_login(client)
    [line] = _access(capsys)
    assert set(line) == {
        "ts",
        "level",
        "logger",
        "message",
        "request_id",
        "client_id",
        "query",
        *ACCESS_FIELDS,
    }
    moment = dt.datetime.fromisoformat(line["ts"])
    assert line["ts"].endswith("Z") and moment.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.UTC) - moment) < dt.timedelta(minutes=1)
    assert line["level"] == "INFO"
    assert line["message"] == "GET /authorize 303"
    assert (line["method"], line["route"], line["status"]) == ("GET", "/authorize", 303)
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["client_id"] == relying_party.client_id  # a registered client, once named
    # the allow-listed parameters keep their value; state, nonce, PKCE and redirect are withheld
    assert line["query"] == (
        f"response_type=code&client_id={relying_party.client_id}&scope=openid+profile"
        "&code_challenge_method=S256&…"
    )
    assert relying_party.state not in json.dumps(line)

    # the next page of the same login: its route, not its path with the login's id
    client.get(f"/login/{login_id}", headers={"Accept": "application/json"})
    [line] = _access(capsys)
    assert line["route"] == "/login/<login_id>" and login_id not in json.dumps(line)
    assert "query" not in line and "client_id" not in line


def test_an_incoming_request_id_is_honoured_and_echoed(client, capsys):
    capsys.readouterr()
    response = client.get("/", headers={"X-Request-ID": "lb-7f3a.2_b"})
    assert response.headers["X-Request-ID"] == "lb-7f3a.2_b"
    [line] = _access(capsys)
    assert line["request_id"] == "lb-7f3a.2_b"


def test_a_request_id_is_made_when_none_is_sent(client, capsys):
    capsys.readouterr()
    first = client.get("/").headers["X-Request-ID"]
    second = client.get("/.well-known/openid-configuration").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and re.fullmatch(r"[0-9a-f]{32}", second)
    assert first != second
    assert [line["request_id"] for line in _access(capsys)] == [first, second]


@pytest.mark.parametrize(
    "offered",
    ["x" * 129, "has space", 'quote"d', "semi;colon", "ümlaut", "new\\nline", "{json}"],
)
def test_rejects_a_request_id_that_is_not_a_sane_token(client, capsys, offered):
    capsys.readouterr()
    response = client.get("/", headers={"X-Request-ID": offered})
    made = response.headers["X-Request-ID"]
    assert made != offered and re.fullmatch(r"[0-9a-f]{32}", made)
    err = capsys.readouterr().err
    assert offered not in err and made in err


def test_records_inside_a_request_carry_its_id(client, activation, capsys):
    """The application's own lines (here a refused activation) and the access line share it."""
    activation_id, _code = activation
    capsys.readouterr()
    response = client.post(
        "/api/v1/enrolments",
        json={"activation_id": activation_id, "code": "AAAA-BBBB-CCCC-DDDD"},
        headers={"X-Request-ID": "req-42"},
    )
    assert response.status_code == 400
    lines = [line for line in _lines(capsys) if line.get("request_id") == "req-42"]
    assert [line["logger"] for line in lines] == ["idserver.errors", ACCESS_LOGGER]
    assert lines[0]["message"] == "refused POST /api/v1/enrolments: invalid_activation_code"
    assert lines[1]["status"] == 400


def test_an_unhandled_error_is_one_record_with_its_traceback(app, capsys):
    def broken(thing_id: str) -> str:
        raise RuntimeError("a bug")

    app.add_url_rule("/broken/<thing_id>", view_func=broken)
    capsys.readouterr()
    assert app.test_client().get("/broken/123").status_code == 500
    error, access = [line for line in _lines(capsys) if line["level"] != "DEBUG"]
    assert (
        error["level"] == "ERROR"
        and error["message"] == "unhandled error on GET /broken/<thing_id>"
    )
    assert "RuntimeError: a bug" in error["exception"]
    assert access["status"] == 500 and access["request_id"] == error["request_id"]


def test_a_held_long_poll_is_logged_when_it_ends_with_its_whole_duration(
    app, client, relying_party, capsys
):
    app.config["LONG_POLL_SECONDS"] = 1
    login_id = relying_party.start_login(client)
    version = desktop_status(client, login_id).json["version"]
    capsys.readouterr()
    held = desktop_status(client, login_id, seen=version)
    assert held.json["version"] == version  # nothing changed: the server answered after 1 s
    [line] = _access(capsys)
    assert line["route"] == "/login/<login_id>" and line["query"] == f"seen={version}"
    assert line["duration_ms"] >= 900


def test_static_files_are_not_in_the_access_log(client, capsys):
    capsys.readouterr()
    assert client.get("/static/js/activate.js").status_code == 200
    assert _access(capsys) == []


def test_the_text_format_is_one_readable_line(app_config, capsys):
    app = create_app({**app_config, "LOG_FORMAT": "text"})
    capsys.readouterr()
    app.test_client().get("/?lang=en&name=Erika", headers={"X-Request-ID": "t-1"})
    [line] = [x for x in capsys.readouterr().err.splitlines() if ACCESS_LOGGER in x]
    found = TEXT_LINE.fullmatch(line)
    assert found, line
    assert found["level"] == "INFO" and found["request_id"] == "t-1"
    assert re.fullmatch(r"GET / 200 duration_ms=[0-9.]+ query=lang=en&…", found["message"])


def test_the_text_format_keeps_a_request_on_one_line(app_config, capsys):
    """A value with a line break cannot forge a second line."""
    app = create_app({**app_config, "LOG_FORMAT": "text"})
    capsys.readouterr()
    app.test_client().get("/", query_string={"lang": "en\n2026-01-01T00:00:00.000Z INFO fake"})
    [line] = capsys.readouterr().err.splitlines()
    assert ACCESS_LOGGER in line and line.endswith(
        "query=lang=en%0A2026-01-01T00%3A00%3A00.000Z+INFO+fake"
    )


def test_log_level_and_format_settings(app_config):
    def settings(environ):
        return effective_config(environ=environ, instance_path="/tmp").values

    assert settings({})["LOG_LEVEL"] == "INFO"
    assert settings({"IDSERVER_LOG_LEVEL": "debug"})["LOG_LEVEL"] == "DEBUG"
    for env, expected in (("development", "text"), ("production", "json")):
        assert settings({"IDSERVER_ENV": env})["LOG_FORMAT"] == expected
    config = settings({"IDSERVER_ENV": "production", "IDSERVER_LOG_FORMAT": "text"})
    assert config["LOG_FORMAT"] == "text"
    app = create_app({**app_config, "LOG_LEVEL": "WARNING"})
    assert logging.getLogger().level == logging.WARNING
    assert app.config["LOG_FORMAT"] == "json"


@pytest.mark.parametrize(
    "overrides, message",
    [({"LOG_FORMAT": "xml"}, "IDSERVER_LOG_FORMAT"), ({"LOG_LEVEL": "LOUD"}, "IDSERVER_LOG_LEVEL")],
)
def test_refuses_unknown_log_settings(app_config, overrides, message):
    with pytest.raises(ConfigError, match=message):
        create_app({**app_config, **overrides})
