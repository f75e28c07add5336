"""The phone warns when the computer that asked is in another network (RFC 10027 *Establish
Proximity*), and the ``deny`` policy ends such a login on every screen."""

from __future__ import annotations

import json
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
from harness import RP_REDIRECT
from harness import RelyingParty
from harness import desktop_status

from idserver import create_app
from idserver.crosslogin import proximity
from idserver.crosslogin.models import LoginTransaction
from idserver.db import db
from idserver.oidc.clients import register_client
from idserver.oidc.models import Client

DESKTOP = "203.0.113.7"  # documentation addresses (RFC 5737, RFC 3849)
SAME_HOME = "203.0.113.200"
ELSEWHERE = "198.51.100.23"
WARNING_EN = "The computer that asked for this login is in a different network than your phone."
WARNING_DE = "Der Computer, der diese Anmeldung angefragt hat, ist in einem anderen Netz als Ihr"


def _at(client, address):
    client.environ_base["REMOTE_ADDR"] = address
    return client


def _login(app, relying_party, address=DESKTOP):
    desktop = _at(app.test_client(), address)
    login_id = relying_party.start_login(desktop)
    return desktop, login_id, desktop_status(desktop, login_id).json


def _path(url):
    return url.replace("http://localhost", "")


def _frame(url):
    query = parse_qs(urlsplit(url).query)
    return {"t": query["t"][0], "h": query["h"][0]}


def _tx(app, login_id):
    with app.app_context():
        return db.session.get(LoginTransaction, login_id)


# -- "same network" -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ("192.0.2.1", "192.0.2.254", True),  # one NAT pool, one /24
        ("192.0.2.1", "192.0.3.1", False),
        ("2001:db8:0:1200::1", "2001:db8:0:12ff:abcd::2", True),  # two subnets of one /56
        ("2001:db8:0:1200::1", "2001:db8:0:1300::1", False),  # the neighbour's /56
        ("::ffff:192.0.2.1", "192.0.2.9", True),  # IPv4-mapped from a dual-stack socket
        ("192.0.2.1", "2001:db8::1", False),  # IPv4 and IPv6 cannot be compared
        ("fe80::1%eth0", "fe80::2", True),
        ("unknown", "unknown", False),  # unparseable addresses are never "the same"
        ("192.0.2.1", None, False),
    ],
)
def test_same_network_means_same_ipv4_24_or_ipv6_56(first, second, same):
    assert proximity.same_network(first, second, ipv4_prefix=24, ipv6_prefix=56) is same


def test_prefix_lengths_are_settings(app, relying_party, phone):
    app.config["PROXIMITY_IPV4_PREFIX"] = 16
    _, _, status = _login(app, relying_party, "203.0.113.7")
    _at(phone.client, "203.0.200.1")
    _, scanned = phone.scan(status["phone_url"])
    assert scanned.json["context"]["same_network"] is True
    assert scanned.json["warnings"] == []


# -- the warning ----------------------------------------------------------------------------
def test_phone_page_warns_prominently_when_the_computer_is_in_another_network(
    app, relying_party, phone
):
    _, login_id, status = _login(app, relying_party)
    page = _at(phone.client, ELSEWHERE).get(_path(status["phone_url"]) + "&lang=en")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    alert = html.split('role="alert"', 1)[1].split("</div>", 1)[0]
    assert WARNING_EN in alert
    assert "mobile data" in alert
    # before the number is asked for
    assert html.index('role="alert"') < html.index('id="approve-form"')
    german = phone.client.get(_path(status["phone_url"]) + "&lang=de")
    assert WARNING_DE in german.get_data(as_text=True)
    tx = _tx(app, login_id)
    assert (tx.desktop_ip, tx.phone_ip) == (DESKTOP, ELSEWHERE)


def test_phone_page_has_no_warning_in_the_computers_network(app, relying_party, phone):
    _, _, status = _login(app, relying_party)
    page = _at(phone.client, SAME_HOME).get(_path(status["phone_url"]))
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'role="alert"' not in html and WARNING_EN not in html


def test_phone_api_flags_another_network_and_the_signature_covers_it(
    app, relying_party, enrolled_phone
):
    phone = _at(enrolled_phone.client, ELSEWHERE)
    desktop, login_id, status = _login(app, relying_party)
    scanned = phone.post(
        f"/api/v1/logins/{login_id}/scan?lang=en", json=_frame(status["phone_url"])
    )
    assert scanned.status_code == 200
    assert scanned.json["context"]["same_network"] is False
    [warning] = scanned.json["warnings"]
    assert warning["code"] == "other_network" and WARNING_EN in warning["message"]
    binding = scanned.json["binding"]
    read = phone.get(f"/api/v1/logins/{login_id}?lang=en", headers={"X-Login-Binding": binding})
    assert read.json["warnings"] == scanned.json["warnings"]
    german = phone.get(f"/api/v1/logins/{login_id}?lang=de", headers={"X-Login-Binding": binding})
    assert WARNING_DE in german.json["warnings"][0]["message"]
    issued = enrolled_phone.challenge(login_id, binding, status["number"])
    assert issued.json["warnings"][0]["code"] == "other_network"
    assert issued.json["challenge_inputs"]["context"] == scanned.json["context"]
    # warn (the default) leaves the decision to the citizen, who sits at the computer here
    credential = enrolled_phone.authenticator.get_assertion(
        issued.json["options"], origin=enrolled_phone.origin
    )
    approved = phone.post(
        f"/api/v1/logins/{login_id}/approve",
        json={"binding": binding, "number": status["number"], "credential": credential},
    )
    assert approved.status_code == 200
    assert _tx(app, login_id).evidence["context"]["same_network"] is False
    assert desktop_status(desktop, login_id).json["status"] == "approved"


