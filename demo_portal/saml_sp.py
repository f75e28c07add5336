"""The SAML portal's service provider, on pysaml2: its key, its metadata, requests and answers.

It knows Bürger-ID only by the metadata at ``<ISSUER>/saml/metadata`` (fetched over HTTP on
first use, like the OIDC portals' discovery document). What it asks for is BundID's dialect:
a signed AuthnRequest over HTTP-Redirect with ``RequestedAuthnContext`` STORK-QAA-Level-1 and
the AKDB ``AuthenticationRequest`` extension (requested attributes by their ``urn:oid:`` names,
the ``OrganizationDisplayName`` the phone shows). pysaml2 checks the answer: the Response and
Assertion signatures against the IdP's metadata, Destination, audience, validity and
``InResponseTo`` against the one outstanding request the caller passes in.

The key and self-signed certificate are made on first start in the instance folder (mode 0600,
never in git); Bürger-ID learns the certificate from the metadata at ``/saml/metadata``.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape
from xml.sax.saxutils import quoteattr

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from flask import Flask
from flask import current_app
from saml2 import BINDING_HTTP_POST
from saml2 import BINDING_HTTP_REDIRECT
from saml2 import extension_element_from_string
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import NAMEID_FORMAT_PERSISTENT
from saml2.saml import AuthnContextClassRef
from saml2.saml import NameID
from saml2.samlp import Extensions
from saml2.samlp import RequestedAuthnContext
from saml2.xmldsig import DIGEST_SHA256
from saml2.xmldsig import SIG_RSA_SHA256

from .private_files import read_or_create

__all__ = [
    "LEVEL",
    "REQUESTED",
    "SamlAnswer",
    "authn_redirect",
    "init_app",
    "logout_redirect",
    "read_logout_response",
    "read_response",
    "sp_metadata",
]

EXTENSION = "demo_portal.saml_sp"
HTTP_TIMEOUT_SECONDS = 10
LEVEL = "STORK-QAA-Level-1"
AKDB = "https://www.akdb.de/request/2018/09"
CLASSIC_UI = "https://www.akdb.de/request/2018/09/classic-ui/v1"

# BundID's names (idserver/saml/attributes.py documents them): friendly name → urn:oid: name.
REQUESTED = {
    "given_name": "urn:oid:2.5.4.42",
    "family_name": "urn:oid:2.5.4.4",
    "birthdate": "urn:oid:1.2.40.0.10.2.1.1.55",
    "street": "urn:oid:2.5.4.16",
    "postcode": "urn:oid:2.5.4.17",
    "city": "urn:oid:2.5.4.7",
}
_BY_OID = {oid: name for name, oid in REQUESTED.items()}


@dataclass(frozen=True)
class SamlAnswer:
    """A checked login answer: the persistent NameID, its qualifiers and the attributes."""

    name_id: str
    name_qualifier: str | None
    sp_name_qualifier: str | None
    session_index: str | None
    attributes: dict[str, str]
    level: str | None


# -- key, certificate, configuration ----------------------------------------------------------
def _key_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate_pem(key_pem: bytes, name: str) -> bytes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def init_app(app: Flask) -> None:
    """Key and self-signed certificate in the instance folder (made once)."""
    folder = Path(app.instance_path) / "saml"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_file, cert_file = folder / "sp.key", folder / "sp.crt"
    key_pem = read_or_create(key_file, _key_pem)
    host = urlsplit(app.config["BASE_URL"]).hostname or "localhost"
    read_or_create(cert_file, lambda: _certificate_pem(key_pem, host))
    app.extensions[EXTENSION] = {"key_file": key_file, "cert_file": cert_file, "client": None}


def entity_id() -> str:
    return f"{current_app.config['BASE_URL']}/saml/metadata"


def idp_entity_id() -> str:
    return f"{current_app.config['ISSUER']}/saml/metadata"


def _config(idp_metadata: str | None) -> SPConfig:
    state = current_app.extensions[EXTENSION]
    base = current_app.config["BASE_URL"]
    config = SPConfig()
    config.load(
        {
            "entityid": entity_id(),
            "xmlsec_binary": shutil.which("xmlsec1"),
            "key_file": str(state["key_file"]),
            "cert_file": str(state["cert_file"]),
            "metadata": {"inline": [idp_metadata]} if idp_metadata else {},
            "signing_algorithm": SIG_RSA_SHA256,
            "digest_algorithm": DIGEST_SHA256,
            "organization": {
                "display_name": [str(current_app.config["PORTAL"].name)],
                "name": [str(current_app.config["PORTAL"].name)],
                "url": [f"{base}/"],
            },
            "service": {
                "sp": {
                    "endpoints": {
                        "assertion_consumer_service": [(f"{base}/saml/acs", BINDING_HTTP_POST)],
                        "single_logout_service": [(f"{base}/saml/slo", BINDING_HTTP_POST)],
                    },
                    "authn_requests_signed": True,
                    "want_response_signed": True,
                    "want_assertions_signed": True,
                    "name_id_format": NAMEID_FORMAT_PERSISTENT,
                    "allow_unsolicited": False,
                }
            },
        }
    )
    return config


def sp_metadata() -> str:
    """This SP's EntityDescriptor: signing certificate, ACS and SLO (both HTTP-POST)."""
    metadata = create_metadata_string(None, config=_config(None))
    return metadata.decode() if isinstance(metadata, bytes) else str(metadata)


