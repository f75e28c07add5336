"""A whole SAML login: a pysaml2 SP, the same QR code, phone and passkey, a signed answer."""

from __future__ import annotations

import html
import shutil

import pytest
from harness import ISSUER
from harness import desktop_status
from saml_sp import SamlServiceProvider
from saml_sp import posted_fields

from idserver.saml import add_service_provider

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


def saml_login(client, saml_sp, phone, **request_options):
    started = client.get(saml_sp.redirect_request(IDP, **request_options))
    assert started.status_code == 303, started.get_data(as_text=True)
    login_id = started.headers["Location"].rsplit("/", 1)[-1]
    status = desktop_status(client, login_id).json
    assert phone.approve(status["phone_url"], status["number"]).status_code == 200
    answer = client.get(desktop_status(client, login_id).json["continue_url"])
    assert answer.status_code == 200
    return login_id, posted_fields(answer.get_data(as_text=True))


def test_metadata_is_signed_and_names_both_bindings(client):
    xml = client.get("/saml/metadata").get_data(as_text=True)
    assert "<ds:Signature" in xml or "Signature" in xml
    assert f'entityID="{IDP}"' in xml
    assert "HTTP-Redirect" in xml and "HTTP-POST" in xml


def test_pysaml2_sp_completes_a_qr_login(client, saml_sp, enrolled_phone):
    _, fields = saml_login(client, saml_sp, enrolled_phone)
    assert html.unescape(fields["RelayState"]) == "rs-1"
    response = saml_sp.read_response(html.unescape(fields["SAMLResponse"]))
    identity = response.get_identity()
    assert identity["givenName"] == ["Erika"]
    assert identity["sn"] == ["Mustermann"]
    assert "schacDateOfBirth" not in identity and len(identity) == 2  # only what was asked
    subject = response.get_subject()
    assert subject.format.endswith("persistent")
    assert response.assertion.authn_statement[0].authn_context.authn_context_class_ref.text == (
        "STORK-QAA-Level-1"
    )
