"""Attacks on the SAML IdP: each refused, with the database as it was.

The service provider is pysaml2's (tests/saml_sp.py); requests are made by it and then
tampered with, as an attacker in the browser would.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import shutil

import pytest
from harness import complete_login
from harness import desktop_status
from saml2.saml import AuthnContextClassRef
from saml2.saml import NameID
from saml2.samlp import RequestedAuthnContext
from saml_sp import SLO
from saml_sp import SP_ACS
from saml_sp import SamlServiceProvider
from saml_sp import posted_fields

from idserver.saml import add_service_provider

pytestmark = pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="xmlsec1 is missing")


@pytest.fixture
def idp_metadata(client):
    return client.get("/saml/metadata").get_data(as_text=True)


@pytest.fixture
def saml_sp(app, idp_metadata, tmp_path):
    sp = SamlServiceProvider(tmp_path, idp_metadata, requested=("givenName", "sn"))
    with app.app_context():
        add_service_provider(sp.metadata(), source="test")
    return sp


def _refused(client, db_state, path, *, error, method="get", data=None):
    before = db_state()
    response = client.get(path) if method == "get" else client.post(path, data=data)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert error in response.get_data(as_text=True)
    assert "Location" not in response.headers  # no answer to any URL the request names
    assert db_state() == before
    return response


def test_rejects_a_replayed_authn_request(client, saml_sp, db_state):
    _, xml = saml_sp.authn_request()
    path = saml_sp.redirect(xml)
    assert client.get(path).status_code == 303
    _refused(client, db_state, path, error="saml_request_replayed")


def test_rejects_an_expired_authn_request(client, saml_sp, db_state):
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    _, xml = saml_sp.authn_request(issue_instant=old)
    _refused(client, db_state, saml_sp.redirect(xml), error="saml_request_expired")


def test_rejects_an_unsigned_authn_request(client, saml_sp, db_state):
    _, xml = saml_sp.authn_request()
    _refused(client, db_state, saml_sp.redirect(xml, sign=False), error="saml_signature_invalid")


def test_rejects_an_authn_request_signed_with_another_key(
    app, client, idp_metadata, saml_sp, db_state, tmp_path
):
    impostor_dir = tmp_path / "impostor"
    impostor_dir.mkdir()
    impostor = SamlServiceProvider(impostor_dir, idp_metadata, key_name="impostor")
    _, xml = impostor.authn_request()
    _refused(client, db_state, impostor.redirect(xml), error="saml_signature_invalid")


def test_rejects_a_post_authn_request_altered_after_signing(client, saml_sp, db_state):
    _, xml = saml_sp.authn_request(sign=True)
    assert "Signature" in xml
    assert SP_ACS in xml
    altered = xml.replace(SP_ACS, "https://evil.example/acs")
    encoded = base64.b64encode(altered.encode()).decode()
    _refused(
        client,
        db_state,
        "/saml/sso",
        method="post",
        data={"SAMLRequest": encoded},
        error="saml_signature_invalid",
    )


def test_rejects_xml_signature_wrapping(client, saml_sp, db_state):
    """The signed request is hidden inside an unsigned one that names the attacker's ACS."""
    request_id, xml = saml_sp.authn_request(sign=True)
    body = xml.split("?>", 1)[-1] if xml.startswith("<?xml") else xml
    evil_id = "id-evil-" + request_id[-8:]
    wrapper = (
        '<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
        f'ID="{evil_id}" Version="2.0" IssueInstant="{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ}" '
        'Destination="http://localhost/saml/sso" '
        'AssertionConsumerServiceURL="https://evil.example/acs">'
        f"<saml:Issuer>{saml_sp.entity_id}</saml:Issuer>"
        f"<samlp:Extensions>{body}</samlp:Extensions>"
        "</samlp:AuthnRequest>"
    )
    encoded = base64.b64encode(wrapper.encode()).decode()
    _refused(
        client,
        db_state,
        "/saml/sso",
        method="post",
        data={"SAMLRequest": encoded},
        error="saml_signature_invalid",
    )


