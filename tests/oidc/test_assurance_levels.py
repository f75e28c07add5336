"""Assurance levels (issue 17 item 3): the level of a login, its ``acr``, and discovery.

The level is the lower of identity proofing and authenticator (``idserver.assurance``); every
mapping defaults to ``low``, and the operator may raise it with ``IDSERVER_ASSURANCE_*``.
"""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace
from urllib.parse import urlencode

import pytest
from harness import complete_login
from harness import proof_in_person
from sqlalchemy import select

from idserver import assurance
from idserver.config import SETTINGS
from idserver.config import config_problems
from idserver.crosslogin.models import LoginTransaction
from idserver.db import db

DEFAULTS = {s.name: s.default for s in SETTINGS if s.name.startswith("ASSURANCE_")}
RAISED = {
    "ASSURANCE_IN_PERSON": "substantial",
    "ASSURANCE_HARDWARE_KEY": "high",
    "ASSURANCE_SYNCED_PASSKEY": "substantial",
    "ASSURANCE_APP_KEY": "substantial",
}


def _citizen(proofed: bool) -> SimpleNamespace:
    return SimpleNamespace(
        proofing_document="id_card" if proofed else None,
        proofed_on=dt.date(2026, 11, 2) if proofed else None,
    )


def _device(*, hardware: bool = False, backup_eligible: bool = False, kind: str = "passkey"):
    return SimpleNamespace(hardware_attested=hardware, backup_eligible=backup_eligible, kind=kind)


def test_every_default_mapping_claims_no_more_than_low():
    assert set(DEFAULTS.values()) == {"low"}
    for proofed in (True, False):
        for device in (_device(hardware=True), _device(), _device(kind="app")):
            assert assurance.login_level(_citizen(proofed), device, DEFAULTS) == "low"
    assert assurance.issuable_levels(DEFAULTS) == ("low",)


@pytest.mark.parametrize(
    ("proofed", "device", "level"),
    [
        (True, _device(hardware=True), "substantial"),  # proofing is the weaker link
        (True, _device(hardware=True, backup_eligible=True), "substantial"),  # may be synced
        (True, _device(), "substantial"),
        (True, _device(kind="app"), "substantial"),
        (False, _device(hardware=True), "low"),  # not proofed in person: low, whatever the key
    ],
)
def test_the_level_is_the_lower_of_proofing_and_authenticator(proofed, device, level):
    assert assurance.login_level(_citizen(proofed), device, RAISED) == level


def test_a_synced_passkey_bounds_the_level_even_when_proofing_is_high():
    config = {**RAISED, "ASSURANCE_IN_PERSON": "high", "ASSURANCE_SYNCED_PASSKEY": "low"}
    assert assurance.login_level(_citizen(True), _device(hardware=True), config) == "high"
    assert assurance.login_level(_citizen(True), _device(), config) == "low"
    assert assurance.issuable_levels(config) == ("low", "substantial", "high")


def test_stork_levels_map_both_ways():
    assert [assurance.stork_level(level) for level in assurance.LEVELS] == [
        "STORK-QAA-Level-1",
        "STORK-QAA-Level-3",
        "STORK-QAA-Level-4",
    ]
    for level in assurance.LEVELS:
        assert assurance.level_of_stork(assurance.stork_level(level)) == level
    assert assurance.level_of_stork("STORK-QAA-Level-2") == "low"  # met by any login
    assert assurance.level_of_stork("STORK-QAA-Level-5") is None


def test_acr_values_name_levels_in_both_vocabularies():
    assert assurance.level_of_acr("urn:buergerid:loa:substantial") == "substantial"
    assert assurance.level_of_acr("http://eidas.europa.eu/LoA/high") == "high"
    assert assurance.level_of_acr("urn:buergerid:acr:phone-number-matching") == "low"
    assert assurance.level_of_acr("urn:buergerid:loa:SUBSTANTIAL") is None
    # any of the values will do, so the lowest one named is what must be met
    values = ["http://eidas.europa.eu/LoA/high", "urn:buergerid:loa:substantial", "x"]
    assert assurance.required_level(values) == ("substantial", False)
    assert assurance.required_level(["x"]) == (None, True)
    assert assurance.required_level([]) == (None, False)


def test_an_assurance_setting_outside_the_levels_is_a_config_problem(app):
    config = {**app.config, "ASSURANCE_IN_PERSON": "very high"}
    assert any("ASSURANCE_IN_PERSON" in line for line in config_problems(config, explicit=()))


def test_discovery_lists_exactly_the_issuable_acr_values(app, client):
    assert client.get("/.well-known/openid-configuration").json["acr_values_supported"] == [
        "urn:buergerid:loa:low",
        "http://eidas.europa.eu/LoA/low",
    ]
    # a hardware key is worth "high", but proofing in person only "substantial": no high login
    app.config.update(RAISED)
    assert client.get("/.well-known/openid-configuration").json["acr_values_supported"] == [
        "urn:buergerid:loa:low",
        "urn:buergerid:loa:substantial",
        "http://eidas.europa.eu/LoA/low",
        "http://eidas.europa.eu/LoA/substantial",
    ]


def test_id_token_acr_is_the_achieved_level(app, client, relying_party, enrolled_phone, citizen):
    claims = relying_party.verify_id_token(
        client, complete_login(client, relying_party, enrolled_phone)["id_token"]
    )
    assert claims["acr"] == "urn:buergerid:loa:low"
    proof_in_person(app, citizen.id)
    app.config.update(RAISED)
    tokens = complete_login(
        client, relying_party, enrolled_phone, acr_values="urn:buergerid:loa:substantial"
    )
    assert relying_party.verify_id_token(client, tokens["id_token"])["acr"] == (
        "urn:buergerid:loa:substantial"
    )
    with app.app_context():
        levels = db.session.scalars(select(LoginTransaction.level)).all()
    assert sorted(levels) == ["low", "substantial"]


def test_acr_answers_in_the_vocabulary_the_relying_party_asked_in(
    client, relying_party, enrolled_phone
):
    tokens = complete_login(
        client, relying_party, enrolled_phone, acr_values="http://eidas.europa.eu/LoA/low"
    )
    claims = relying_party.verify_id_token(client, tokens["id_token"])
    assert claims["acr"] == "http://eidas.europa.eu/LoA/low"


def test_the_earlier_method_acr_values_are_still_accepted_as_low(
    client, relying_party, enrolled_phone
):
    tokens = complete_login(
        client, relying_party, enrolled_phone, acr_values="urn:buergerid:acr:phone-number-matching"
    )
    claims = relying_party.verify_id_token(client, tokens["id_token"])
    assert claims["acr"] == "urn:buergerid:loa:low"


def test_an_essential_acr_claim_is_honoured_like_acr_values(
    app, client, relying_party, enrolled_phone, citizen
):
    essential = {
        "id_token": {"acr": {"essential": True, "values": ["urn:buergerid:loa:substantial"]}}
    }
    params = relying_party.authorize_params(claims=json.dumps(essential))
    refused = client.get("/authorize?" + urlencode(params))
    assert "error=unmet_authentication_requirements" in refused.headers["Location"]
    proof_in_person(app, citizen.id)
    app.config.update(RAISED)
    tokens = complete_login(client, relying_party, enrolled_phone, claims=json.dumps(essential))
    claims = relying_party.verify_id_token(client, tokens["id_token"])
    assert claims["acr"] == "urn:buergerid:loa:substantial"
