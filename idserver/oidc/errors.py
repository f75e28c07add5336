"""The OIDC provider's own errors, one class per answer.

A login that ended without approval is answered with RFC 6749 §4.1.2.1 ``access_denied`` ("The
resource owner or authorization server denied the request"); the class says which way it ended
in ``error_description``, for the developer of the relying party, so in English and stable
(docs/relying-parties.md).
"""

from __future__ import annotations

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import AccessDeniedError
from authlib.oauth2.rfc6749 import InvalidRequestError
from flask_babel import lazy_gettext as _l

from ..crosslogin.models import DenyReason
from ..crosslogin.service import OTHER_ACCOUNT
from ..crosslogin.service import OTHER_NETWORK
from ..errors import IdServerError
from ..errors import LoginRejected
from ..errors import NotFound

__all__ = [
    "DENIALS",
    "DENIAL_DESCRIPTIONS",
    "BearerTokenMissing",
    "CancelledOnComputer",
    "CitizenDeclined",
    "ClientExists",
    "ClientGone",
    "FaultyRequest",
    "InvalidClientMetadata",
    "InvalidClientScope",
    "InvalidRedirectUri",
    "ExpiredBeforeApproval",
    "OtherAccount",
    "OtherNetwork",
    "PushedRequestRequired",
    "UnknownClient",
    "UnmetAuthenticationRequirements",
    "WrongNumber",
    "denial_for",
]


class CitizenDeclined(AccessDeniedError):
    """The citizen said no on the phone (or the login ended there in another way)."""

    description = "The citizen declined the login on their phone"


class WrongNumber(AccessDeniedError):
    """The number typed on the phone was not the computer's (RFC 10027 number matching)."""

    description = "The number typed on the phone did not match"


class CancelledOnComputer(AccessDeniedError):
    """The person at the computer cancelled the login."""

    description = "The login was cancelled on the computer"


class OtherNetwork(AccessDeniedError):
    """The phone scanned from another network under the ``deny`` proximity policy."""

    description = "The phone was in another network than the computer"


class OtherAccount(AccessDeniedError):
    """Another citizen than the one named by ``login_hint`` approved: nobody is logged in."""

    description = "Another citizen than the one in login_hint approved the login"


class ExpiredBeforeApproval(AccessDeniedError):
    """The login's lifetime ran out before it was approved."""

    description = "The login expired before it was approved"


# The login's ending (``expired`` or its deny reason) → the answer.
DENIALS: dict[str, type[AccessDeniedError]] = {
    "denied": CitizenDeclined,
    "wrong_number": WrongNumber,
    "cancelled": CancelledOnComputer,
    OTHER_NETWORK: OtherNetwork,
    OTHER_ACCOUNT: OtherAccount,
    "expired": ExpiredBeforeApproval,
}
DENIAL_DESCRIPTIONS = {kind: str(error.description) for kind, error in DENIALS.items()}


class UnmetAuthenticationRequirements(OAuth2Error):
    """OpenID Connect Core Unmet Authentication Requirements 1.0 §2: "The Authorization Server
    is unable to meet the requirements of the Relying Party for the authentication of the
    End-User" — here the assurance level ``acr_values`` asked for (``idserver.assurance``)."""

    error = "unmet_authentication_requirements"
    description = "The login cannot reach the requested assurance level"


def denial_for(*, state: str, deny_reason: str | None, oauth_state: str | None) -> OAuth2Error:
    """The error for a login that ended in ``state`` for ``deny_reason``: ``access_denied``
    with its description, or ``unmet_authentication_requirements`` for a level too low."""
    kind = "expired" if state == "expired" else deny_reason
    error: OAuth2Error
    if kind == DenyReason.LEVEL_TOO_LOW:
        error = UnmetAuthenticationRequirements(
            description="The citizen's assurance level is below the requested one"
        )
    else:
        error = DENIALS.get(kind or "", CitizenDeclined)()
    error.state = oauth_state
    return error


class FaultyRequest(IdServerError):
    """An authorization request so broken that it cannot be answered at the relying party
    (RFC 6749 §4.1.2.1: no trustworthy redirect URI), shown to the person instead."""

    error = "invalid_request"
    description = _l("The application that sent you here made a faulty request.")


class PushedRequestRequired(InvalidRequestError):
    """RFC 9126 §5, §6: this server or this client takes authorization requests only through
    the pushed authorization request endpoint."""

    description = "This client must push its authorization requests to /par (RFC 9126)"


class ClientGone(LoginRejected):
    """The client was removed or disabled while its login ran: nobody to redirect to (RFC 6749
    §4.1.2.1), so the browser is told why."""

    error = "unknown_client"
    description = _l("This service no longer offers login with Bürger-ID.")


# -- client registration (operator commands; English): RFC 7591 §3.2.2 codes ------------------
class InvalidRedirectUri(IdServerError):
    """RFC 7591 §3.2.2: a redirect URI is not one a client may register."""

    error = "invalid_redirect_uri"


class InvalidClientMetadata(IdServerError):
    """RFC 7591 §3.2.2: a field of the client's registration is invalid."""

    error = "invalid_client_metadata"


class InvalidClientScope(IdServerError):
    """The scope a client may get must include openid and name only known scopes."""

    error = "invalid_scope"


class ClientExists(IdServerError):
    """A client id is taken (also by a deleted client: ids are never reused)."""

    error = "client_exists"


class UnknownClient(NotFound):
    """No such client, or a deleted one."""

    error = "unknown_client"


class BearerTokenMissing(InvalidRequestError):
    """A protected resource was asked without a bearer token: none sent, or sent another way
    than the ``Authorization`` header or a form body (RFC 6750 §2.1, §2.2).

    RFC 6750 §3.1: "If the request lacks any authentication information […], the resource
    server SHOULD NOT include an error code or other error information" in the challenge, so it
    names the realm only; the JSON body says what is wrong, as every API answer here does.
    """

    status_code = 401
    description = "Send the access token as a Bearer token in the Authorization header."

    def __init__(self, *, realm: str) -> None:
        super().__init__()
        self.realm = realm

    def get_headers(self) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = super().get_headers()
        return [*headers, ("WWW-Authenticate", f'Bearer realm="{self.realm}"')]
