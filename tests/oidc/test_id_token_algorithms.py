"""ID tokens per client: ES256 by default, RS256 on request (OIDC Discovery §3 makes RS256
mandatory to offer), each signed by that algorithm's active key; ``azp`` and ``sid``."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from harness import complete_login
from joserfc import jws
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select

from idserver.db import db
from idserver.errors import IdServerError
from idserver.oidc.claims import session_identifier
from idserver.oidc.clients import register_client
from idserver.oidc.clients import update_client
from idserver.sessions import BrowserSession

BAD_ALGORITHMS = ["none", "HS256", "RS512", "PS256", "ES384", "rs256", ""]


def _use_rs256(app: Any, relying_party: Any) -> None:
    with app.app_context():
        update_client(relying_party.client_id, id_token_alg="RS256")


def _header(id_token: str) -> dict[str, Any]:
    return dict(jws.extract_compact(id_token.encode()).headers())


def _jwks(client: Any) -> dict[str, Any]:
    return dict(client.get("/jwks.json").json)


def _kids(client: Any, alg: str) -> set[str]:
    return {key["kid"] for key in _jwks(client)["keys"] if key["alg"] == alg}


def test_an_rs256_client_gets_an_rs256_id_token_verifiable_with_the_jwks(
    app, client, relying_party, enrolled_phone
):
    _use_rs256(app, relying_party)
    id_token = complete_login(client, relying_party, enrolled_phone)["id_token"]
    header = _header(id_token)
    assert header["alg"] == "RS256"
    (published,) = [key for key in _jwks(client)["keys"] if key["kid"] == header["kid"]]
    assert (published["kty"], published["alg"], published["use"]) == ("RSA", "RS256", "sig")
    keys = KeySet.import_key_set(_jwks(client))
    claims = jwt.decode(id_token, keys, algorithms=["RS256"]).claims
    assert claims["aud"] == claims["azp"] == relying_party.client_id
    assert claims["nonce"] == relying_party.nonce
    with pytest.raises(JoseError):  # an ES256-only verifier does not take it
        jwt.decode(id_token, keys, algorithms=["ES256"])


def test_es256_stays_the_default(app, client, runner, relying_party, enrolled_phone):
    id_token = complete_login(client, relying_party, enrolled_phone)["id_token"]
    assert _header(id_token)["alg"] == "ES256"
    assert _header(id_token)["kid"] in _kids(client, "ES256")
    assert relying_party.verify_id_token(client, id_token)
    shown = runner.invoke(args=["client", "show", relying_party.client_id])
    assert json.loads(shown.output)["id_token_signed_response_alg"] == "ES256"


def test_the_cli_registers_and_changes_the_id_token_algorithm(runner):
    added = runner.invoke(
        args=[
            "client",
            "add",
            "--name",
            "Bibliothek",
            "--redirect-uri",
            "https://bibliothek.example/callback",
            "--id-token-alg",
            "RS256",
        ]
    )
    assert added.exit_code == 0, added.output
    client_id = json.loads(added.output)["client_id"]
    assert json.loads(added.output)["id_token_signed_response_alg"] == "RS256"
    updated = runner.invoke(args=["client", "update", client_id, "--id-token-alg", "ES256"])
    assert updated.exit_code == 0, updated.output
    shown = runner.invoke(args=["client", "show", client_id])
    assert json.loads(shown.output)["id_token_signed_response_alg"] == "ES256"


@pytest.mark.parametrize("alg", BAD_ALGORITHMS)
def test_rejects_an_id_token_algorithm_the_server_does_not_sign_with(
    app, runner, relying_party, db_state, alg
):
    before = db_state()
    with app.app_context():
        with pytest.raises(IdServerError) as refused:
            register_client(
                name="Bibliothek",
                redirect_uris=["https://bibliothek.example/callback"],
                id_token_alg=alg,
            )
        assert refused.value.error == "invalid_client_metadata"
        db.session.rollback()
        with pytest.raises(IdServerError):
            update_client(relying_party.client_id, id_token_alg=alg)
        db.session.rollback()
    for args in (
        ["client", "add", "--name", "B", "--redirect-uri", "https://b.example/cb"],
        ["client", "update", relying_party.client_id],
    ):
        result = runner.invoke(args=[*args, "--id-token-alg", alg])
        assert result.exit_code != 0
    assert db_state() == before


def test_rotating_the_rsa_key_publishes_both_until_retirement(
    app, client, runner, relying_party, enrolled_phone
):
    _use_rs256(app, relying_party)
    (old_kid,) = _kids(client, "RS256")
    es256 = _kids(client, "ES256")
    old_token = complete_login(client, relying_party, enrolled_phone)["id_token"]
    rotated = runner.invoke(args=["keys", "rotate", "--purpose", "id_token", "--alg", "RS256"])
    assert rotated.exit_code == 0, rotated.output
    (new_kid,) = json.loads(rotated.output)["rotated"]
    assert json.loads(rotated.output)["active_by_alg"]["RS256"] == new_kid
    assert _kids(client, "RS256") == {old_kid, new_kid}
    assert _kids(client, "ES256") == es256  # the other algorithm's key is left alone
    new_token = complete_login(client, relying_party, enrolled_phone)["id_token"]
    assert _header(new_token)["kid"] == new_kid
    keys = KeySet.import_key_set(_jwks(client))
    for token in (old_token, new_token):
        assert jwt.decode(token, keys, algorithms=["RS256"]).claims["azp"]
    retired = runner.invoke(args=["keys", "retire", old_kid])
    assert retired.exit_code == 0, retired.output
    assert _kids(client, "RS256") == {new_kid}


def test_rotating_without_alg_rotates_every_id_token_key(client, runner, db_state):
    before = {alg: _kids(client, alg) for alg in ("ES256", "RS256")}
    rotated = runner.invoke(args=["keys", "rotate"])
    assert rotated.exit_code == 0, rotated.output
    kids = json.loads(rotated.output)["rotated"]
    assert len(kids) == 2
    for alg in ("ES256", "RS256"):
        (new,) = _kids(client, alg) - before[alg]
        assert new in kids
    before_refusal = db_state()
    refused = runner.invoke(args=["keys", "rotate", "--purpose", "audit", "--alg", "RS256"])
    assert refused.exit_code == 1  # audit keys are ES256 only
    assert db_state() == before_refusal


def test_logout_accepts_an_rs256_id_token_hint(app, client, relying_party, enrolled_phone):
    _use_rs256(app, relying_party)
    with app.app_context():
        update_client(
            relying_party.client_id, post_logout_redirect_uris=["http://localhost:8001/goodbye"]
        )
    id_token = complete_login(client, relying_party, enrolled_phone)["id_token"]
    assert _header(id_token)["alg"] == "RS256"
    response = client.get(
        "/logout?"
        + urlencode(
            {
                "id_token_hint": id_token,
                "post_logout_redirect_uri": "http://localhost:8001/goodbye",
                "state": "bye",
            }
        )
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "http://localhost:8001/goodbye?state=bye"
    with app.app_context():
        (session,) = db.session.scalars(select(BrowserSession)).all()
        assert session.ended_at is not None


def test_sid_names_the_browser_session_and_differs_between_sessions(
    app, client, relying_party, enrolled_phone
):
    sids = []
    for _ in range(2):
        id_token = complete_login(client, relying_party, enrolled_phone)["id_token"]
        claims = relying_party.verify_id_token(client, id_token)
        assert claims["azp"] == relying_party.client_id
        sids.append(claims["sid"])
    with app.app_context():
        sessions = db.session.scalars(
            select(BrowserSession).order_by(BrowserSession.created_at)
        ).all()
        # The same value again from the session row (back-channel logout will need it), and
        # neither the session id (the cookie's secret) nor the login id.
        assert [session_identifier(s.login_id) for s in sessions] == sids
        for session, sid in zip(sessions, sids, strict=True):
            assert sid not in (session.id, session.login_id)
    assert sids[0] != sids[1]
