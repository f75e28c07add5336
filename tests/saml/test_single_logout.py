"""IdP-initiated Single Logout: when a Bürger-ID session ends, every other SAML SP it sent an
assertion to gets a signed LogoutRequest (SAML 2.0 Profiles §4.4) that pysaml2's SP accepts,
over SOAP from the outbox (retried, audited) or in an iframe of the logged-out page."""

from __future__ import annotations

import base64
import datetime as dt
import html
import re
import shutil
import zlib
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
from harness import ISSUER
from harness import complete_login
from harness import logout_deliveries
from harness import make_logouts_due
from harness import register_relying_party
from logout_receiver import logout_receiver
from saml2 import BINDING_HTTP_POST
from saml2 import BINDING_HTTP_REDIRECT
from saml2 import BINDING_SOAP
from saml_sp import SLO
from saml_sp import SamlServiceProvider
from saml_sp import posted_fields
from saml_sp import qr_login
from sqlalchemy import select

from idserver.audit.models import AuditEvent
from idserver.db import db
from idserver.db import utcnow
from idserver.oidc.claims import session_identifier
from idserver.oidc.logout import deliver_due_logouts
from idserver.saml import add_service_provider
from idserver.saml.models import SessionServiceProvider
from idserver.sessions import BrowserSession

pytestmark = pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="xmlsec1 is missing")
IDP = f"{ISSUER}/saml/metadata"
B_ENTITY = "https://hundeschule.example.net/saml/metadata"
B_ACS = "https://hundeschule.example.net/saml/acs"
B_SLO = "https://hundeschule.example.net/saml/slo"
IFRAME = re.compile(r'<iframe class="frontchannel-logout" src="([^"]+)"')


def _register(app, client, tmp_path, **options) -> SamlServiceProvider:
    idp_metadata = client.get("/saml/metadata").get_data(as_text=True)
    sp = SamlServiceProvider(tmp_path, idp_metadata, requested=("givenName",), **options)
    with app.app_context():
        add_service_provider(sp.metadata(), source="test")
    return sp


@pytest.fixture
def sp_a(app, client, tmp_path):
    """The SP that asks for the logout: its SingleLogoutService takes HTTP-POST answers."""
    return _register(app, client, tmp_path)


def _sp_b(app, client, tmp_path, *slo: tuple[str, str]) -> SamlServiceProvider:
    return _register(
        app,
        client,
        tmp_path,
        entity_id=B_ENTITY,
        acs=B_ACS,
        key_name="sp-b",
        slo=slo,
        display_name="Hundeschule",
    )


def saml_login(client, sp, phone):
    """A QR login at ``sp``; returns pysaml2's reading of the Response."""
    _, fields = qr_login(client, sp, phone)
    return sp.read_response(fields["SAMLResponse"])


def _session_index(response) -> str:
    return response.assertion.authn_statement[0].session_index


def _logout_at(client, sp, name_id):
    """SP-initiated logout (HTTP-Redirect, signed) from ``sp`` for ``name_id``."""
    return client.get(sp.redirect(sp.logout_request(name_id), path=SLO))


def _events(app, name):
    with app.app_context():
        return db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)).all()


def test_assertion_names_the_session_by_a_keyed_session_index(app, client, sp_a, enrolled_phone):
    response = saml_login(client, sp_a, enrolled_phone)
    index = _session_index(response)
    with app.app_context():
        session = db.session.scalars(select(BrowserSession)).one()
        (row,) = db.session.scalars(select(SessionServiceProvider)).all()
        assert index == session_identifier(session.login_id) == row.session_index
    assert index not in (session.id, session.login_id)
    assert row.name_id == response.get_subject().text and row.attributes


