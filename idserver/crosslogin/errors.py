"""Why a QR-code login refuses a step: one class per error code, with its message and status.

As Authlib's ``oidc/core/errors.py``: the wire code (``error``) is stable and documented for
phone apps (docs/phone-api.md); the message is for the person holding the phone or sitting at
the computer. Raise the class, not ``LoginRejected(..., error="…")``.
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from ..errors import LoginRejected
from ..errors import NotFound

__all__ = [
    "AlreadyScanned",
    "InvalidNumber",
    "LoginEnded",
    "LoginExpired",
    "LevelTooLow",
    "LoginNotFound",
    "NoChallenge",
    "NotBound",
    "OtherAccount",
    "ProximityRequired",
    "QrStale",
    "UnknownDevice",
    "WrongNumber",
    "ended_error",
]


class LoginNotFound(NotFound):
    """No such login, or not for this browser (its cookie does not match): 404 either way."""

    error = "login_not_found"
    description = _l("This login does not exist or has ended.")


class LoginEnded(LoginRejected):
    """The login was used, denied or cancelled, or its approving device was revoked since."""

    error = "login_ended"
    description = _l("This login has already ended.")


class LoginExpired(LoginRejected):
    """The login's lifetime (``LOGIN_TTL_SECONDS``) ran out before the phone finished."""

    error = "login_expired"
    description = _l("This login has expired. Please start again on the computer.")


class AlreadyScanned(LoginRejected):
    """Another phone scanned the code first and holds the binding."""

    error = "already_scanned"
    description = _l("This login is already being confirmed on another phone.")


class QrStale(LoginRejected):
    """The QR frame's HMAC does not verify or its time step is too old (``crosslogin.qr``)."""

    error = "qr_stale"
    description = _l(
        "This QR code is too old or damaged. Please scan the code on the screen again."
    )


class ProximityRequired(LoginRejected):
    """The phone is in another network than the computer, under the ``deny`` policy
    (RFC 10027 *Establish Proximity*): the login has ended."""

    status = 403
    error = "proximity_required"
    description = _l(
        "Your phone is in a different network than the computer that asked for this login. "
        "This service only allows logins when both are in the same network, so the login "
        "has been cancelled. If you are sitting at that computer yourself, connect your "
        "phone to the same Wi-Fi and start again on the computer."
    )


class OtherAccount(LoginRejected):
    """The relying party asked for one citizen's login (OIDC ``login_hint``) and another
    citizen approved it: the login has ended, nobody is logged in."""

    status = 403
    error = "other_account"
    description = _l(
        "This login was meant for another person's Bürger-ID, so it has been cancelled and "
        "nobody was logged in. If you want to log in yourself, log out of the service on the "
        "computer first and start again."
    )


class NotBound(LoginRejected):
    """The phone does not hold the binding secret the first scan handed out."""

    error = "not_bound"
    description = _l("Please scan the QR code on the computer screen again.")


class InvalidNumber(LoginRejected):
    """What was typed is not a two-digit number (nothing changes)."""

    error = "invalid_number"
    description = _l("Please type the two-digit number shown on the computer.")


class WrongNumber(LoginRejected):
    """The typed number differs from the computer's: the login has ended (RFC 10027)."""

    error = "wrong_number"
    description = _l(
        "The number was not right, so this login has been cancelled for your safety. "
        "If you started it yourself, please start again on the computer."
    )


class NoChallenge(LoginRejected):
    """No challenge is waiting for this login (never handed out, or already spent)."""

    error = "no_challenge"
    description = _l("Please type the number again.")


class LevelTooLow(LoginRejected):
    """The approval's assurance level (``idserver.assurance``) is below the one the service
    asked for: the login has ended, and the service hears ``unmet_authentication_requirements``.
    """

    status = 403
    error = "level_too_low"
    description = _l(
        "This service needs a higher level of assurance than your Bürger-ID login can offer "
        "(for example an identity check in person at the citizens' office, or a device-bound "
        "key). The login has been cancelled. Please ask the citizens' office."
    )


class UnknownDevice(LoginRejected):
    """The assertion names no usable credential of an active citizen."""

    error = "unknown_device"
    description = _l("This phone is not registered (any more).")


def ended_error(state: str) -> LoginRejected:
    """The refusal for a phone step on a login that no longer waits for this phone."""
    if state == "scanned":
        return AlreadyScanned()
    if state == "expired":
        return LoginExpired()
    return LoginEnded()
