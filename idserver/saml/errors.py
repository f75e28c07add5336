"""Why a SAML request is refused: one class per code, with its message and status.

A request that cannot be trusted (unknown issuer, bad or missing signature, replayed, stale,
addressed elsewhere, an ACS URL the metadata does not list) gets a page, never an answer to a
URL it names. A trusted request the login cannot satisfy is answered to the SP's registered
ACS with a SAML status instead (``saml.service.Refusal``, SAML 2.0 Core §3.2.2.2).
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from ..errors import IdServerError

__all__ = [
    "AcsNotRegistered",
    "RequestExpired",
    "RequestReplayed",
    "SamlRejected",
    "SamlUnavailable",
    "SignatureInvalid",
    "UnknownServiceProvider",
    "WrongDestination",
]


class SamlRejected(IdServerError):
    """A SAML message that is malformed or cannot be read."""

    error = "saml_request_invalid"
    description = _l("The application that sent you here made a faulty SAML request.")


class UnknownServiceProvider(SamlRejected):
    """The ``Issuer`` is no registered service provider (``idserver saml-sp add``)."""

    error = "saml_unknown_service_provider"
    description = _l("The application that sent you here is not registered with Bürger-ID.")


class SignatureInvalid(SamlRejected):
    """Unsigned although IDSERVER_SAML_WANT_AUTHN_REQUESTS_SIGNED, or not signed by a key of
    the SP's metadata (SAML 2.0 Bindings §3.4.4.1, §3.5.4)."""

    error = "saml_signature_invalid"
    description = _l("The application's request is not correctly signed.")


class RequestReplayed(SamlRejected):
    """The request's ID was accepted before: each request is answered once."""

    error = "saml_request_replayed"
    description = _l("This request has been used already. Please start again at the application.")


class RequestExpired(SamlRejected):
    """IssueInstant outside IDSERVER_SAML_REQUEST_MAX_AGE_SECONDS of now."""

    error = "saml_request_expired"
    description = _l("This request is too old. Please start again at the application.")


class WrongDestination(SamlRejected):
    """``Destination`` is not this endpoint (SAML 2.0 Bindings §3.4.5.2, §3.5.5.2)."""

    error = "saml_wrong_destination"
    description = _l("This request was addressed to another server.")


class AcsNotRegistered(SamlRejected):
    """The AssertionConsumerService URL, index or binding is not in the SP's metadata
    (SAML 2.0 Profiles §4.1.4.1)."""

    error = "saml_acs_not_registered"
    description = _l("The application asked for its answer at an address it has not registered.")


class SamlUnavailable(IdServerError):
    """xmlsec1, which signs and verifies every SAML message, is not installed."""

    status = 503
    error = "saml_unavailable"
    description = _l(
        "SAML login is not available on this server at the moment (xmlsec1 is missing)."
    )
