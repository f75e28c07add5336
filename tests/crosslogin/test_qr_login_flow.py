"""The whole QR-code login: desktop ↔ phone ↔ relying party, ID token checked against JWKS."""

from __future__ import annotations

from harness import ISSUER
from harness import complete_login
from harness import desktop_status


def test_qr_login_issues_id_token_with_requested_claims(client, relying_party, enrolled_phone):
    tokens = complete_login(client, relying_party, enrolled_phone)
    claims = relying_party.verify_id_token(client, tokens["id_token"])
    assert claims["given_name"] == "Erika"
    assert claims["family_name"] == "Mustermann"
    assert claims["acr"] == "urn:buergerid:loa:low"  # the default mapping claims no more
    # the soft phone's "none" attestation proves nothing about hardware (RFC 8176 "swk")
    assert set(claims["amr"]) == {"swk", "user", "mfa"}
    assert "auth_time" in claims
    assert "address" not in claims  # only asked for "openid profile"
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.status_code == 200
    assert info.json["sub"] == claims["sub"]


def test_address_and_email_scopes_release_those_claims(client, relying_party, enrolled_phone):
    tokens = complete_login(client, relying_party, enrolled_phone, scope="openid address email")
    claims = relying_party.verify_id_token(client, tokens["id_token"])
    assert claims["address"]["street_address"] == "Kampstraße 12"
    assert claims["email"] == "erika@example.org"
    assert "given_name" not in claims


def test_desktop_status_waits_for_the_phone(client, relying_party, enrolled_phone):
    login_id = relying_party.start_login(client)
    first = desktop_status(client, login_id).json
    assert first["status"] == "pending"
    assert first["phone_url"].startswith(f"{ISSUER}/q/{login_id}?t=")
    # nothing happens: the long poll returns after its timeout with the same version
    relying_party.app.config["LONG_POLL_SECONDS"] = 1
    again = desktop_status(client, login_id, seen=first["version"]).json
    assert again["version"] == first["version"]


def test_desktop_page_renders_number_and_qr_data(client, relying_party):
    login_id = relying_party.start_login(client)
    page = client.get(f"/login/{login_id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert f'data-login-id="{login_id}"' in html
    assert "qrcode.js" in html
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]


def test_discovery_and_jwks(client):
    meta = client.get("/.well-known/openid-configuration").json
    assert meta["issuer"] == ISSUER
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["subject_types_supported"] == ["pairwise"]
    keys = client.get("/jwks.json").json["keys"]
    assert sorted(key["alg"] for key in keys) == ["ES256", "RS256"]
    assert not any("d" in key for key in keys)
