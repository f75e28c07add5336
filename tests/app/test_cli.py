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


def _add_client(runner, *extra):
    code, client = _run(
        runner,
        "client",
        "add",
        "--name",
        "Parken",
        "--redirect-uri",
        "https://parken.example/callback",
        *extra,
    )
    assert code == 0, client
    return client


def test_client_add_client_secret_post(runner):
    added = _add_client(runner, "--auth-method", "client_secret_post")
    assert added["client_secret"]
    assert added["token_endpoint_auth_method"] == "client_secret_post"


def test_client_list_show_and_lifecycle(app, runner):
    from sqlalchemy import select

    from idserver.audit.models import AuditEvent
    from idserver.db import db

    added = _add_client(runner)
    client_id = added["client_id"]
    code, listing = _run(runner, "client", "list")
    assert code == 0 and [c["client_id"] for c in listing] == [client_id]  # not the built-in
    assert listing[0]["status"] == "active" and "client_secret" not in listing[0]
    code, shown = _run(runner, "client", "show", client_id)
    assert code == 0 and shown == listing[0]

    code, updated = _run(
        runner,
        "client",
        "update",
        client_id,
        "--redirect-uri",
        "https://parken.example/a",
        "--redirect-uri",
        "https://parken.example/b",
        "--post-logout-redirect-uri",
        "https://parken.example/bye",
        "--name",
        "Anwohnerparken",
        "--scope",
        "openid address",
        "--auth-method",
        "client_secret_post",
        "--proximity-policy",
        "deny",
    )
    assert code == 0, updated
    assert updated["redirect_uris"] == ["https://parken.example/a", "https://parken.example/b"]
    assert updated["post_logout_redirect_uris"] == ["https://parken.example/bye"]
    assert updated["name"] == "Anwohnerparken" and updated["scope"] == "openid address"
    assert updated["token_endpoint_auth_method"] == "client_secret_post"
    assert updated["proximity_policy"] == "deny" and "client_secret" not in updated
    code, updated = _run(
        runner,
        "client",
        "update",
        client_id,
        "--proximity-policy",
        "default",
        "--no-post-logout-redirect-uris",
    )
    assert code == 0 and updated["proximity_policy"] is None
    assert updated["post_logout_redirect_uris"] == []

    code, disabled = _run(runner, "client", "disable", client_id)
    assert code == 0 and disabled["status"] == "disabled" and disabled["disabled_at"]
    code, enabled = _run(runner, "client", "enable", client_id)
    assert code == 0 and enabled["status"] == "active" and enabled["disabled_at"] is None
    code, rotated = _run(runner, "client", "rotate-secret", client_id)
    assert code == 0 and rotated["client_secret"] not in (None, added["client_secret"])
    code, deleted = _run(runner, "client", "delete", client_id, "--yes")
    assert code == 0 and deleted["status"] == "deleted"
    code, listing = _run(runner, "client", "list")
    assert listing == []
    code, listing = _run(runner, "client", "list", "--deleted")
    assert [c["status"] for c in listing] == ["deleted"]

    with app.app_context():
        events = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event.startswith("client_")).order_by(AuditEvent.id)
        ).all()
        assert [e.event for e in events] == [
            "client_added",
            "client_updated",
            "client_updated",
            "client_disabled",
            "client_enabled",
            "client_secret_rotated",
            "client_deleted",
        ]
        assert {e.actor for e in events} == {"operator"}
        assert all(e.data["os_user"] for e in events)
        assert all(e.data["client_id"] == client_id for e in events)
        secrets = (added["client_secret"], rotated["client_secret"])
        assert not any(s in json.dumps(e.data) for e in events for s in secrets)


@pytest.mark.parametrize(
    "command",
    [
        ["show"],
        ["update", "--name", "X"],
        ["disable"],
        ["enable"],
        ["rotate-secret"],
        ["delete", "--yes"],
    ],
)
@pytest.mark.parametrize("client_id", ["nobody", "buergerid"], ids=["unknown", "built-in"])
def test_client_commands_refuse_unknown_and_built_in_clients(
    app, runner, db_state, command, client_id
):
    from idserver.oidc.clients import self_client

    with app.app_context():
        self_client()  # the client of Bürger-ID's own pages: not the operator's to change
    before = db_state()
    code, error = _run(runner, "client", command[0], client_id, *command[1:])
    assert code == 1 and error["error"] == "unknown_client"
    assert db_state() == before