def test_sp_initiated_logout_reaches_the_other_sp_in_a_signed_iframe(
    app, client, sp_a, enrolled_phone, tmp_path
):
    sp_b = _sp_b(app, client, tmp_path, (B_SLO, BINDING_HTTP_REDIRECT), (B_SLO, BINDING_HTTP_POST))
    at_a = saml_login(client, sp_a, enrolled_phone)
    at_b = saml_login(client, sp_b, enrolled_phone)  # the same browser session (taken over)
    page = _logout_at(client, sp_a, at_a.get_subject())
    assert page.status_code == 200, page.get_data(as_text=True)
    text = page.get_data(as_text=True)
    frames = [html.unescape(src) for src in IFRAME.findall(text)]
    assert len(frames) == 1 and frames[0].startswith(B_SLO + "?")  # A is answered, not asked
    csp = page.headers["Content-Security-Policy"]
    assert "frame-src https://hundeschule.example.net" in csp
    assert "form-action 'self' https://formulare.example.org" in csp
    assert "js/logged-out.js" in text and "<script>" not in text
    # B: a LogoutRequest signed over the query, for its own NameID and the session's index
    request = sp_b.receive_logout_redirect(frames[0]).message
    assert request.name_id.text == at_b.get_subject().text
    assert [i.text for i in request.session_index] == [_session_index(at_b)]
    assert request.issuer.text == IDP and request.destination == B_SLO
    # B's pysaml2 logs the subject out and answers Success, back to /saml/slo
    fields = {name: values[0] for name, values in parse_qs(urlsplit(frames[0]).query).items()}
    answered = sp_b.client.handle_logout_request(
        fields["SAMLRequest"],
        at_b.get_subject(),
        BINDING_HTTP_REDIRECT,
        sigalg=fields["SigAlg"],
        signature=fields["Signature"],
    )
    location = dict(answered["headers"])["Location"]
    assert location.startswith(SLO + "?")
    back = parse_qs(urlsplit(location).query)["SAMLResponse"][0]
    assert b"status:Success" in zlib.decompress(base64.b64decode(back), -15)
    assert client.get(location).status_code == 204  # taken quietly in the iframe
    # A: its LogoutResponse, posted on by the page
    assert sp_a.read_logout_response(posted_fields(text)["SAMLResponse"]).status_ok()
    assert client.get("/account").status_code == 303
    assert logout_deliveries(app) == []


def test_sp_initiated_logout_tells_a_soap_sp_over_the_back_channel(
    app, client, sp_a, enrolled_phone, tmp_path
):
    with logout_receiver("/saml/soap") as receiver:
        sp_b = _sp_b(
            app, client, tmp_path, (receiver.uri, BINDING_SOAP), (B_SLO, BINDING_HTTP_POST)
        )
        at_a = saml_login(client, sp_a, enrolled_phone)
        at_b = saml_login(client, sp_b, enrolled_phone)
        receiver.answer = lambda body: sp_b.answer_soap_logout(
            body.decode(), at_b.get_subject()
        ).encode()
        page = _logout_at(client, sp_a, at_a.get_subject())
    # no iframe: A gets its answer at once, the HTTP-POST binding's own page
    assert page.status_code == 200 and not IFRAME.findall(page.get_data(as_text=True))
    assert sp_a.read_logout_response(posted_fields(page.get_data(as_text=True))["SAMLResponse"])
    assert len(receiver.bodies) == 1  # sent once, to B only
    request = sp_b.client.parse_logout_request(receiver.bodies[0].decode(), BINDING_SOAP).message
    assert request.signature is not None  # signed XML (SOAP binding), checked by pysaml2
    assert request.name_id.text == at_b.get_subject().text
    assert [i.text for i in request.session_index] == [_session_index(at_b)]
    (delivery,) = logout_deliveries(app)
    assert delivery.protocol == "saml" and delivery.delivered_at is not None
    assert delivery.attempts == 1 and delivery.last_error is None
    (event,) = _events(app, "saml_logout_delivered")
    with app.app_context():
        b_id = db.session.scalars(
            select(SessionServiceProvider.sp_id).where(
                SessionServiceProvider.name_id == at_b.get_subject().text
            )
        ).first()
    assert event.data["sp_id"] == b_id and event.actor == "system"


def test_an_oidc_logout_reaches_the_saml_sp(app, client, enrolled_phone, tmp_path):
    party = register_relying_party(app)
    with logout_receiver("/saml/soap") as receiver:
        sp_b = _sp_b(app, client, tmp_path, (receiver.uri, BINDING_SOAP))
        at_b = saml_login(client, sp_b, enrolled_phone)
        complete_login(client, party, enrolled_phone)  # OIDC in the same browser, after SAML
        receiver.answer = lambda body: sp_b.answer_soap_logout(
            body.decode(), at_b.get_subject()
        ).encode()
        assert client.get("/logout").status_code in (200, 303)
    assert len(receiver.bodies) == 1
    (delivery,) = logout_deliveries(app)
    assert delivery.protocol == "saml" and delivery.delivered_at is not None


