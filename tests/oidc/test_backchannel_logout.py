"""Logout everywhere: every way a Bürger-ID session ends sends a signed logout token to each
relying party it logged in to (OIDC Back-Channel Logout 1.0), retried; front-channel clients get
an iframe on the logged-out page; the session's access tokens are revoked, refresh tokens kept."""

from __future__ import annotations

import datetime as dt
import json
import re
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
from harness import ISSUER
from harness import OFFLINE
from harness import RP_REDIRECT
from harness import RelyingParty
from harness import complete_login
from harness import logout_deliveries
from harness import make_logouts_due
from harness import refresh
from joserfc import jwt
from joserfc.jwk import KeySet
from logout_receiver import logout_receiver
from sqlalchemy import select
from sqlalchemy import update

from idserver.account.devices import revoke_device
from idserver.account.devices import revoke_devices_with_code
from idserver.audit.models import AuditEvent
from idserver.db import db
from idserver.db import utcnow
from idserver.oidc.clients import register_client
from idserver.oidc.clients import update_client
from idserver.oidc.logout import BACKCHANNEL_LOGOUT_EVENT
from idserver.oidc.logout import deliver_due_logouts
from idserver.oidc.models import LogoutDelivery
from idserver.passkeys.models import Credential
from idserver.sessions import BrowserSession

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def receiver():
    with logout_receiver() as listening:
        yield listening


def _party(app, *, name="Bewohnerparkausweis", grant_types=(), **logout_uris) -> RelyingParty:
    with app.app_context():
        registered, secret = register_client(
            name=name,
            redirect_uris=[RP_REDIRECT],
            scope="openid profile",
            grant_types=list(grant_types),
            **logout_uris,
        )
    return RelyingParty(app, registered.client_id, secret)


def _claims(client, token: str) -> dict:
    return jwt.decode(token, KeySet.import_key_set(client.get("/jwks.json").json)).claims


def _verified_logout_token(client, token: str, *, client_id: str) -> dict:
    decoded = jwt.decode(token, KeySet.import_key_set(client.get("/jwks.json").json))
    assert decoded.header["typ"] == "logout+jwt" and decoded.header["kid"]
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": client_id},
        iat={"essential": True},
        exp={"essential": True},
        jti={"essential": True},
    ).validate(decoded.claims)
    return decoded.claims


def _userinfo(client, access_token):
    return client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})


def test_rp_initiated_logout_sends_a_signed_logout_token(app, client, enrolled_phone, receiver):
    party = _party(app, backchannel_logout_uri=receiver.uri)
    tokens = complete_login(client, party, enrolled_phone)
    id_claims = _claims(client, tokens["id_token"])
    assert _userinfo(client, tokens["access_token"]).status_code == 200

    response = client.get("/logout?" + urlencode({"id_token_hint": tokens["id_token"]}))

    assert response.status_code == 200
    (logout_token,) = receiver.logout_tokens
    claims = _verified_logout_token(client, logout_token, client_id=party.client_id)
    assert claims["sid"] == id_claims["sid"] and claims["sub"] == id_claims["sub"]
    assert claims["events"] == {BACKCHANNEL_LOGOUT_EVENT: {}}
    assert "nonce" not in claims
    assert claims["exp"] > claims["iat"]
    (delivery,) = logout_deliveries(app)
    assert delivery.delivered_at is not None and delivery.attempts == 1
    assert _userinfo(client, tokens["access_token"]).status_code == 401  # revoked


