"""The reference soft phone: a software WebAuthn authenticator standing in for a citizen's phone."""

from .authenticator import SOFT_PHONE_AAGUID
from .authenticator import AuthenticatorError
from .authenticator import SoftAuthenticator
from .client import PhoneClient
from .client import PhoneError

__all__ = [
    "SOFT_PHONE_AAGUID",
    "AuthenticatorError",
    "PhoneClient",
    "PhoneError",
    "SoftAuthenticator",
]