def test_an_account_logout_shows_the_saml_iframe(app, client, enrolled_phone, tmp_path):
    sp_b = _sp_b(app, client, tmp_path, (B_SLO, BINDING_HTTP_REDIRECT))
    at_b = saml_login(client, sp_b, enrolled_phone)
    account = client.get("/account").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', account).group(1)
    page = client.post("/account/logout", data={"csrf_token": token})
    assert page.status_code == 200
    (frame,) = [html.unescape(src) for src in IFRAME.findall(page.get_data(as_text=True))]
    request = sp_b.receive_logout_redirect(frame).message
    assert request.name_id.text == at_b.get_subject().text
    assert "frame-src https://hundeschule.example.net" in page.headers["Content-Security-Policy"]


def test_an_sp_without_a_single_logout_service_is_skipped(
    app, client, sp_a, enrolled_phone, tmp_path
):
    sp_b = _sp_b(app, client, tmp_path)  # no SingleLogoutService at all
    at_a = saml_login(client, sp_a, enrolled_phone)
    saml_login(client, sp_b, enrolled_phone)
    page = _logout_at(client, sp_a, at_a.get_subject())
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and not IFRAME.findall(text)
    assert sp_a.read_logout_response(posted_fields(text)["SAMLResponse"]).status_ok()
    assert logout_deliveries(app) == []
    assert client.get("/account").status_code == 303


def test_a_failed_soap_delivery_is_retried_then_given_up(
    app, client, sp_a, enrolled_phone, tmp_path
):
    app.config["LOGOUT_DELIVERY_ATTEMPTS"] = 3
    with logout_receiver("/saml/soap") as receiver:
        sp_b = _sp_b(app, client, tmp_path, (receiver.uri, BINDING_SOAP))
        at_a = saml_login(client, sp_a, enrolled_phone)
        saml_login(client, sp_b, enrolled_phone)
        receiver.statuses = [500, 503, 500]
        _logout_at(client, sp_a, at_a.get_subject())
        (delivery,) = logout_deliveries(app)
        assert delivery.attempts == 1 and delivery.last_error == "HTTP 500"
        assert delivery.next_attempt_at - utcnow() > dt.timedelta(seconds=20)

        make_logouts_due(app)
        with app.app_context():
            assert deliver_due_logouts() == {"delivered": 0, "retrying": 1, "failed": 0}
        make_logouts_due(app)
        with app.app_context():
            assert deliver_due_logouts() == {"delivered": 0, "retrying": 0, "failed": 1}
    (delivery,) = logout_deliveries(app)
    assert delivery.failed_at is not None and delivery.attempts == 3
    assert len(receiver.bodies) == 3
    (event,) = _events(app, "saml_logout_delivery_failed")
    assert event.data["error"] == "HTTP 500" and event.data["attempts"] == 3
    assert "SAMLRequest" not in str(event.data) and "LogoutRequest" not in str(event.data)


def test_an_sp_answering_without_success_is_a_failed_delivery(
    app, client, sp_a, enrolled_phone, tmp_path
):
    """An SP that does not know the NameID answers UnknownPrincipal: not delivered."""
    with logout_receiver("/saml/soap") as receiver:
        sp_b = _sp_b(app, client, tmp_path, (receiver.uri, BINDING_SOAP))
        at_a = saml_login(client, sp_a, enrolled_phone)
        saml_login(client, sp_b, enrolled_phone)
        receiver.answer = lambda body: sp_b.answer_soap_logout(
            body.decode(), at_a.get_subject()
        ).encode()
        _logout_at(client, sp_a, at_a.get_subject())
    (delivery,) = logout_deliveries(app)
    assert delivery.delivered_at is None and delivery.last_error == "no successful LogoutResponse"


def test_a_logout_response_from_an_iframe_is_taken_quietly(client, db_state):
    before = db_state()
    answer = client.get("/saml/slo?SAMLResponse=" + base64.b64encode(b"<x/>").decode())
    assert answer.status_code == 204 and db_state() == before


def test_origins_in_the_csp_are_only_the_frames(app, client, sp_a, enrolled_phone, tmp_path):
    """Pages other than the logged-out one keep frame-src out of their CSP."""
    _sp_b(app, client, tmp_path, (B_SLO, BINDING_HTTP_REDIRECT))
    saml_login(client, sp_a, enrolled_phone)
    assert "frame-src" not in client.get("/account").headers["Content-Security-Policy"]
    assert urlsplit(B_SLO).netloc not in client.get("/").headers["Content-Security-Policy"]
