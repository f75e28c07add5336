"""A second, independent SP: OneLogin's python3-saml (xmlsec bindings, not pysaml2) completes a
QR login through the server and checks the signed Response in strict mode."""

from __future__ import annotations

import shutil
from urllib.parse import urlsplit

import pytest
from harness import ISSUER
from harness import desktop_status
from saml_sp import key_and_certificate
from saml_sp import posted_fields

from idserver.saml import add_service_provider

pytest.importorskip("onelogin.saml2")
pytestmark = pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="xmlsec1 is missing")

from onelogin.saml2.auth import OneLogin_Saml2_Auth  # noqa: E402
from onelogin.saml2.constants import OneLogin_Saml2_Constants as Constants  # noqa: E402
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser  # noqa: E402
from onelogin.saml2.settings import OneLogin_Saml2_Settings  # noqa: E402

ENTITY = "https://hundesteuer.example.org/saml/metadata"
ACS = "https://hundesteuer.example.org/saml/acs"


def _settings(idp_metadata: str, key: str, cert: str) -> dict:
    idp = OneLogin_Saml2_IdPMetadataParser.parse(
        idp_metadata, required_sso_binding=Constants.BINDING_HTTP_REDIRECT
    )
    return OneLogin_Saml2_IdPMetadataParser.merge_settings(
        {
            "strict": True,
            "sp": {
                "entityId": ENTITY,
                "assertionConsumerService": {"url": ACS, "binding": Constants.BINDING_HTTP_POST},
                "NameIDFormat": Constants.NAMEID_PERSISTENT,
                "x509cert": cert,
                "privateKey": key,
                "attributeConsumingService": {
                    "serviceName": "Hundesteuer",
                    "requestedAttributes": [
                        {
                            "name": "urn:oid:2.5.4.4",
                            "isRequired": True,
                            "nameFormat": Constants.ATTRNAME_FORMAT_URI,
                        }
                    ],
                },
            },
            "security": {
                "authnRequestsSigned": True,
                "wantMessagesSigned": True,
                "wantAssertionsSigned": True,
                "signatureAlgorithm": Constants.RSA_SHA256,
                "digestAlgorithm": Constants.SHA256,
                # Its default, PasswordProtectedTransport, is no STORK level: NoAuthnContext.
                "requestedAuthnContext": False,
            },
        },
        idp,
    )


def _request(**post: str) -> dict:
    return {
        "https": "on",
        "http_host": "hundesteuer.example.org",
        "script_name": "/saml/acs",
        "get_data": {},
        "post_data": post,
    }


def test_onelogin_python3_saml_completes_a_qr_login(app, client, enrolled_phone, tmp_path):
    key_path, cert_path = key_and_certificate(tmp_path, "onelogin")
    settings = _settings(
        client.get("/saml/metadata").get_data(as_text=True),
        key_path.read_text(),
        cert_path.read_text(),
    )
    sp_metadata = OneLogin_Saml2_Settings(settings, sp_validation_only=True).get_sp_metadata()
    with app.app_context():
        add_service_provider(sp_metadata.decode(), source="test")

    auth = OneLogin_Saml2_Auth(_request(), settings)
    location = auth.login(return_to="rs-onelogin")
    request_id = auth.get_last_request_id()
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}" == ISSUER
    started = client.get(f"{parts.path}?{parts.query}")
    assert started.status_code == 303, started.get_data(as_text=True)
    login_id = started.headers["Location"].rsplit("/", 1)[-1]
    status = desktop_status(client, login_id).json
    assert enrolled_phone.approve(status["phone_url"], status["number"]).status_code == 200
    answer = client.get(desktop_status(client, login_id).json["continue_url"])
    fields = posted_fields(answer.get_data(as_text=True))
    assert fields["RelayState"] == "rs-onelogin"

    received = OneLogin_Saml2_Auth(_request(**fields), settings)
    received.process_response(request_id=request_id)
    assert received.get_errors() == [], received.get_last_error_reason()
    assert received.is_authenticated()
    assert received.get_attributes() == {"urn:oid:2.5.4.4": ["Mustermann"]}
    assert received.get_nameid_format() == Constants.NAMEID_PERSISTENT
    assert received.get_nameid()