def test_rejects_a_comment_injected_into_the_issuer(app, client, saml_sp, db_state):
    """Canonicalisation drops comments, so the signature still verifies; the Issuer must be
    read whole (not up to the comment), which names no registered SP."""
    _, xml = saml_sp.authn_request()
    injected = xml.replace(
        f">{saml_sp.entity_id}<", f">{saml_sp.entity_id}<!---->.evil.example<", 1
    )
    assert injected != xml
    _refused(client, db_state, saml_sp.redirect(injected), error="saml_unknown_service_provider")


def test_rejects_an_authn_request_for_another_destination(client, saml_sp, db_state):
    _, xml = saml_sp.authn_request(destination="https://idp.elsewhere.example/saml/sso")
    _refused(client, db_state, saml_sp.redirect(xml), error="saml_wrong_destination")


def test_rejects_an_acs_url_the_metadata_does_not_list(client, saml_sp, db_state):
    _, xml = saml_sp.authn_request(assertion_consumer_service_url="https://evil.example/acs")
    _refused(client, db_state, saml_sp.redirect(xml), error="saml_acs_not_registered")


def test_rejects_a_request_from_an_unregistered_sp(client, idp_metadata, db_state, tmp_path):
    stranger = SamlServiceProvider(tmp_path, idp_metadata, entity_id="https://stranger.example/sp")
    _, xml = stranger.authn_request()
    _refused(client, db_state, stranger.redirect(xml), error="saml_unknown_service_provider")


def test_rejects_a_level_above_what_is_vouched_for(client, saml_sp, db_state):
    """STORK-QAA-Level-3 (substantiell) is asked for; the answer is NoAuthnContext at the
    registered ACS, and no login starts."""
    request_id, xml = saml_sp.authn_request(
        requested_authn_context=RequestedAuthnContext(
            authn_context_class_ref=[AuthnContextClassRef(text="STORK-QAA-Level-3")],
            comparison="minimum",
        )
    )
    before = db_state()
    answer = client.get(saml_sp.redirect(xml))
    assert answer.status_code == 200
    assert db_state() == before
    fields = posted_fields(answer.get_data(as_text=True))
    decoded = base64.b64decode(fields["SAMLResponse"]).decode()
    assert "urn:oasis:names:tc:SAML:2.0:status:NoAuthnContext" in decoded
    assert f'InResponseTo="{request_id}"' in decoded
    assert "<saml:Assertion" not in decoded and "Assertion " not in decoded


def test_sp_rejects_a_response_to_a_request_it_did_not_send(client, saml_sp, enrolled_phone):
    """InResponseTo: an answer the SP did not ask for (unsolicited, or to another browser's
    request) is refused by the SP, which the IdP helps by always naming the request."""
    _, xml = saml_sp.authn_request()
    started = client.get(saml_sp.redirect(xml))
    login_id = started.headers["Location"].rsplit("/", 1)[-1]
    status = desktop_status(client, login_id).json
    assert enrolled_phone.approve(status["phone_url"], status["number"]).status_code == 200
    answer = client.get(desktop_status(client, login_id).json["continue_url"])
    fields = posted_fields(answer.get_data(as_text=True))
    saml_sp.outstanding.clear()
    with pytest.raises(Exception, match="(?i)unsolicited|outstanding|InResponseTo|not allowed"):
        saml_sp.read_response(fields["SAMLResponse"])


def _approved_response(client, saml_sp, phone):
    _, xml = saml_sp.authn_request()
    started = client.get(saml_sp.redirect(xml))
    login_id = started.headers["Location"].rsplit("/", 1)[-1]
    status = desktop_status(client, login_id).json
    assert phone.approve(status["phone_url"], status["number"]).status_code == 200
    answer = client.get(desktop_status(client, login_id).json["continue_url"])
    return base64.b64decode(posted_fields(answer.get_data(as_text=True))["SAMLResponse"]).decode()


def _nameid(xml):
    return re.search(r"<(?:saml|ns\d):NameID[^>]*>([^<]+)<", xml).group(1)


