"""A whole SAML login: a pysaml2 SP, the same QR code, phone and passkey, a signed answer."""

from __future__ import annotations

import base64
import json
import re
import shutil

import pytest
from flask_babel import force_locale
from harness import ISSUER
from harness import complete_login
from harness import desktop_status
from harness import proof_in_person
from saml2.saml import AuthnContextClassRef
from saml2.samlp import RequestedAuthnContext
from saml_sp import SLO
from saml_sp import SP_ENTITY
from saml_sp import SamlServiceProvider
from saml_sp import posted_fields
from saml_sp import qr_login
from sqlalchemy import select

from idserver.admin.events import describe_event
from idserver.audit.models import AuditEvent
from idserver.db import db
from idserver.saml import add_service_provider
from idserver.saml.idp import identity_provider
from idserver.saml.service import idp_settings

pytestmark = pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="xmlsec1 is missing")
IDP = f"{ISSUER}/saml/metadata"


@pytest.fixture
def saml_sp(app, client, tmp_path):
    metadata = client.get("/saml/metadata")
    assert metadata.status_code == 200
    sp = SamlServiceProvider(
        tmp_path, metadata.get_data(as_text=True), requested=("givenName", "sn")
    )
    with app.app_context():
        add_service_provider(sp.metadata(), source="test")
    return sp


def test_metadata_is_signed_and_names_both_bindings(client):
    xml = client.get("/saml/metadata").get_data(as_text=True)
    assert "<ds:Signature" in xml or "Signature" in xml
    assert f'entityID="{IDP}"' in xml
    assert "HTTP-Redirect" in xml and "HTTP-POST" in xml


def test_pysaml2_sp_completes_a_qr_login(client, saml_sp, enrolled_phone):
    _, fields = qr_login(client, saml_sp, enrolled_phone)
    assert fields["RelayState"] == "rs-1"
    response = saml_sp.read_response(fields["SAMLResponse"])
    identity = response.get_identity()
    assert identity["givenName"] == ["Erika"]
    assert identity["sn"] == ["Mustermann"]
    assert "schacDateOfBirth" not in identity and len(identity) == 2  # only what was asked
    subject = response.get_subject()
    assert subject.format.endswith("persistent")
    assert response.assertion.authn_statement[0].authn_context.authn_context_class_ref.text == (
        "STORK-QAA-Level-1"
    )


AKDB = (
    '<akdb:AuthenticationRequest xmlns:akdb="https://www.akdb.de/request/2018/09" Version="2">'
    "<akdb:RequestedAttributes>"
    '<akdb:RequestedAttribute Name="urn:oid:1.2.40.0.10.2.1.1.55" RequiredAttribute="true"/>'
    '<akdb:RequestedAttribute Name="urn:oid:2.5.4.7"/>'
    "</akdb:RequestedAttributes>"
    "<akdb:DisplayInformation>"
    '<classic-ui:Version xmlns:classic-ui="https://www.akdb.de/request/2018/09/classic-ui/v1">'
    "<classic-ui:OrganizationDisplayName>Stadt Dortmund – Hundesteuer"
    "</classic-ui:OrganizationDisplayName>"
    "</classic-ui:Version>"
    "</akdb:DisplayInformation>"
    "</akdb:AuthenticationRequest>"
)


def test_akdb_extension_names_the_service_and_adds_attributes(client, saml_sp, enrolled_phone):
    _, xml = saml_sp.authn_request(extensions_xml=AKDB)
    started = client.get(saml_sp.redirect(xml))
    assert started.status_code == 303, started.get_data(as_text=True)
    login_id = started.headers["Location"].rsplit("/", 1)[-1]
    status = desktop_status(client, login_id).json
    _, scanned = enrolled_phone.scan(status["phone_url"])
    shown = scanned.json.get("context", scanned.json)
    assert "Stadt Dortmund – Hundesteuer" in str(shown)
    assert "birthdate" in str(shown) and "address" in str(shown)