def test_phone_api_in_the_computers_ipv6_network_has_no_warnings(app, relying_party, phone):
    _, _, status = _login(app, relying_party, "2001:db8:0:1200::5")
    _at(phone.client, "2001:db8:0:1201:1c2a:99ff:fe00:7")
    _, scanned = phone.scan(status["phone_url"])
    assert scanned.json["context"]["same_network"] is True
    assert scanned.json["warnings"] == []


def test_the_trusted_proxys_forwarded_addresses_decide(app_config):
    app = create_app({**app_config, "TRUST_PROXY": True})
    app.config["TESTING"] = True
    with app.app_context():
        db.create_all()
        registered, secret = register_client(name="Portal", redirect_uris=[RP_REDIRECT])
    try:
        relying_party = RelyingParty(app, registered.client_id, secret or "")
        desktop = app.test_client()  # both reach the server through the proxy, 127.0.0.1
        desktop.environ_base["HTTP_X_FORWARDED_FOR"] = DESKTOP
        login_id = relying_party.start_login(desktop)
        status = desktop_status(desktop, login_id).json
        phone = app.test_client()
        phone.environ_base["HTTP_X_FORWARDED_FOR"] = f"10.0.0.1, {ELSEWHERE}"
        scanned = phone.post(f"/api/v1/logins/{login_id}/scan", json=_frame(status["phone_url"]))
        assert scanned.json["context"]["same_network"] is False
        tx = _tx(app, login_id)
        assert (tx.desktop_ip, tx.phone_ip) == (DESKTOP, ELSEWHERE)
    finally:
        with app.app_context():
            db.engine.dispose()


# -- the deny policy ------------------------------------------------------------------------
def test_deny_policy_ends_the_login_on_the_phone_the_computer_and_at_the_application(
    app, relying_party, phone
):
    app.config["PROXIMITY_POLICY"] = "deny"
    desktop, login_id, status = _login(app, relying_party)
    page = _at(phone.client, ELSEWHERE).get(_path(status["phone_url"]) + "&lang=en")
    assert page.status_code == 403
    html = page.get_data(as_text=True)
    assert "only allows logins when both are in the same network" in html
    assert "proximity_required" in html and "phone-" not in page.headers.get("Set-Cookie", "")
    # the computer explains it before it returns to the application
    shown = desktop_status(desktop, login_id).json
    assert shown["status"] == "denied" and shown["reason"] == "other_network"
    desktop_page = desktop.get(f"/login/{login_id}?lang=de").get_data(as_text=True)
    assert "data-msg-other-network=" in desktop_page
    assert "in einem anderen Netz als dieser Computer" in desktop_page
    redirected = desktop.get(shown["continue_url"])
    query = parse_qs(urlsplit(redirected.headers["Location"]).query)
    assert query["error"] == ["access_denied"] and query["state"] == [relying_party.state]
    assert "another network" in query["error_description"][0]


def test_deny_policy_german_refusal_on_the_phone_api(app, relying_party, phone):
    app.config["PROXIMITY_POLICY"] = "deny"
    _, login_id, status = _login(app, relying_party)
    refused = _at(phone.client, ELSEWHERE).post(
        f"/api/v1/logins/{login_id}/scan?lang=de", json=_frame(status["phone_url"])
    )
    assert refused.status_code == 403
    assert refused.json["error"] == "proximity_required"
    assert "nur, wenn beide im selben Netz sind" in refused.json["error_description"]


def test_deny_policy_lets_the_computers_own_network_through(app, relying_party, phone):
    app.config["PROXIMITY_POLICY"] = "deny"
    _, _, status = _login(app, relying_party)
    _at(phone.client, SAME_HOME)
    _, scanned = phone.scan(status["phone_url"])
    assert scanned.status_code == 200 and scanned.json["warnings"] == []


@pytest.mark.parametrize(
    ("server", "own", "refused"),
    [("warn", "deny", True), ("deny", "warn", False), ("deny", None, True), ("warn", None, False)],
)
def test_a_clients_own_policy_overrides_the_servers(app, phone, server, own, refused):
    app.config["PROXIMITY_POLICY"] = server
    with app.app_context():
        registered, secret = register_client(
            name="Fachverfahren", redirect_uris=[RP_REDIRECT], proximity_policy=own
        )
    _, _, status = _login(app, RelyingParty(app, registered.client_id, secret or ""))
    _at(phone.client, ELSEWHERE)
    _, scanned = phone.scan(status["phone_url"])
    assert scanned.status_code == (403 if refused else 200)


def test_client_add_stores_the_proximity_policy(app, runner):
    result = runner.invoke(
        args=[
            "client",
            "add",
            "--name",
            "Waffenschein",
            "--redirect-uri",
            "https://waffen.example/cb",
            "--proximity-policy",
            "deny",
        ]
    )
    assert result.exit_code == 0, result.output
    client_id = json.loads(result.output)["client_id"]
    with app.app_context():
        assert db.session.get(Client, client_id).proximity_policy == "deny"
    wrong = runner.invoke(
        args=["client", "add", "--name", "X", "--redirect-uri", "https://x.example/cb"]
        + ["--proximity-policy", "sometimes"]
    )
    assert wrong.exit_code != 0