def test_client_update_refuses_an_invalid_redirect_uri(runner, db_state):
    added = _add_client(runner)
    before = db_state()
    code, error = _run(
        runner,
        "client",
        "update",
        added["client_id"],
        "--name",
        "Neu",
        "--redirect-uri",
        "http://parken.example/callback",
    )
    assert code == 1 and error["error"] == "invalid_redirect_uri"
    assert db_state() == before


def test_client_delete_asks_first(runner, db_state):
    added = _add_client(runner)
    before = db_state()
    result = runner.invoke(args=["client", "delete", added["client_id"]], input="n\n")
    assert result.exit_code == 1
    assert db_state() == before


def test_client_add_registers_for_refresh_tokens(runner, app):
    args = ["client", "add", "--name", "X", "--redirect-uri", "https://x.example/cb"]
    code, plain = _run(runner, *args)
    assert code == 0 and plain["grant_types"] == ["authorization_code"]
    code, offline = _run(runner, *args, "--grant-type", "refresh_token")
    assert code == 0 and offline["grant_types"] == ["authorization_code", "refresh_token"]
    refused = runner.invoke(args=[*args, "--grant-type", "password"])
    assert refused.exit_code == 2 and "password" in refused.output


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


RESIDENT = [
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
]


def _proofing(app, citizen_id):
    from idserver.citizens.models import Citizen
    from idserver.db import db

    with app.app_context():
        citizen = db.session.get(Citizen, citizen_id)
        return citizen.proofing_document, str(citizen.proofed_on), citizen.proofing_office


def test_citizen_add_records_an_identity_check_in_person(app, runner):
    """The operator's way to say how a resident was identified (assurance levels): the
    document, the day and the office (default IDSERVER_OFFICE_NAME)."""
    code, citizen = _run(
        runner, "citizen", "add", *RESIDENT, "--proofing-document", "passport",
        "--proofed-on", "2026-11-30",
    )  # fmt: skip
    assert code == 0
    assert _proofing(app, citizen["id"]) == ("passport", "2026-11-30", app.config["OFFICE_NAME"])


@pytest.mark.parametrize(
    "options",
    [
        ["--proofing-document", "passport"],  # no day
        ["--proofed-on", "2026-11-30"],  # no document
        ["--proofing-document", "passport", "--proofed-on", "2999-01-01"],  # in the future
        ["--proofing-document", "library_card", "--proofed-on", "2026-11-30"],
    ],
)
def test_citizen_add_refuses_an_incomplete_or_impossible_identity_check(
    app, runner, db_state, options
):
    before = db_state()
    result = runner.invoke(args=["citizen", "add", *RESIDENT, *options])
    assert result.exit_code != 0
    assert db_state() == before


def test_citizen_import_records_identity_checks_and_refuses_half_ones(app, runner, tmp_path):
    row = {
        "given_name": "Anna",
        "family_name": "Schmidt",
        "birthdate": "1970-02-03",
        "street": "Hohe Straße 1",
        "postcode": "44139",
        "city": "Dortmund",
    }
    checked = {
        **row,
        "proofing_document": "id_card",
        "proofed_on": "2026-11-02",
        "proofing_office": "Bürgerbüro Mitte",
    }
    half = {**row, "given_name": "Ben", "proofing_office": "Bürgerbüro Mitte"}
    path = tmp_path / "half.json"
    path.write_text(json.dumps([checked, half]))
    code, error = _run(runner, "citizen", "import", str(path))
    assert code == 1 and "row 2" in error["error_description"]
    assert citizen_count(app) == 0
    path.write_text(json.dumps([checked, row]))
    code, result = _run(runner, "citizen", "import", str(path))
    assert code == 0 and result["imported"] == 2
    from idserver.citizens.models import Citizen
    from idserver.db import db

    with app.app_context():
        anna, ben = sorted(db.session.query(Citizen).all(), key=lambda c: c.given_name)
        assert (anna.proofing_document, str(anna.proofed_on), anna.proofing_office) == (
            "id_card",
            "2026-11-02",
            "Bürgerbüro Mitte",
        )
        assert ben.proofing_document is None and ben.proofed_on is None