def test_pysaml2_sp_logs_in_over_the_post_binding(client, saml_sp, enrolled_phone):
    request_id, xml = saml_sp.authn_request(sign=True)
    encoded = base64.b64encode(xml.encode()).decode()
    started = client.post("/saml/sso", data={"SAMLRequest": encoded, "RelayState": "p"})
    assert started.status_code == 303, started.get_data(as_text=True)
    login_id = started.headers["Location"].rsplit("/", 1)[-1]
    status = desktop_status(client, login_id).json
    assert enrolled_phone.approve(status["phone_url"], status["number"]).status_code == 200
    answer = client.get(desktop_status(client, login_id).json["continue_url"])
    fields = posted_fields(answer.get_data(as_text=True))
    response = saml_sp.read_response(fields["SAMLResponse"])
    assert response.in_response_to == request_id
    assert fields["RelayState"] == "p"


def test_nameid_is_the_same_pseudonym_at_each_login_and_differs_per_sp(
    app, client, saml_sp, enrolled_phone, tmp_path, relying_party
):
    _, first = qr_login(client, saml_sp, enrolled_phone)
    _, second = qr_login(client, saml_sp, enrolled_phone)
    one = saml_sp.read_response(first["SAMLResponse"]).get_subject().text
    two = saml_sp.read_response(second["SAMLResponse"]).get_subject().text
    assert one == two
    tokens = complete_login(client, relying_party, enrolled_phone)
    assert relying_party.verify_id_token(client, tokens["id_token"])["sub"] != one


def test_denied_login_is_answered_with_request_denied(client, saml_sp, enrolled_phone):
    started = client.get(saml_sp.redirect_request(IDP))
    login_id = started.headers["Location"].rsplit("/", 1)[-1]
    status = desktop_status(client, login_id).json
    login, scanned = enrolled_phone.scan(status["phone_url"])
    wrong = "10" if status["number"] != "10" else "11"
    enrolled_phone.challenge(login, scanned.json["binding"], wrong)
    answer = client.get(desktop_status(client, login_id).json["continue_url"])
    fields = posted_fields(answer.get_data(as_text=True))
    assert "status:RequestDenied" in base64.b64decode(fields["SAMLResponse"]).decode()


def test_single_logout_ends_the_session_and_answers_signed(client, saml_sp, enrolled_phone):
    _, fields = qr_login(client, saml_sp, enrolled_phone)
    name_id = saml_sp.read_response(fields["SAMLResponse"]).get_subject()
    assert client.get("/account").status_code == 200
    answer = client.get(saml_sp.redirect(saml_sp.logout_request(name_id), path=SLO))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    logout = posted_fields(answer.get_data(as_text=True))
    assert saml_sp.read_logout_response(logout["SAMLResponse"]).status_ok()
    assert client.get("/account").status_code == 303  # logged out of Bürger-ID


def test_cli_adds_lists_and_removes_a_service_provider(app, runner, saml_sp, tmp_path):
    path = tmp_path / "sp.xml"
    path.write_text(saml_sp.metadata().replace(SP_ENTITY, "https://other.example/sp"))
    added = runner.invoke(args=["saml-sp", "add", "--metadata", str(path)])
    assert added.exit_code == 0, added.output
    assert json.loads(added.output)["entity_id"] == "https://other.example/sp"
    listed = json.loads(runner.invoke(args=["saml-sp", "list"]).output)
    assert {sp["entity_id"] for sp in listed} == {SP_ENTITY, "https://other.example/sp"}
    removed = runner.invoke(args=["saml-sp", "remove", "https://other.example/sp"])
    assert removed.exit_code == 0, removed.output
    with app.app_context():
        events = [e.event for e in db.session.scalars(select(AuditEvent))]
    assert events.count("saml_sp_added") == 2 and "saml_sp_removed" in events