def test_logout_keeps_refresh_tokens_of_offline_access(app, client, enrolled_phone, receiver):
    party = _party(app, grant_types=["refresh_token"], backchannel_logout_uri=receiver.uri)
    tokens = complete_login(client, party, enrolled_phone, **OFFLINE)
    client.get("/logout")
    assert len(receiver.logout_tokens) == 1
    assert _userinfo(client, tokens["access_token"]).status_code == 401
    refreshed = refresh(client, party, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.json  # offline access outlives the session
    assert _userinfo(client, refreshed.json["access_token"]).status_code == 200


def test_account_logout_reaches_the_relying_party(app, client, enrolled_phone, receiver):
    party = _party(app, backchannel_logout_uri=receiver.uri)
    complete_login(client, party, enrolled_phone)
    html = client.get("/lost").get_data(as_text=True)
    token = CSRF_FIELD.search(html).group(1)
    response = client.post("/account/logout", data={"csrf_token": token})
    assert response.status_code in (302, 303)
    (logout_token,) = receiver.logout_tokens
    _verified_logout_token(client, logout_token, client_id=party.client_id)


@pytest.mark.parametrize("how", ["device_revoked", "lost_phone"])
def test_ending_the_device_reaches_the_relying_party(
    app, client, runner, enrolled_phone, citizen, receiver, how
):
    party = _party(app, backchannel_logout_uri=receiver.uri)
    tokens = complete_login(client, party, enrolled_phone)
    with app.app_context():
        if how == "device_revoked":
            (credential,) = db.session.scalars(select(Credential)).all()
            revoke_device(citizen.id, credential.id)
        else:
            assert revoke_devices_with_code(enrolled_phone.revocation_code) == citizen.id
    # Outside a request nothing is sent at once: the maintenance command (or serve) sends it.
    assert receiver.logout_tokens == []
    result = runner.invoke(args=["maintenance", "deliver-logouts"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"delivered": 1, "retrying": 0, "failed": 0}
    (logout_token,) = receiver.logout_tokens
    claims = _verified_logout_token(client, logout_token, client_id=party.client_id)
    assert claims["sid"] == _claims(client, tokens["id_token"])["sid"]


def test_a_second_login_in_the_browser_takes_the_first_ones_clients_along(
    app, client, enrolled_phone, receiver
):
    first = _party(app, name="Bewohnerparkausweis", backchannel_logout_uri=receiver.uri)
    second = _party(app, name="Wohngeld", backchannel_logout_uri=receiver.uri)
    first_tokens = complete_login(client, first, enrolled_phone)
    second_tokens = complete_login(client, second, enrolled_phone)
    assert receiver.logout_tokens == []  # the first session was taken over, not logged out
    client.get("/logout")
    by_audience = {
        _claims(client, token)["aud"]: _claims(client, token) for token in receiver.logout_tokens
    }
    assert set(by_audience) == {first.client_id, second.client_id}
    assert by_audience[first.client_id]["sid"] == _claims(client, first_tokens["id_token"])["sid"]
    assert by_audience[second.client_id]["sid"] == _claims(client, second_tokens["id_token"])["sid"]
    with app.app_context():
        sessions = db.session.scalars(select(BrowserSession)).all()
    assert all(session.ended_at is not None for session in sessions)


def test_a_failed_delivery_is_retried_with_backoff_then_given_up(
    app, client, runner, enrolled_phone, receiver
):
    app.config["LOGOUT_DELIVERY_ATTEMPTS"] = 3
    party = _party(app, backchannel_logout_uri=receiver.uri)
    complete_login(client, party, enrolled_phone)
    receiver.statuses = [500, 503, 500]
    client.get("/logout")
    (delivery,) = logout_deliveries(app)
    assert delivery.attempts == 1 and delivery.delivered_at is None
    assert delivery.last_error == "HTTP 500"
    first_wait = delivery.next_attempt_at - utcnow()
    assert dt.timedelta(seconds=20) < first_wait <= dt.timedelta(seconds=30)
    # Not due yet: nothing is sent.
    with app.app_context():
        assert deliver_due_logouts() == {"delivered": 0, "retrying": 0, "failed": 0}

    make_logouts_due(app)
    with app.app_context():
        assert deliver_due_logouts() == {"delivered": 0, "retrying": 1, "failed": 0}
    (delivery,) = logout_deliveries(app)
    assert delivery.next_attempt_at - utcnow() > dt.timedelta(seconds=50)  # doubled
    make_logouts_due(app)
    with app.app_context():
        assert deliver_due_logouts() == {"delivered": 0, "retrying": 0, "failed": 1}
    (delivery,) = logout_deliveries(app)
    assert delivery.failed_at is not None and delivery.attempts == 3
    assert len(receiver.received) == 3
    with app.app_context():
        (event,) = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "logout_delivery_failed")
        ).all()
    assert event.data["client_id"] == party.client_id and event.data["error"] == "HTTP 500"
    assert "logout_token" not in json.dumps(event.data)


def test_a_retry_delivers_after_the_relying_party_is_back(
    app, client, runner, enrolled_phone, receiver
):
    party = _party(app, backchannel_logout_uri=receiver.uri)
    complete_login(client, party, enrolled_phone)
    receiver.statuses = [500]
    client.get("/logout")
    with app.app_context():
        db.session.execute(update(LogoutDelivery).values(next_attempt_at=utcnow()))
        db.session.commit()
    result = runner.invoke(args=["maintenance", "deliver-logouts"])
    assert json.loads(result.output)["delivered"] == 1
    first, second = receiver.logout_tokens
    assert _claims(client, first)["jti"] != _claims(client, second)["jti"]  # a fresh token each
    (delivery,) = logout_deliveries(app)
    assert delivery.delivered_at is not None and delivery.attempts == 2


def test_an_unreachable_relying_party_does_not_break_the_logout(app, client, enrolled_phone):
    party = _party(app, backchannel_logout_uri="http://127.0.0.1:9/backchannel-logout")
    tokens = complete_login(client, party, enrolled_phone)
    response = client.get("/logout?" + urlencode({"id_token_hint": tokens["id_token"]}))
    assert response.status_code == 200
    (delivery,) = logout_deliveries(app)
    assert delivery.delivered_at is None and delivery.last_error == "ConnectionError"


