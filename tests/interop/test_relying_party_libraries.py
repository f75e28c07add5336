"""Three independent relying-party libraries against a served Bürger-ID, at their defaults.

Each library runs the whole life of a login as its documentation shows it: discovery, a QR-code
login approved on the reference soft phone, the code exchanged and the ID token validated by the
library (signature from the JWKS, ``iss``, ``aud``, ``nonce``, ``at_hash`` where it checks it),
userinfo, introspection, a refresh (rotated), revocation, and RP-initiated logout. Nothing of a
library is configured beyond what its documentation asks of every integrator; what a library
itself needs is named where it is set and listed in docs/relying-parties.md:

- every library: PKCE S256 (Bürger-ID requires it of every client, RFC 9700 §2.1.1);
- pyoidc: PKCE turned on, ``authn_method`` named for refresh, revocation and introspection
  (it sends no client authentication otherwise), and the ID token as ``id_token_hint`` at logout;
- openid-client: ``allowInsecureRequests`` only because this test server is plain http, and a
  client registered for ``client_secret_post``, the method it uses by default.

The table in docs/relying-parties.md names the versions installed here
(tests/interop/test_documented.py checks it).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
import requests
from authlib.common.urls import add_params_to_uri
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry
from oic.extension.client import Client as ExtensionClient
from oic.oic import Client
from oic.oic.message import AuthorizationResponse
from oic.oic.message import RegistrationResponse
from oic.utils.authn.client import CLIENT_AUTHN_METHOD

ROOT = Path(__file__).resolve().parents[2]
OPENID_CLIENT_RP = Path(__file__).with_name("openid_client_rp.mjs")
OPENID_CLIENT = ROOT / "node_modules" / "openid-client" / "package.json"
SCOPE = "openid profile email offline_access"


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def assert_logged_out(browser: Any, location: str, client: Any, state: str) -> None:
    """Bürger-ID sent the browser back to the registered URI with the state, session ended."""
    assert location.split("?")[0] == client.post_logout_redirect_uri
    assert query_of(location)["state"] == state
    assert not browser.has_session()


# -- Authlib ------------------------------------------------------------------------------------
def test_authlib_client_logs_in_refreshes_revokes_and_logs_out(idp, browser):
    client = idp.add_client("authlib", grant_types=["refresh_token"])
    phone = idp.enrolled_phone("authlib")
    metadata = requests.get(f"{idp.issuer}/.well-known/openid-configuration", timeout=5).json()
    session = OAuth2Session(
        client.client_id,
        client.client_secret,
        scope=SCOPE,
        redirect_uri=client.redirect_uri,
        code_challenge_method="S256",  # PKCE: Bürger-ID requires it
    )
    verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
    url, state = session.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce, prompt="consent"
    )
    callback = browser.log_in(url, phone)
    assert query_of(callback)["iss"] == idp.issuer  # RFC 9207, for a library that checks it
    assert browser.has_session()
    token = session.fetch_token(
        metadata["token_endpoint"],
        authorization_response=callback,
        code_verifier=verifier,
        state=state,
    )

    # The ID token as Authlib's own OpenID clients validate it (base_client.OpenIDMixin).
    keys = KeySet.import_key_set(requests.get(metadata["jwks_uri"], timeout=5).json())
    decoded = jwt.decode(
        token["id_token"],
        keys,
        registry=JWSRegistry(algorithms=metadata["id_token_signing_alg_values_supported"]),
    )
    id_token = CodeIDToken(
        decoded.claims,
        decoded.header,
        {"iss": {"values": [metadata["issuer"]]}},
        {"nonce": nonce, "client_id": client.client_id, "access_token": token["access_token"]},
    )
    id_token.validate(leeway=120)  # iss, aud, exp, iat, nonce, azp and at_hash
    assert id_token["at_hash"]

    userinfo = session.get(metadata["userinfo_endpoint"])
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json()["sub"] == id_token["sub"]
    assert userinfo.json()["given_name"] == "Erika"

    introspected = session.introspect_token(
        metadata["introspection_endpoint"], token=token["access_token"]
    ).json()
    assert introspected["active"] is True
    assert introspected["client_id"] == client.client_id
    assert introspected["sub"] == id_token["sub"]

    first_refresh = token["refresh_token"]
    refreshed = session.refresh_token(metadata["token_endpoint"], refresh_token=first_refresh)
    assert refreshed["access_token"] != token["access_token"]
    assert refreshed["refresh_token"] != first_refresh  # rotated on use
    assert session.get(metadata["userinfo_endpoint"]).status_code == 200

    revoked = session.revoke_token(
        metadata["revocation_endpoint"],
        token=refreshed["refresh_token"],
        token_type_hint="refresh_token",
    )
    assert revoked.status_code == 200
    for value in (refreshed["refresh_token"], refreshed["access_token"]):
        gone = session.introspect_token(metadata["introspection_endpoint"], token=value).json()
        assert gone == {"active": False}
    assert session.get(metadata["userinfo_endpoint"]).status_code == 401

    goodbye = add_params_to_uri(
        metadata["end_session_endpoint"],
        {
            "id_token_hint": token["id_token"],
            "post_logout_redirect_uri": client.post_logout_redirect_uri,
            "state": "bye-authlib",
        },
    )
    assert_logged_out(browser, browser.log_out(goodbye), client, "bye-authlib")


# -- pyoidc -------------------------------------------------------------------------------------
def test_pyoidc_logs_in_refreshes_revokes_and_logs_out(idp, browser):
    client = idp.add_client("pyoidc", grant_types=["refresh_token"])
    phone = idp.enrolled_phone("pyoidc")
    registration = RegistrationResponse(
        client_id=client.client_id,
        client_secret=client.client_secret,
        redirect_uris=[client.redirect_uri],
        post_logout_redirect_uris=[client.post_logout_redirect_uri],
    )
    rp = Client(client_authn_method=CLIENT_AUTHN_METHOD)
    provider = rp.provider_config(idp.issuer)
    rp.store_registration_info(registration)

    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    pkce, verifier = rp.add_code_challenge()  # pyoidc's PKCE, off unless asked for
    request = rp.construct_AuthorizationRequest(
        request_args={
            "client_id": client.client_id,
            "response_type": "code",
            "scope": SCOPE.split(),
            "redirect_uri": client.redirect_uri,
            "state": state,
            "nonce": nonce,
            "prompt": "consent",
            **pkce,
        }
    )
    callback = browser.log_in(request.request(rp.authorization_endpoint), phone)
    assert browser.has_session()
    answer = rp.parse_response(
        AuthorizationResponse, info=urlsplit(callback).query, sformat="urlencoded"
    )
    assert answer["state"] == state

    # pyoidc verifies the ID token's signature against the JWKS, iss, aud, exp and iat.
    tokens = rp.do_access_token_request(
        state=state, request_args={"code": answer["code"], "code_verifier": verifier}
    )
    id_token = tokens["id_token"]
    assert id_token["nonce"] == nonce
    assert id_token["iss"] == provider["issuer"] and id_token["aud"] == [client.client_id]

    userinfo = rp.do_user_info_request(state=state)  # POST, the token in the form body
    assert userinfo["sub"] == id_token["sub"]
    assert userinfo["given_name"] == "Erika"

    refreshed = rp.do_access_token_refresh(state=state, authn_method="client_secret_basic")
    assert refreshed["access_token"] != tokens["access_token"]
    assert refreshed["refresh_token"] != tokens["refresh_token"]  # rotated on use
    assert rp.do_user_info_request(state=state)["sub"] == id_token["sub"]

    # Revocation and introspection live in pyoidc's extension client.
    extension = ExtensionClient(client_authn_method=CLIENT_AUTHN_METHOD)
    extension.handle_provider_config(provider, idp.issuer)
    extension.store_registration_info(registration)
    introspected = extension.do_token_introspection(
        request_args={"token": refreshed["access_token"]}, authn_method="client_secret_basic"
    )
    assert introspected["active"] is True
    assert introspected["client_id"] == client.client_id
    assert introspected["sub"] == id_token["sub"]
    status = extension.do_token_revocation(
        request_args={"token": refreshed["refresh_token"], "token_type_hint": "refresh_token"},
        authn_method="client_secret_basic",
    )
    assert status == 200
    for value in (refreshed["refresh_token"], refreshed["access_token"]):
        gone = extension.do_token_introspection(
            request_args={"token": value}, authn_method="client_secret_basic"
        )
        assert gone.to_dict() == {"active": False}

    # pyoidc looks for the hint in the newest token response, and a refresh answer has no ID
    # token (OIDC Core §12.2 makes it optional): the one from the login is passed.
    logout = rp.construct_EndSessionRequest(
        state=state,
        request_args={
            "id_token_hint": id_token.jwt,
            "post_logout_redirect_uri": client.post_logout_redirect_uri,
            "state": "bye-pyoidc",
        },
    )
    goodbye = logout.request(provider["end_session_endpoint"])
    assert_logged_out(browser, browser.log_out(goodbye), client, "bye-pyoidc")


# -- openid-client (node) -----------------------------------------------------------------------
def openid_client_or_skip() -> str:
    """The node program, or a skip that says what is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: openid-client (npm) cannot run")
    if not OPENID_CLIENT.is_file():
        pytest.skip("openid-client is not in node_modules: `make install` runs npm ci")
    return node


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_openid_client_logs_in_refreshes_revokes_and_logs_out(idp, browser, alg):
    node = openid_client_or_skip()
    client = idp.add_client(
        f"openid-client-{alg}",
        grant_types=["refresh_token"],
        auth_method="client_secret_post",  # openid-client's default method
        id_token_alg=alg,
    )
    phone = idp.enrolled_phone(f"openid-client-{alg}")
    arguments = [
        idp.issuer,
        client.client_id,
        client.client_secret,
        client.redirect_uri,
        client.post_logout_redirect_uri,
        SCOPE,
    ]
    with subprocess.Popen(
        [node, OPENID_CLIENT_RP, *arguments],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as rp:
        assert rp.stdout is not None
        first = rp.stdout.readline()
        if not first:
            pytest.fail(f"openid-client stopped: {rp.communicate(timeout=30)[1]}")
        callback = browser.log_in(json.loads(first)["authorization_url"], phone)
        assert browser.has_session()
        output, errors = rp.communicate(callback + "\n", timeout=60)
    assert rp.returncode == 0, errors
    result = json.loads(output)

    assert result["id_token_header"]["alg"] == alg
    claims = result["claims"]
    assert claims["iss"] == idp.issuer and claims["aud"] == client.client_id
    assert result["userinfo"]["sub"] == claims["sub"]
    assert result["userinfo"]["given_name"] == "Erika"
    assert result["introspected"]["active"] is True
    assert result["introspected"]["client_id"] == client.client_id
    assert result["refreshed"] == {"new_access_token": True, "new_refresh_token": True}
    assert result["userinfo_after_refresh"]["sub"] == claims["sub"]
    assert result["after_revocation"]["refresh_token"] == {"active": False}
    assert result["after_revocation"]["access_token"] == {"active": False}
    assert result["userinfo_revoked"]["status"] == 401, result["userinfo_revoked"]

    location = browser.log_out(result["end_session_url"])
    assert_logged_out(browser, location, client, "bye-openid-client")