def test_without_xmlsec1_saml_answers_503(client, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    response = client.get("/saml/metadata")
    assert response.status_code == 503
    assert "xmlsec1" in response.get_data(as_text=True)


def test_rotating_the_saml_key_publishes_a_new_certificate(client, runner):
    before = client.get("/saml/metadata").get_data(as_text=True)
    rotated = runner.invoke(args=["keys", "rotate", "--purpose", "saml"])
    assert rotated.exit_code == 0, rotated.output
    after = client.get("/saml/metadata").get_data(as_text=True)
    certificate = re.compile(r"<(?:ds|ns\d):X509Certificate>([^<]+)<")
    assert certificate.findall(before) and certificate.findall(after)
    assert certificate.findall(before)[0] != certificate.findall(after)[0]


def test_the_idp_keeps_no_assertion_in_memory(app, client, saml_sp, enrolled_phone):
    """pysaml2 would keep each assertion (citizen data) in a dict of the process for ever."""
    qr_login(client, saml_sp, enrolled_phone)
    with app.test_request_context():
        server = identity_provider(idp_settings())
    assert server.session_db.assertion == {}
    assert server.session_db.authn == {}


def test_a_passive_request_is_answered_no_passive(client, saml_sp, db_state):
    """IsPassive: the IdP must not interact with the citizen, and every login here does."""
    request_id, xml = saml_sp.authn_request(is_passive="true")
    before = db_state()
    answer = client.get(saml_sp.redirect(xml))
    assert answer.status_code == 200
    assert db_state() == before
    decoded = base64.b64decode(posted_fields(answer.get_data(as_text=True))["SAMLResponse"])
    assert b"urn:oasis:names:tc:SAML:2.0:status:NoPassive" in decoded
    assert f'InResponseTo="{request_id}"'.encode() in decoded


def test_cli_refuses_metadata_without_a_signing_certificate(
    app, runner, saml_sp, tmp_path, db_state
):
    path = tmp_path / "unsigned-sp.xml"
    metadata = re.sub(
        r"<(\w+):KeyDescriptor.*?</\1:KeyDescriptor>", "", saml_sp.metadata(), flags=re.S
    )
    path.write_text(metadata.replace(SP_ENTITY, "https://unsigned.example/sp"))
    before = db_state()
    refused = runner.invoke(args=["saml-sp", "add", "--metadata", str(path)])
    assert refused.exit_code == 1
    assert "signing certificate" in refused.output
    assert db_state() == before


RAISED = {
    "ASSURANCE_IN_PERSON": "substantial",
    "ASSURANCE_HARDWARE_KEY": "substantial",
    "ASSURANCE_SYNCED_PASSKEY": "substantial",
    "ASSURANCE_APP_KEY": "substantial",
}


def _substantial_request() -> dict:
    return {
        "requested_authn_context": RequestedAuthnContext(
            authn_context_class_ref=[AuthnContextClassRef(text="STORK-QAA-Level-3")],
            comparison="minimum",
        )
    }


def test_a_raised_level_is_answered_for_a_citizen_proofed_in_person(
    app, client, saml_sp, enrolled_phone, citizen
):
    """The assurance model decides the STORK level: with the operator's mapping raised, a
    resident checked in person at the counter reaches Level-3 (substantiell)."""
    app.config.update(RAISED)
    proof_in_person(app, citizen.id)
    _, fields = qr_login(client, saml_sp, enrolled_phone, **_substantial_request())
    response = saml_sp.read_response(fields["SAMLResponse"])
    assert response.assertion.authn_statement[0].authn_context.authn_context_class_ref.text == (
        "STORK-QAA-Level-3"
    )
    # without asking, the login's own level is named too
    _, fields = qr_login(client, saml_sp, enrolled_phone)
    response = saml_sp.read_response(fields["SAMLResponse"])
    assert response.assertion.authn_statement[0].authn_context.authn_context_class_ref.text == (
        "STORK-QAA-Level-3"
    )


def test_a_citizen_below_the_requested_level_is_answered_no_authn_context(
    app, client, saml_sp, enrolled_phone
):
    """Level-3 can be reached under this configuration, so the login starts; the resident
    was never checked in person, so the approval is refused and the SP gets NoAuthnContext,
    with no assertion."""
    app.config.update(RAISED)
    started = client.get(saml_sp.redirect_request(IDP, **_substantial_request()))
    assert started.status_code == 303
    login_id = started.headers["Location"].rsplit("/", 1)[-1]
    status = desktop_status(client, login_id).json
    refused = enrolled_phone.approve(status["phone_url"], status["number"])
    assert refused.status_code == 403 and refused.json["error"] == "level_too_low"
    answer = client.get(desktop_status(client, login_id).json["continue_url"])
    decoded = base64.b64decode(posted_fields(answer.get_data(as_text=True))["SAMLResponse"])
    assert b"status:NoAuthnContext" in decoded and b"Assertion " not in decoded


def _akdb_for_service(online_service_id: str) -> str:
    return (
        '<akdb:AuthenticationRequest xmlns:akdb="https://www.akdb.de/request/2018/09" Version="2">'
        "<akdb:DisplayInformation>"
        '<classic-ui:Version xmlns:classic-ui="https://www.akdb.de/request/2018/09/classic-ui/v1">'
        "<classic-ui:OrganizationDisplayName>Stadt Dortmund</classic-ui:OrganizationDisplayName>"
        f"<classic-ui:OnlineServiceId>{online_service_id}</classic-ui:OnlineServiceId>"
        "</classic-ui:Version>"
        "</akdb:DisplayInformation>"
        "</akdb:AuthenticationRequest>"
    )


def test_the_online_service_is_recorded_in_the_audit_log_and_not_shown_to_the_citizen(
    app, client, saml_sp, enrolled_phone
):
    """AKDB OnlineServiceId: a municipality sees which of its online services a login was for;
    the citizen sees the organisation's name only (no display name exists for the id)."""

    def start() -> tuple[str, dict]:
        _, xml = saml_sp.authn_request(extensions_xml=_akdb_for_service(" BMI-4711 "))
        started = client.get(saml_sp.redirect(xml))
        assert started.status_code == 303, started.get_data(as_text=True)
        login_id = started.headers["Location"].rsplit("/", 1)[-1]
        return login_id, desktop_status(client, login_id).json

    login_id, status = start()
    _, scanned = enrolled_phone.scan(status["phone_url"])
    assert "Stadt Dortmund" in str(scanned.json) and "4711" not in str(scanned.json)
    assert "4711" not in client.get(f"/login/{login_id}").get_data(as_text=True)
    login_id, status = start()
    assert enrolled_phone.approve(status["phone_url"], status["number"]).status_code == 200
    answer = client.get(desktop_status(client, login_id).json["continue_url"])
    assert "SAMLResponse" in posted_fields(answer.get_data(as_text=True))
    with app.app_context():
        (event,) = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "saml_assertion_issued")
        ).all()
        assert event.data["online_service_id"] == "BMI-4711"

        with app.test_request_context(), force_locale("en"):
            sentence = describe_event(event)
    assert sentence == (
        f"A signed SAML answer was sent to service no. {event.data['sp_id']} "
        "(online service BMI-4711)."
    )