def test_front_channel_logout_frames_the_client_on_the_logged_out_page(app, client, enrolled_phone):
    party = _party(app, frontchannel_logout_uri="http://localhost:8002/frontchannel-logout")
    tokens = complete_login(client, party, enrolled_phone)
    response = client.get("/logout")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    (src,) = re.findall(r'<iframe[^>]*src="([^"]+)"', page)
    src = src.replace("&amp;", "&")
    assert src.startswith("http://localhost:8002/frontchannel-logout?")
    query = parse_qs(urlsplit(src).query)
    assert query == {"iss": [ISSUER], "sid": [_claims(client, tokens["id_token"])["sid"]]}
    csp = response.headers["Content-Security-Policy"]
    assert csp.endswith("; frame-src http://localhost:8002")
    assert "<script>" not in page
    # Other pages frame nothing.
    assert "frame-src" not in client.get("/lost").headers["Content-Security-Policy"]


def test_front_channel_logout_with_a_post_logout_redirect_shows_a_link(app, client, enrolled_phone):
    party = _party(app, frontchannel_logout_uri="http://localhost:8002/frontchannel-logout")
    with app.app_context():
        update_client(party.client_id, post_logout_redirect_uris=["http://localhost:8001/bye"])
    tokens = complete_login(client, party, enrolled_phone)
    response = client.get(
        "/logout?"
        + urlencode(
            {
                "id_token_hint": tokens["id_token"],
                "post_logout_redirect_uri": "http://localhost:8001/bye",
            }
        )
    )
    assert response.status_code == 200  # the iframes need the page; the link continues
    page = response.get_data(as_text=True)
    assert 'href="http://localhost:8001/bye"' in page and "<iframe" in page


def test_discovery_lists_back_and_front_channel_logout(client):
    metadata = client.get("/.well-known/openid-configuration").json
    assert metadata["backchannel_logout_supported"] is True
    assert metadata["backchannel_logout_session_supported"] is True
    assert metadata["frontchannel_logout_supported"] is True
    assert metadata["frontchannel_logout_session_supported"] is True


def test_client_add_and_update_set_the_logout_uris(runner):
    added = runner.invoke(
        args=[
            "client",
            "add",
            "--name",
            "Portal",
            "--redirect-uri",
            "https://portal.example/callback",
            "--backchannel-logout-uri",
            "https://portal.example/backchannel-logout",
        ]
    )
    assert added.exit_code == 0, added.output
    registered = json.loads(added.output)
    assert registered["backchannel_logout_uri"] == "https://portal.example/backchannel-logout"
    client_id = registered["client_id"]
    updated = runner.invoke(
        args=[
            "client",
            "update",
            client_id,
            "--backchannel-logout-uri",
            "",
            "--frontchannel-logout-uri",
            "https://portal.example/frontchannel-logout",
        ]
    )
    assert updated.exit_code == 0, updated.output
    shown = json.loads(updated.output)
    assert shown["backchannel_logout_uri"] is None
    assert shown["frontchannel_logout_uri"] == "https://portal.example/frontchannel-logout"


@pytest.mark.parametrize(
    "uri", ["http://portal.example/logout", "https://portal.example/logout#x", "logout"]
)
def test_rejects_logout_uris_that_are_not_https_or_absolute(runner, db_state, uri):
    before = db_state()
    result = runner.invoke(
        args=[
            "client",
            "add",
            "--name",
            "Portal",
            "--redirect-uri",
            "https://portal.example/callback",
            "--backchannel-logout-uri",
            uri,
        ]
    )
    assert result.exit_code != 0
    assert db_state() == before


def test_another_citizens_login_in_the_browser_logs_the_first_one_out(
    app, client, enrolled_phone, other_citizen_phone, receiver
):
    party = _party(app, backchannel_logout_uri=receiver.uri)
    first = complete_login(client, party, enrolled_phone)
    complete_login(client, party, other_citizen_phone)
    (logout_token,) = receiver.logout_tokens  # Erika's session ended when Max logged in
    claims = _verified_logout_token(client, logout_token, client_id=party.client_id)
    assert claims["sub"] == _claims(client, first["id_token"])["sub"]
    assert _userinfo(client, first["access_token"]).status_code == 401


def test_account_logout_shows_the_front_channel_frames(app, client, enrolled_phone):
    party = _party(app, frontchannel_logout_uri="http://localhost:8002/frontchannel-logout")
    complete_login(client, party, enrolled_phone)
    token = CSRF_FIELD.search(client.get("/lost").get_data(as_text=True)).group(1)
    response = client.post("/account/logout", data={"csrf_token": token})
    assert response.status_code == 200  # the page itself: a redirect would lose the frames
    assert 'src="http://localhost:8002/frontchannel-logout?iss=' in response.get_data(as_text=True)
    assert "frame-src http://localhost:8002" in response.headers["Content-Security-Policy"]
