"""SAML 2.0 identity provider over pysaml2: every XML signature is made and checked by xmlsec1.

No Flask and no database: the caller passes the issuer, the registered SPs' metadata and the
signing key, and gets pysaml2's parsed messages back, or our own errors (``saml.errors``).
Nothing here writes XML by hand.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import os
import shutil
import tempfile
import threading
import zlib
from dataclasses import dataclass
from typing import Any

from defusedxml.ElementTree import fromstring
from saml2 import BINDING_HTTP_POST
from saml2 import BINDING_HTTP_REDIRECT
from saml2 import BINDING_SOAP
from saml2.assertion import authn_statement
from saml2.attribute_converter import AttributeConverter
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor
from saml2.metadata import sign_entity_descriptor
from saml2.saml import NAMEID_FORMAT_PERSISTENT
from saml2.saml import NameID
from saml2.sdb import SessionStorage
from saml2.server import Server
from saml2.sigver import security_context
from saml2.xmldsig import DIGEST_SHA256
from saml2.xmldsig import SIG_RSA_SHA256

from .attributes import NAME_FORMAT_URI
from .attributes import attribute_map
from .errors import SamlRejected
from .errors import SamlUnavailable
from .errors import SignatureInvalid
from .errors import UnknownServiceProvider
from .errors import WrongDestination

__all__ = [
    "BINDINGS",
    "IdpSettings",
    "ParsedRequest",
    "acs_endpoints",
    "authn_response",
    "error_response",
    "identity_provider",
    "logout_request",
    "logout_response",
    "read_soap_logout_response",
    "parse_authn_request",
    "parse_logout_request",
    "signed_metadata",
    "slo_endpoints",
    "slo_services",
    "xmlsec_binary",
]

BINDINGS = {"redirect": BINDING_HTTP_REDIRECT, "post": BINDING_HTTP_POST, "soap": BINDING_SOAP}
_lock = threading.Lock()
_servers: dict[str, Server] = {}
_workdir: str | None = None


@dataclass(frozen=True)
class IdpSettings:
    issuer: str
    sp_metadata: tuple[str, ...]
    key_pem: bytes
    cert_pem: bytes
    want_requests_signed: bool

    @property
    def entity_id(self) -> str:
        return f"{self.issuer}/saml/metadata"

    @property
    def sso_url(self) -> str:
        return f"{self.issuer}/saml/sso"

    @property
    def slo_url(self) -> str:
        return f"{self.issuer}/saml/slo"


@dataclass(frozen=True)
class ParsedRequest:
    """A request whose signature (if any), version, Destination and IssueInstant format pysaml2
    has checked."""

    message: Any  # saml2.samlp.AuthnRequest or LogoutRequest
    xml: str  # the document as received (what the AKDB extension is read from)
    issuer: str
    signed: bool


def xmlsec_binary() -> str:
    """The path of xmlsec1, or SamlUnavailable."""
    path = shutil.which("xmlsec1")
    if path is None:
        raise SamlUnavailable()
    return path


def _files(settings: IdpSettings) -> tuple[str, str]:
    """The key and certificate as files for xmlsec1, in a directory only this process reads."""
    global _workdir
    if _workdir is None:
        _workdir = tempfile.mkdtemp(prefix="idserver-saml-")  # mode 0700
        atexit.register(shutil.rmtree, _workdir, True)
    digest = hashlib.sha256(settings.cert_pem).hexdigest()[:16]
    key_file = os.path.join(_workdir, f"{digest}.key")
    cert_file = os.path.join(_workdir, f"{digest}.crt")
    if not os.path.exists(key_file):
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(settings.key_pem)
        with open(cert_file, "wb") as out:
            out.write(settings.cert_pem)
    return key_file, cert_file


def _config(settings: IdpSettings) -> IdPConfig:
    key_file, cert_file = _files(settings)
    both = [(settings.sso_url, BINDING_HTTP_REDIRECT), (settings.sso_url, BINDING_HTTP_POST)]
    logout = [(settings.slo_url, BINDING_HTTP_REDIRECT), (settings.slo_url, BINDING_HTTP_POST)]
    config = IdPConfig()
    config.load(
        {
            "entityid": settings.entity_id,
            "xmlsec_binary": xmlsec_binary(),
            "key_file": key_file,
            "cert_file": cert_file,
            "metadata": {"inline": list(settings.sp_metadata)},
            "signing_algorithm": SIG_RSA_SHA256,
            "digest_algorithm": DIGEST_SHA256,
            "accepted_time_diff": 0,
            "service": {
                "idp": {
                    "name": "Bürger-ID",
                    "endpoints": {"single_sign_on_service": both, "single_logout_service": logout},
                    "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                    "want_authn_requests_signed": settings.want_requests_signed,
                    "sign_response": True,
                    "sign_assertion": True,
                    "policy": {
                        "default": {
                            "lifetime": {"minutes": 5},
                            "attribute_restrictions": None,
                            "name_form": NAME_FORMAT_URI,
                        }
                    },
                }
            },
        }
    )
    converter = AttributeConverter()
    converter.from_dict(attribute_map())
    config.attribute_converters = [converter]
    return config


class _NoSessionStorage(SessionStorage):  # type: ignore[misc]
    """pysaml2's IdP keeps every assertion it made in a dict of the process, for ever: citizen
    data in memory and a leak. Nothing here reads them back (logout ends the Bürger-ID session,
    not pysaml2's), so none is kept."""

    def store_assertion(self, assertion: Any, to_sign: Any) -> None:
        return None


class _Server(Server):  # type: ignore[misc]
    """pysaml2's IdP, handing a complete ``authn_statement`` on to the assertion: its
    ``create_authn_response`` takes one but drops it on the way (pysaml2 7.5)."""

    def gather_authn_response_args(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        gathered: dict[str, Any] = super().gather_authn_response_args(*args, **kwargs)
        if kwargs.get("authn_statement") is not None:
            gathered["authn_statement"] = kwargs["authn_statement"]
        return gathered


def identity_provider(settings: IdpSettings) -> Server:
    """pysaml2's IdP for these settings; built once per distinct set of settings."""
    cache_key = hashlib.sha256(
        repr(
            (
                settings.issuer,
                settings.sp_metadata,
                settings.cert_pem,
                settings.want_requests_signed,
            )
        ).encode()
    ).hexdigest()
    with _lock:
        server = _servers.get(cache_key)
        if server is None:
            server = _Server(config=_config(settings))
            server.session_db = _NoSessionStorage()
            _servers.clear()  # only the current settings are kept
            _servers[cache_key] = server
        return server


def signed_metadata(settings: IdpSettings) -> str:
    """The IdP's EntityDescriptor, signed with its key (SAML 2.0 Metadata §3)."""
    config = identity_provider(settings).config
    descriptor = entity_descriptor(config)
    _, xml = sign_entity_descriptor(
        descriptor, None, security_context(config), SIG_RSA_SHA256, DIGEST_SHA256
    )
    return str(xml)


def _decoded(encoded: str, binding: str) -> str:
    """The request's XML, for reading the extensions from the very document that was checked."""
    try:
        raw = base64.b64decode(encoded, validate=False)
        if binding == BINDING_HTTP_REDIRECT:
            raw = zlib.decompress(raw, -15)
        return raw.decode("utf-8")
    except (ValueError, zlib.error) as exc:  # UnicodeDecodeError is a ValueError
        raise SamlRejected() from exc


def _issuer_of(xml: str) -> str:
    """The Issuer of the request's root element, read whole (comments do not cut it)."""
    try:
        root = fromstring(xml)
    except Exception:  # noqa: BLE001 -- unreadable: no issuer
        return ""
    issuer = root.find("{urn:oasis:names:tc:SAML:2.0:assertion}Issuer")
    return "".join(issuer.itertext()).strip() if issuer is not None else ""


def _parse(
    server: Server,
    parse: Any,
    settings: IdpSettings,
    *,
    encoded: str,
    binding: str,
    relay_state: str | None,
    sigalg: str | None,
    signature: str | None,
) -> ParsedRequest:
    xml = _decoded(encoded, binding)
    # Before xmlsec1 runs (a process per check): a stranger's request costs a parse only.
    expected_issuer = _issuer_of(xml)
    if expected_issuer not in server.metadata.keys():  # noqa: SIM118 -- no __contains__ for ids
        raise UnknownServiceProvider()
    try:
        parsed = parse(
            encoded, binding, relay_state=relay_state, sigalg=sigalg, signature=signature
        )
    except Exception as exc:  # pysaml2 raises many kinds; each is a refusal here
        name = type(exc).__name__
        if "Signed" in name or "Signature" in name or "Cert" in name:
            raise SignatureInvalid() from exc
        if "not destined" in str(exc).lower() or name == "OtherError":
            raise WrongDestination() from exc
        raise SamlRejected() from exc
    if parsed is None or parsed.message is None:
        raise SamlRejected()
    message = parsed.message
    if message.destination and message.destination not in (settings.sso_url, settings.slo_url):
        raise WrongDestination()
    issuer = (message.issuer.text or "").strip() if message.issuer is not None else ""
    if issuer != expected_issuer:  # both parsers must read the same name
        raise SamlRejected()
    return ParsedRequest(
        message=message,
        xml=xml,
        issuer=issuer,
        signed=bool(signature) or message.signature is not None,
    )


def parse_authn_request(
    settings: IdpSettings,
    *,
    encoded: str,
    binding: str,
    relay_state: str | None = None,
    sigalg: str | None = None,
    signature: str | None = None,
) -> ParsedRequest:
    """An AuthnRequest from a registered SP, its signature checked against the SP's metadata
    when signed (and required to be with ``want_requests_signed``)."""
    server = identity_provider(settings)
    return _parse(
        server,
        server.parse_authn_request,
        settings,
        encoded=encoded,
        binding=binding,
        relay_state=relay_state,
        sigalg=sigalg,
        signature=signature,
    )


def parse_logout_request(
    settings: IdpSettings,
    *,
    encoded: str,
    binding: str,
    relay_state: str | None = None,
    sigalg: str | None = None,
    signature: str | None = None,
) -> ParsedRequest:
    """A LogoutRequest (SAML 2.0 Core §3.7.1), checked as an AuthnRequest is."""
    server = identity_provider(settings)
    return _parse(
        server,
        server.parse_logout_request,
        settings,
        encoded=encoded,
        binding=binding,
        relay_state=relay_state,
        sigalg=sigalg,
        signature=signature,
    )


def acs_endpoints(settings: IdpSettings, sp_entity_id: str) -> list[dict[str, Any]]:
    """The SP's HTTP-POST AssertionConsumerServices from its metadata, in index order."""
    metadata = identity_provider(settings).metadata
    return list(metadata.assertion_consumer_service(sp_entity_id, BINDING_HTTP_POST))


def slo_endpoints(
    settings: IdpSettings, sp_entity_id: str, binding: str = BINDING_HTTP_POST
) -> list[str]:
    """The locations of the SP's SingleLogoutServices for ``binding`` from its metadata, in
    document order (read from pysaml2's metadata store, which logs an error for each binding
    it is asked about and does not find)."""
    metadata = identity_provider(settings).metadata
    try:
        descriptors = metadata[sp_entity_id]["spsso_descriptor"]
    except (KeyError, TypeError):
        return []
    return [
        str(service["location"])
        for descriptor in descriptors
        for service in descriptor.get("single_logout_service", [])
        if service.get("binding") == binding
    ]


def slo_services(settings: IdpSettings, sp_entity_id: str) -> dict[str, str]:
    """The SP's first SingleLogoutService per binding we send LogoutRequests by (``soap``,
    ``redirect``), from its metadata; empty if it has neither."""
    found: dict[str, str] = {}
    for name in ("soap", "redirect"):
        locations = slo_endpoints(settings, sp_entity_id, BINDINGS[name])
        if locations:
            found[name] = locations[0]
    return found


def encryption_certificate(settings: IdpSettings, sp_entity_id: str) -> str | None:
    """The certificate (base64 DER) of the SP's first KeyDescriptor marked
    ``use="encryption"``, or None.

    Only an explicit encryption key asks for encrypted assertions: a KeyDescriptor without
    ``use`` (signing and encryption, SAML 2.0 Metadata §2.4.1.1) is taken for signing only, so an
    SP that never configured decryption still reads its answers.
    """
    metadata = identity_provider(settings).metadata
    try:
        descriptors = metadata[sp_entity_id]["spsso_descriptor"]
    except (KeyError, TypeError):
        return None
    for descriptor in descriptors:
        for key in descriptor.get("key_descriptor", []):
            if key.get("use") != "encryption":
                continue
            for data in key["key_info"]["x509_data"]:
                # base64 DER, as pysaml2 puts it into the EncryptedKey's X509Certificate
                return "".join(str(data["x509_certificate"]["text"]).split())
    return None


def _name_id(settings: IdpSettings, sp_entity_id: str, name_id: str) -> NameID:
    """The persistent pairwise NameID, qualified by both entities (Core §8.3.7), the same in
    the assertion and in a LogoutRequest (Core §3.7.1)."""
    return NameID(
        format=NAMEID_FORMAT_PERSISTENT,
        name_qualifier=settings.entity_id,
        sp_name_qualifier=sp_entity_id,
        text=name_id,
    )


def authn_response(
    settings: IdpSettings,
    *,
    sp_entity_id: str,
    in_response_to: str,
    destination: str,
    name_id: str,
    identity: dict[str, list[str]],
    level: str,
    authn_instant: int,
    session_index: str,
) -> str:
    """A signed Response with a signed Assertion (SAML 2.0 Profiles §4.1.4.2), base64 for the
    HTTP-POST binding. The signed Assertion is encrypted to the SP (an EncryptedAssertion, SAML
    2.0 Core §2.3.4) when its metadata publishes an encryption key. The AuthnStatement names the
    session by ``session_index`` (Core §2.7.2; pysaml2 would pick a random one), which a later
    LogoutRequest repeats (Core §3.7.1)."""
    server = identity_provider(settings)
    encrypt_to = encryption_certificate(settings, sp_entity_id)
    statement = authn_statement(
        authn_class=level, authn_auth=settings.entity_id, authn_instant=authn_instant
    )
    statement.session_index = session_index
    response = server.create_authn_response(
        identity,
        in_response_to=in_response_to,
        destination=destination,
        sp_entity_id=sp_entity_id,
        name_id=_name_id(settings, sp_entity_id, name_id),
        authn_statement=statement,
        sign_response=True,
        sign_assertion=True,
        encrypt_assertion=encrypt_to is not None,
        encrypt_assertion_self_contained=True,  # the Assertion keeps its own signature inside
        encrypt_cert_assertion=encrypt_to,
        sign_alg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    return base64.b64encode(str(response).encode()).decode()


def error_response(
    settings: IdpSettings,
    *,
    in_response_to: str,
    destination: str,
    status: str,
    message: str,
) -> str:
    """A signed Response carrying only a status (``Responder`` with ``status`` below it)."""
    server = identity_provider(settings)
    response = server.create_error_response(
        in_response_to,
        destination=destination,
        info=(status, message),
        sign=True,
        sign_alg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    return base64.b64encode(str(response).encode()).decode()


def logout_response(settings: IdpSettings, *, request: ParsedRequest, binding: str) -> str:
    """A signed LogoutResponse with status Success to the SP's SingleLogoutService for
    ``binding`` (its Destination), base64 for the HTTP-POST binding."""
    server = identity_provider(settings)
    response = server.create_logout_response(
        request.message, [binding], sign=True, sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256
    )
    return base64.b64encode(str(response).encode()).decode()


def logout_request(
    settings: IdpSettings,
    *,
    sp_entity_id: str,
    binding: str,
    destination: str,
    name_id: str,
    session_index: str,
) -> tuple[str, str]:
    """An IdP-initiated LogoutRequest (SAML 2.0 Core §3.7.1, Profiles §4.4.3.1) for the NameID
    and SessionIndex the SP was given, signed by pysaml2: (request ID, what to send).

    ``soap``: the request's XML is signed and wrapped in a SOAP envelope, the body to POST
    (Bindings §3.2). ``redirect``: deflated into the query and signed over it, the URL for the
    browser (Bindings §3.4.4.1).
    """
    server = identity_provider(settings)
    soap = binding == BINDING_SOAP
    request_id, request = server.create_logout_request(
        destination,
        issuer_entity_id=sp_entity_id,
        name_id=_name_id(settings, sp_entity_id, name_id),
        session_indexes=[session_index],
        reason="urn:oasis:names:tc:SAML:2.0:logout:user",
        sign=soap,
        sign_alg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    info = server.apply_binding(
        binding, str(request), destination, sign=not soap, sigalg=SIG_RSA_SHA256
    )
    if soap:
        return str(request_id), str(info["data"])
    return str(request_id), str(dict(info["headers"])["Location"])


def read_soap_logout_response(
    settings: IdpSettings, body: str, *, expected_request_id: str
) -> bool:
    """Whether the SOAP answer is the SP's LogoutResponse to ``expected_request_id`` with
    status Success (Core §3.7.2); its signature, if any, checked against the SP's metadata."""
    server = identity_provider(settings)
    try:
        response = server.parse_logout_request_response(body, BINDING_SOAP)
    except Exception:  # noqa: BLE001 -- any unreadable or badly signed answer is a failure
        return False
    if response is None or response.response is None:
        return False
    message = response.response
    return bool(message.in_response_to == expected_request_id and response.status_ok())