def test_a_login_without_an_online_service_reads_with_a_dash(app, client, saml_sp, enrolled_phone):
    qr_login(client, saml_sp, enrolled_phone)
    with app.app_context():
        (event,) = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "saml_assertion_issued")
        ).all()
        assert "online_service_id" not in event.data

        with app.test_request_context(), force_locale("de"):
            sentence = describe_event(event)
    assert sentence.endswith("gesendet (Onlinedienst –).")


@pytest.mark.parametrize(
    "online_service_id",
    ["B" * 65, "BMI 4711", "-4711", "Hundesteuer/Dortmund", "Straße", "<x/>", "&lt;b&gt;"],
)
def test_rejects_an_online_service_id_that_is_no_identifier(
    client, saml_sp, db_state, online_service_id
):
    """Answered to the SP's registered ACS with a SAML status; no login, no request ID kept."""
    request_id, xml = saml_sp.authn_request(extensions_xml=_akdb_for_service(online_service_id))
    before = db_state()
    answer = client.get(saml_sp.redirect(xml))
    assert answer.status_code == 200
    assert db_state() == before
    decoded = base64.b64decode(posted_fields(answer.get_data(as_text=True))["SAMLResponse"])
    assert b"urn:oasis:names:tc:SAML:2.0:status:RequestUnsupported" in decoded
    assert b"OnlineServiceId" in decoded
    assert f'InResponseTo="{request_id}"'.encode() in decoded
