"""The ``idserver`` command prints JSON that scripts can read."""

from __future__ import annotations

import json

import pytest
from harness import citizen_count


def _run(runner, *args):
    result = runner.invoke(args=list(args))
    return result.exit_code, json.loads(result.output) if result.output.strip() else None


def test_citizen_add_then_activation_issue(runner):
    code, citizen = _run(
        runner,
        "citizen",
        "add",
        "--given-name",
        "Max",
        "--family-name",
        "Mustermann",
        "--birthdate",
        "1990-01-31",
        "--street",
        "Kreuzstraße 5",
        "--postcode",
        "44139",
        "--city",
        "Dortmund",
        "--email",
        "max@example.org",
    )
    assert code == 0 and citizen["id"]
    code, issued = _run(runner, "activation", "issue", citizen["id"])
    assert code == 0
    assert issued["activation_url"] == f"http://localhost/activate/{issued['activation_id']}"
    assert issued["activation_link"] == f"{issued['activation_url']}#code={issued['code']}"
    assert len(issued["code"]) == 19 and issued["expires_at"]


def test_citizen_add_refuses_bad_birthdate(app, runner):
    code, error = _run(
        runner,
        "citizen",
        "add",
        "--given-name",
        "Max",
        "--family-name",
        "M",
        "--birthdate",
        "31.01.1990",
        "--street",
        "S",
        "--postcode",
        "1",
        "--city",
        "C",
    )
    assert code == 1 and error["error"] == "invalid_citizen"
    assert citizen_count(app) == 0


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [
        ("--birthdate", "1980-02-31", "birthdate '1980-02-31' does not exist"),
        ("--birthdate", "2999-01-01", "birthdate is in the future"),
        ("--postcode", "4413", "postcode must be five digits"),
        ("--postcode", "D-44139", "postcode must be five digits"),
    ],
)
def test_citizen_add_says_why_a_date_or_postcode_is_refused(
    app, runner, db_state, option, value, reason
):
    before = db_state()
    fields = {"--birthdate": "1990-01-31", "--postcode": "44139", option: value}
    code, error = _run(
        runner,
        "citizen",
        "add",
        "--given-name",
        "Max",
        "--family-name",
        "M",
        "--street",
        "S",
        "--city",
        "C",
        *[part for item in fields.items() for part in item],
    )
    assert code == 1 and error["error"] == "invalid_citizen"
    assert reason in error["error_description"]
    assert db_state() == before


def test_activation_issue_for_unknown_citizen(runner):
    code, error = _run(runner, "activation", "issue", "nobody")
    assert code == 1 and error["error"] == "not_found"


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_citizen_import(app, runner, tmp_path, fmt):
    rows = [
        {
            "given_name": "Anna",
            "family_name": "Schmidt",
            "birthdate": "1970-02-03",
            "street": "Hohe Straße 1",
            "postcode": "44139",
            "city": "Dortmund",
            "email": "",
        },
        {
            "given_name": "Ben",
            "family_name": "Weber",
            "birthdate": "2001-12-24",
            "street": "Kampstraße 2",
            "postcode": "44137",
            "city": "Dortmund",
            "email": "b@x.de",
        },
    ]
    path = tmp_path / f"residents.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(rows))
    else:
        header = list(rows[0])
        lines = [",".join(header)] + [",".join(row[k] for k in header) for row in rows]
        path.write_text("\n".join(lines) + "\n")
    code, result = _run(runner, "citizen", "import", str(path))
    assert code == 0 and result["imported"] == 2
    assert citizen_count(app) == 2


def test_citizen_import_is_all_or_nothing(app, runner, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps(
            [
                {
                    "given_name": "Anna",
                    "family_name": "S",
                    "birthdate": "1970-02-03",
                    "street": "x",
                    "postcode": "12345",
                    "city": "y",
                },
                {
                    "given_name": "Ben",
                    "family_name": "W",
                    "birthdate": "not a date",
                    "street": "x",
                    "postcode": "12345",
                    "city": "y",
                },
            ]
        )
    )
    code, error = _run(runner, "citizen", "import", str(path))
    assert code == 1 and "row 2" in error["error_description"]
    assert citizen_count(app) == 0


def test_citizen_import_refuses_a_four_digit_postcode(app, runner, tmp_path, db_state):
    rows = [
        {"given_name": "Anna", "family_name": "S", "birthdate": "1970-02-03", "postcode": "44139"},
        {"given_name": "Ben", "family_name": "W", "birthdate": "1971-03-04", "postcode": "4413"},
    ]
    path = tmp_path / "residents.json"
    path.write_text(json.dumps([{**row, "street": "x", "city": "y"} for row in rows]))
    before = db_state()
    code, error = _run(runner, "citizen", "import", str(path))
    assert code == 1 and "row 2" in error["error_description"]
    assert "postcode must be five digits" in error["error_description"]
    assert db_state() == before


def test_client_add_prints_secret_once_and_stores_its_hash(app, runner):
    code, client = _run(
        runner,
        "client",
        "add",
        "--name",
        "Parken",
        "--redirect-uri",
        "https://parken.example/callback",
        "--scope",
        "openid profile address",
    )
    assert code == 0 and client["client_secret"]
    from idserver.db import db
    from idserver.oidc.models import Client

    with app.app_context():
        stored = db.session.get(Client, client["client_id"])
        assert stored.client_secret_hash != client["client_secret"]
        assert stored.check_client_secret(client["client_secret"])


@pytest.mark.parametrize(
    "uri",
    [
        "http://parken.example/callback",  # http only for loopback
        "https://parken.example/cb#frag",
        "https://*.example/cb",
        "parken.example/cb",
        "https://user:pw@parken.example/cb",
    ],
)
def test_client_add_refuses_unsafe_redirect_uris(runner, uri):
    code, error = _run(runner, "client", "add", "--name", "X", "--redirect-uri", uri)
    assert code == 1 and error["error"] == "invalid_redirect_uri"


def test_client_add_private_key_jwt_needs_keys(runner):
    code, error = _run(
        runner,
        "client",
        "add",
        "--name",
        "X",
        "--redirect-uri",
        "https://x.example/cb",
        "--auth-method",
        "private_key_jwt",
    )
    assert code == 1 and error["error"] == "invalid_client_metadata"


def test_keys_list(runner, app):
    code, listing = _run(runner, "keys", "list")
    assert code == 0 and listing["active"] in listing["published"]


def test_idserver_offers_only_its_own_commands():
    # Flask-Limiter installs a ``limiter`` group for every Flask CLI (an entry point); it is not
    # part of Bürger-ID's command and must neither be listed nor run.
    from click.testing import CliRunner

    from idserver.cli import main

    runner = CliRunner()
    shown = runner.invoke(main, ["--help"])
    assert shown.exit_code == 0 and "clerk" in shown.output
    assert "limiter" not in shown.output
    refused = runner.invoke(main, ["limiter", "config"])
    assert refused.exit_code == 2 and "No such command 'limiter'" in refused.output