def _client() -> Saml2Client:
    """pysaml2's client with Bürger-ID's metadata (fetched once)."""
    state = current_app.extensions[EXTENSION]
    if state["client"] is None:
        answer = requests.get(idp_entity_id(), timeout=HTTP_TIMEOUT_SECONDS)
        answer.raise_for_status()
        state["client"] = Saml2Client(config=_config(answer.text))
    client: Saml2Client = state["client"]
    return client


def _location(binding: str, service: str) -> str:
    client = _client()
    lookup = getattr(client.metadata, service)
    endpoints = lookup(idp_entity_id(), binding, "idpsso")
    return str(endpoints[0]["location"])


def _redirect(xml: str, destination: str, relay_state: str) -> str:
    info = _client().apply_binding(
        BINDING_HTTP_REDIRECT, xml, destination, relay_state, sign=True, sigalg=SIG_RSA_SHA256
    )
    return str(dict(info["headers"])["Location"])


# -- login ------------------------------------------------------------------------------------
def _akdb_extension(display_name: str) -> Extensions:
    requested = "".join(
        f'<akdb:RequestedAttribute Name={quoteattr(oid)} RequiredAttribute="true"/>'
        for oid in REQUESTED.values()
    )
    xml = (
        f'<akdb:AuthenticationRequest xmlns:akdb="{AKDB}" Version="2">'
        f"<akdb:RequestedAttributes>{requested}</akdb:RequestedAttributes>"
        "<akdb:DisplayInformation>"
        f'<classic-ui:Version xmlns:classic-ui="{CLASSIC_UI}">'
        f"<classic-ui:OrganizationDisplayName>{escape(display_name)}"
        "</classic-ui:OrganizationDisplayName>"
        "</classic-ui:Version>"
        "</akdb:DisplayInformation>"
        "</akdb:AuthenticationRequest>"
    )
    return Extensions(extension_elements=[extension_element_from_string(xml)])


def authn_redirect(relay_state: str, display_name: str) -> tuple[str, str]:
    """(request id, URL at Bürger-ID's SSO) for a signed AuthnRequest over HTTP-Redirect."""
    destination = _location(BINDING_HTTP_REDIRECT, "single_sign_on_service")
    request_id, request = _client().create_authn_request(
        destination,
        binding=BINDING_HTTP_POST,  # how the answer comes back (ProtocolBinding)
        sign=False,  # the redirect binding signs the query string instead
        requested_authn_context=RequestedAuthnContext(
            authn_context_class_ref=[AuthnContextClassRef(text=LEVEL)], comparison="minimum"
        ),
        extensions=_akdb_extension(display_name),
    )
    return request_id, _redirect(str(request), destination, relay_state)


def read_response(encoded: str, *, request_id: str) -> SamlAnswer:
    """Check a Response to ``request_id``; any failure raises (the caller refuses the login)."""
    response = _client().parse_authn_request_response(
        encoded, BINDING_HTTP_POST, outstanding={request_id: "/"}
    )
    if response is None or response.in_response_to != request_id:
        raise ValueError("no valid response to the outstanding request")
    subject = response.get_subject()
    if not subject.text or subject.format != NAMEID_FORMAT_PERSISTENT:
        raise ValueError("no persistent NameID")
    attributes: dict[str, str] = {}
    for statement in response.assertion.attribute_statement:
        for attribute in statement.attribute:
            name = _BY_OID.get(attribute.name)
            if name and attribute.attribute_value and attribute.attribute_value[0].text:
                attributes[name] = str(attribute.attribute_value[0].text)
    authn = response.assertion.authn_statement[0] if response.assertion.authn_statement else None
    level = None
    if authn is not None and authn.authn_context and authn.authn_context.authn_context_class_ref:
        level = authn.authn_context.authn_context_class_ref.text
    return SamlAnswer(
        name_id=str(subject.text),
        name_qualifier=subject.name_qualifier,
        sp_name_qualifier=subject.sp_name_qualifier,
        session_index=authn.session_index if authn is not None else None,
        attributes=attributes,
        level=level,
    )


# -- logout -----------------------------------------------------------------------------------
def logout_redirect(answer: dict[str, Any], relay_state: str) -> str:
    """URL at Bürger-ID's SingleLogoutService for a signed LogoutRequest (HTTP-Redirect)."""
    destination = _location(BINDING_HTTP_REDIRECT, "single_logout_service")
    name_id = NameID(
        text=answer["name_id"],
        format=NAMEID_FORMAT_PERSISTENT,
        name_qualifier=answer.get("name_qualifier"),
        sp_name_qualifier=answer.get("sp_name_qualifier"),
    )
    _, request = _client().create_logout_request(
        destination,
        issuer_entity_id=idp_entity_id(),
        name_id=name_id,
        session_indexes=[answer["session_index"]] if answer.get("session_index") else None,
        sign=False,
    )
    return _redirect(str(request), destination, relay_state)


def read_logout_response(encoded: str) -> bool:
    """Whether ``encoded`` is Bürger-ID's signed, successful LogoutResponse."""
    response = _client().parse_logout_request_response(encoded, BINDING_HTTP_POST)
    return response is not None and response.status_ok()
