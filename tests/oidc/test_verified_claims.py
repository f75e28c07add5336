"""``verified_claims`` (OpenID Connect for Identity Assurance 1.0; issue 17 item 4), in the ID
token and at userinfo (§5: each where the ``claims`` parameter asked for them)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
from harness import complete_login
from harness import desktop_status
from harness import proof_in_person

REQUEST = json.dumps(
    {
        "id_token": {
            "verified_claims": {
                "verification": {"trust_framework": None},
                "claims": {"given_name": None, "family_name": None, "birthdate": None},
            }
        }
    }
)


AT_USERINFO = json.dumps(
    {
        "userinfo": {
            "verified_claims": {
                "verification": {"trust_framework": None},
                "claims": {"given_name": None, "family_name": None, "birthdate": None},
            }
        }
    }
)
EXPECTED = {
    "verification": {
        "trust_framework": "de_aml",
        "evidence": [
            {
                "type": "document",
                "check_details": [
                    {
                        "check_method": "vpip",
                        "organization": "Bürgerbüro Musterstadt",
                        "time": "2026-11-02",
                    }
                ],
                "document_details": {"type": "idcard"},
            }
        ],
    },
    "claims": {"given_name": "Erika", "family_name": "Mustermann", "birthdate": "1984-08-12"},
}


def _id_token(client, relying_party, phone, **params):
    tokens = complete_login(client, relying_party, phone, **params)
    return relying_party.verify_id_token(client, tokens["id_token"])


def _userinfo(client, access_token: str) -> dict:
    response = client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json


def test_verified_claims_of_a_resident_checked_in_person(
    app, client, relying_party, enrolled_phone, citizen
):
    proof_in_person(app, citizen.id)
    relying_party.scope = "openid profile birthdate"
    claims = _id_token(client, relying_party, enrolled_phone, claims=REQUEST)
    assert claims["verified_claims"] == EXPECTED


def test_only_claims_the_scope_releases_are_verified(
    app, client, relying_party, enrolled_phone, citizen
):
    proof_in_person(app, citizen.id, "passport")
    relying_party.scope = "openid profile"  # no birthdate scope: no verified birthdate either
    claims = _id_token(client, relying_party, enrolled_phone, claims=REQUEST)
    assert claims["verified_claims"]["claims"] == {
        "given_name": "Erika",
        "family_name": "Mustermann",
    }
    evidence = claims["verified_claims"]["verification"]["evidence"][0]
    assert evidence["document_details"] == {"type": "passport"}
    assert "birthdate" not in claims


def test_no_verified_claims_without_a_check_in_person_or_a_request(
    app, client, relying_party, enrolled_phone, citizen
):
    assert "verified_claims" not in _id_token(client, relying_party, enrolled_phone, claims=REQUEST)
    proof_in_person(app, citizen.id)
    assert "verified_claims" not in _id_token(client, relying_party, enrolled_phone)
    app.config["VERIFIED_CLAIMS_TRUST_FRAMEWORK"] = ""  # the operator switched them off
    assert "verified_claims" not in _id_token(client, relying_party, enrolled_phone, claims=REQUEST)


def test_the_phone_lists_the_identity_check_before_the_citizen_approves(
    client, relying_party, enrolled_phone
):
    login_id = relying_party.start_login(client, claims=REQUEST)
    status = desktop_status(client, login_id).json
    _, scanned = enrolled_phone.scan(status["phone_url"])
    assert "verified_claims" in scanned.json["context"]["claims"]


def test_discovery_advertises_identity_assurance(app, client):
    metadata = client.get("/.well-known/openid-configuration").json
    assert metadata["verified_claims_supported"] is True
    assert metadata["trust_frameworks_supported"] == ["de_aml"]
    assert metadata["evidence_supported"] == ["document"]
    assert metadata["documents_supported"] == ["idcard", "passport", "residence_permit"]
    assert metadata["claims_in_verified_claims_supported"] == [
        "given_name",
        "family_name",
        "birthdate",
        "address",
    ]
    app.config["VERIFIED_CLAIMS_TRUST_FRAMEWORK"] = ""
    assert "verified_claims_supported" not in client.get("/.well-known/openid-configuration").json


@pytest.mark.parametrize("claims", ["{not json", "[1, 2]", '"id_token"'])
def test_rejects_a_claims_parameter_that_is_no_json_object(client, relying_party, db_state, claims):
    before = db_state()
    params = relying_party.authorize_params(claims=claims)
    response = client.get("/authorize?" + urlencode(params))
    assert response.status_code == 303
    assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == ["invalid_request"]
    assert db_state() == before


def test_verified_claims_at_userinfo_when_asked_for_there(
    app, client, relying_party, enrolled_phone, citizen
):
    proof_in_person(app, citizen.id)
    relying_party.scope = "openid profile birthdate"
    tokens = complete_login(client, relying_party, enrolled_phone, claims=AT_USERINFO)
    assert _userinfo(client, tokens["access_token"])["verified_claims"] == EXPECTED
    id_token = relying_party.verify_id_token(client, tokens["id_token"])
    assert "verified_claims" not in id_token  # asked for at userinfo only


def test_verified_claims_asked_for_in_the_id_token_are_not_at_userinfo(
    app, client, relying_party, enrolled_phone, citizen
):
    proof_in_person(app, citizen.id)
    relying_party.scope = "openid profile birthdate"
    tokens = complete_login(client, relying_party, enrolled_phone, claims=REQUEST)
    id_token = relying_party.verify_id_token(client, tokens["id_token"])
    assert id_token["verified_claims"] == EXPECTED
    assert "verified_claims" not in _userinfo(client, tokens["access_token"])


def test_only_claims_the_scope_releases_are_verified_at_userinfo(
    app, client, relying_party, enrolled_phone, citizen
):
    proof_in_person(app, citizen.id, "residence_permit")
    relying_party.scope = "openid profile"  # no birthdate scope: no verified birthdate either
    tokens = complete_login(client, relying_party, enrolled_phone, claims=AT_USERINFO)
    info = _userinfo(client, tokens["access_token"])
    assert info["verified_claims"]["claims"] == {"given_name": "Erika", "family_name": "Mustermann"}
    evidence = info["verified_claims"]["verification"]["evidence"][0]
    assert evidence["document_details"] == {"type": "residence_permit"}
    assert "birthdate" not in info


def test_no_verified_claims_at_userinfo_without_a_check_in_person_or_a_request(
    app, client, relying_party, enrolled_phone, citizen
):
    relying_party.scope = "openid profile birthdate"
    tokens = complete_login(client, relying_party, enrolled_phone, claims=AT_USERINFO)
    assert "verified_claims" not in _userinfo(client, tokens["access_token"])
    proof_in_person(app, citizen.id)
    tokens = complete_login(client, relying_party, enrolled_phone)
    assert "verified_claims" not in _userinfo(client, tokens["access_token"])
    tokens = complete_login(client, relying_party, enrolled_phone, claims=AT_USERINFO)
    app.config["VERIFIED_CLAIMS_TRUST_FRAMEWORK"] = ""  # the operator switched them off
    assert "verified_claims" not in _userinfo(client, tokens["access_token"])


def test_the_phone_lists_the_identity_check_asked_for_at_userinfo(
    client, relying_party, enrolled_phone
):
    login_id = relying_party.start_login(client, claims=AT_USERINFO)
    status = desktop_status(client, login_id).json
    _, scanned = enrolled_phone.scan(status["phone_url"])
    assert "verified_claims" in scanned.json["context"]["claims"]