def test_rejects_a_response_whose_nameid_was_altered(client, saml_sp, enrolled_phone):
    xml = _approved_response(client, saml_sp, enrolled_phone)
    name_id = _nameid(xml)
    altered = xml.replace(name_id, name_id[:-1] + ("A" if name_id[-1] != "A" else "B"))
    with pytest.raises(Exception):  # noqa: B017,PT011 -- pysaml2 raises several kinds
        saml_sp.read_response(base64.b64encode(altered.encode()).decode())


def test_comment_injected_into_the_nameid_never_reads_as_another_pseudonym(
    client, saml_sp, enrolled_phone
):
    """Canonicalisation drops comments, so the signatures still verify; the SP must read the
    NameID whole. Our NameIDs are base64url: a truncated one would be another valid-looking
    pseudonym, which must never come out."""
    xml = _approved_response(client, saml_sp, enrolled_phone)
    name_id = _nameid(xml)
    injected = xml.replace(f">{name_id}<", f">{name_id[:10]}<!---->{name_id[10:]}<")
    assert injected != xml
    try:
        response = saml_sp.read_response(base64.b64encode(injected.encode()).decode())
    except Exception:  # noqa: BLE001 -- refusing it is as good
        return
    assert response.get_subject().text == name_id


def test_wrapped_response_never_yields_the_forged_assertion(client, saml_sp, enrolled_phone):
    """Signature wrapping on the answer: a forged, unsigned assertion before the signed one."""
    xml = _approved_response(client, saml_sp, enrolled_phone)
    name_id = _nameid(xml)
    start = re.search(r"<(?:saml|ns\d):Assertion ", xml).start()
    end = re.search(r"</(?:saml|ns\d):Assertion>", xml).end()
    assertion = xml[start:end]
    forged = re.sub(r' ID="[^"]+"', ' ID="id-forged"', assertion, count=1)
    forged = re.sub(r"<ds:Signature.*?</ds:Signature>", "", forged, flags=re.S)
    forged = forged.replace(name_id, "someone-else")
    wrapped = xml[:start] + forged + assertion + xml[end:]
    try:
        response = saml_sp.read_response(base64.b64encode(wrapped.encode()).decode())
    except Exception:  # noqa: BLE001 -- refused: the Response's own signature no longer holds
        return
    assert response.get_subject().text == name_id  # if read at all, only the signed assertion


# -- Single Logout: a forged LogoutRequest must not end anyone's session ------------------------
def _logged_in(client, relying_party, enrolled_phone):
    complete_login(client, relying_party, enrolled_phone)
    assert client.get("/account").status_code == 200


def _logout_refused(client, db_state, path, *, error):
    _refused(client, db_state, path, error=error)
    assert client.get("/account").status_code == 200  # the session lives on


def test_rejects_a_logout_request_from_an_unregistered_sp(
    client, idp_metadata, relying_party, enrolled_phone, db_state, tmp_path
):
    _logged_in(client, relying_party, enrolled_phone)
    stranger = SamlServiceProvider(tmp_path, idp_metadata, entity_id="https://stranger.example/sp")
    path = stranger.redirect(stranger.logout_request(NameID(text="x")), path=SLO)
    _logout_refused(client, db_state, path, error="saml_unknown_service_provider")


def test_rejects_an_unsigned_logout_request(
    client, saml_sp, relying_party, enrolled_phone, db_state
):
    _logged_in(client, relying_party, enrolled_phone)
    path = saml_sp.redirect(saml_sp.logout_request(NameID(text="x")), path=SLO, sign=False)
    _logout_refused(client, db_state, path, error="saml_signature_invalid")


def test_rejects_a_logout_request_signed_with_another_key(
    app, client, idp_metadata, saml_sp, relying_party, enrolled_phone, db_state, tmp_path
):
    _logged_in(client, relying_party, enrolled_phone)
    impostor_dir = tmp_path / "impostor"
    impostor_dir.mkdir()
    impostor = SamlServiceProvider(impostor_dir, idp_metadata, key_name="impostor")
    path = impostor.redirect(impostor.logout_request(NameID(text="x")), path=SLO)
    _logout_refused(client, db_state, path, error="saml_signature_invalid")
