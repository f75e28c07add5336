"""A SAML service provider on pysaml2, for the suite: signs its AuthnRequests, reads answers.

Independent of the server's code: it knows the IdP only by the metadata at /saml/metadata.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import shutil
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from flask.testing import FlaskClient
from saml2 import BINDING_HTTP_POST
from saml2 import BINDING_HTTP_REDIRECT
from saml2 import BINDING_SOAP
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import NAMEID_FORMAT_PERSISTENT
from saml2.sigver import verify_redirect_signature
from saml2.xmldsig import DIGEST_SHA256
from saml2.xmldsig import SIG_RSA_SHA256

SP_ENTITY = "https://formulare.example.org/saml/metadata"
SP_ACS = "https://formulare.example.org/saml/acs"
SP_SLO = "https://formulare.example.org/saml/slo"
IDP = "http://localhost/saml/metadata"
SSO = "http://localhost/saml/sso"
SLO = "http://localhost/saml/slo"
XMLSEC = shutil.which("xmlsec1")


def key_and_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.crt"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


@dataclass
class SamlServiceProvider:
    directory: Path
    idp_metadata: str
    entity_id: str = SP_ENTITY
    acs: str = SP_ACS
    requested: tuple[str, ...] = ()  # RequestedAttribute names in its metadata
    key_name: str = "sp"
    encrypting: bool = False  # publishes an encryption key and wants assertions encrypted
    # SingleLogoutServices in its metadata: (location, binding); HTTP-POST takes the answers
    slo: tuple[tuple[str, str], ...] = ((SP_SLO, BINDING_HTTP_POST),)
    display_name: str = "Hundesteuer"
    outstanding: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.key_file, self.cert_file = key_and_certificate(self.directory, self.key_name)
        self.encryption_files = (
            key_and_certificate(self.directory, f"{self.key_name}-encryption")
            if self.encrypting
            else None
        )
        self.client = Saml2Client(config=self.config())

    def config(self) -> SPConfig:
        config = SPConfig()
        encryption: dict[str, Any] = {}
        if self.encryption_files:
            key, cert = self.encryption_files
            encryption = {"encryption_keypairs": [{"key_file": str(key), "cert_file": str(cert)}]}
        config.load(
            {
                **encryption,
                "entityid": self.entity_id,
                "xmlsec_binary": XMLSEC,
                "key_file": str(self.key_file),
                "cert_file": str(self.cert_file),
                "metadata": {"inline": [self.idp_metadata]} if self.idp_metadata else {},
                "signing_algorithm": SIG_RSA_SHA256,
                "digest_algorithm": DIGEST_SHA256,
                "organization": {
                    "display_name": [self.display_name],
                    "name": [self.display_name],
                    "url": ["https://formulare.example.org/"],
                },
                "service": {
                    "sp": {
                        "endpoints": {
                            "assertion_consumer_service": [(self.acs, BINDING_HTTP_POST)],
                            "single_logout_service": list(self.slo),
                        },
                        "authn_requests_signed": True,
                        "want_response_signed": True,
                        "want_assertions_signed": True,
                        "name_id_format": NAMEID_FORMAT_PERSISTENT,
                        "required_attributes": list(self.requested),
                        "allow_unsolicited": False,
                    }
                },
            }
        )
        return config

    def metadata(self) -> str:
        metadata = create_metadata_string(None, config=self.config())
        return metadata.decode() if isinstance(metadata, bytes) else str(metadata)

    def redirect_request(self, idp_entity: str, *, relay_state: str = "rs-1", **kwargs: Any) -> str:
        """A signed AuthnRequest for the HTTP-Redirect binding; returns the /saml/sso path."""
        request_id, info = self.client.prepare_for_authenticate(
            entityid=idp_entity,
            relay_state=relay_state,
            binding=BINDING_HTTP_REDIRECT,
            sign=True,
            sigalg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
            **kwargs,
        )
        self.outstanding[request_id] = "/"
        location = dict(info["headers"])["Location"]
        parts = urlsplit(location)
        return f"{parts.path}?{parts.query}"

    def authn_request(
        self, *, sign: bool = False, extensions_xml: str = "", **fields: Any
    ) -> tuple[str, str]:
        """(request id, AuthnRequest XML) to SSO; ``fields`` override its attributes
        (``issue_instant``, ``destination``, ``assertion_consumer_service_url``, …); ``sign``
        signs the XML (for the HTTP-POST binding). ``extensions_xml`` goes after the Issuer."""
        destination = fields.pop("destination", SSO)
        request_id, request = self.client.create_authn_request(
            destination,
            sign=sign and not extensions_xml,
            sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
            **fields,
        )
        self.outstanding[request_id] = "/"
        xml = str(request)
        if extensions_xml:
            xml = re.sub(
                r"(</(?:saml|ns\d):Issuer>)",
                r'\1<samlp:Extensions xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">'
                + extensions_xml.replace("\\", "\\\\")
                + "</samlp:Extensions>",
                xml,
                count=1,
            )
        return request_id, xml

    def redirect(
        self, xml: str, *, relay_state: str = "rs-1", sign: bool = True, path: str = SSO
    ) -> str:
        """The HTTP-Redirect binding's URL path for ``xml`` (signed over the query if ``sign``)."""
        info = self.client.apply_binding(
            BINDING_HTTP_REDIRECT,
            xml,
            path,
            relay_state,
            sign=sign,
            sigalg=SIG_RSA_SHA256 if sign else None,
        )
        location = dict(info["headers"])["Location"]
        parts = urlsplit(location)
        return f"{parts.path}?{parts.query}"

    def logout_request(self, name_id: Any) -> str:
        """A LogoutRequest for ``name_id`` (unsigned XML; sign it over the redirect query)."""
        _, request = self.client.create_logout_request(
            SLO, issuer_entity_id=IDP, name_id=name_id, sign=False
        )
        return str(request)

    def read_logout_response(self, encoded: str) -> Any:
        return self.client.parse_logout_request_response(encoded, BINDING_HTTP_POST)

    def receive_logout_redirect(self, url: str) -> Any:
        """The IdP's LogoutRequest of an HTTP-Redirect URL (an iframe's ``src``), as pysaml2's
        SP reads it, after checking the query's signature with the IdP's metadata certificate
        (Bindings §3.4.4.1; pysaml2's SP alone does not insist on it)."""
        fields = {name: values[0] for name, values in query(url).items()}
        certs = self.client.sec.metadata.certs(self.idp_entity(), "any", "signing")
        message = {
            k: fields[k]
            for k in ("SAMLRequest", "SigAlg", "Signature", "RelayState")
            if k in fields
        }
        assert any(
            verify_redirect_signature(message, self.client.sec.sec_backend, cert)
            for _, cert in certs
        ), "the LogoutRequest's query signature does not verify"
        return self.client.parse_logout_request(
            fields["SAMLRequest"],
            BINDING_HTTP_REDIRECT,
            relay_state=fields.get("RelayState"),
            sigalg=fields["SigAlg"],
            signature=fields["Signature"],
        )

    def answer_soap_logout(self, body: str, name_id: Any) -> str:
        """The SP's SOAP LogoutResponse to the IdP's SOAP LogoutRequest ``body``: Success if
        it names ``name_id`` (pysaml2 logs that subject out locally), else UnknownPrincipal."""
        info = self.client.handle_logout_request(body, name_id, BINDING_SOAP)
        data = info["data"]
        return data.decode() if isinstance(data, bytes) else str(data)

    def idp_entity(self) -> str:
        return next(iter(self.client.metadata.keys()))

    def read_response(self, encoded: str) -> Any:
        return self.client.parse_authn_request_response(
            encoded, BINDING_HTTP_POST, outstanding=self.outstanding
        )


def posted_fields(page: str) -> dict[str, str]:
    """The hidden fields of the HTTP-POST binding's form, unescaped."""
    found = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)
    return {name: html.unescape(value) for name, value in found}


def query(location: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(location).query)


def sso(browser: FlaskClient, path: str) -> Any:
    return browser.get(path)


def qr_login(
    client: FlaskClient, sp: SamlServiceProvider, phone: Any, **request_options: Any
) -> tuple[str, dict[str, str]]:
    """A complete QR login started by ``sp``'s AuthnRequest: the login id and the fields of the
    page that posts the answer to the SP (``SAMLResponse``, ``RelayState``)."""
    from harness import desktop_status

    started = client.get(sp.redirect_request(IDP, **request_options))
    assert started.status_code == 303, started.get_data(as_text=True)
    login_id = started.headers["Location"].rsplit("/", 1)[-1]
    status = desktop_status(client, login_id).json
    assert phone.approve(status["phone_url"], status["number"]).status_code == 200
    answer = client.get(desktop_status(client, login_id).json["continue_url"])
    assert answer.status_code == 200
    return login_id, posted_fields(answer.get_data(as_text=True))
