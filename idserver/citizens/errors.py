"""The citizens package's errors: one class per code, with its status and message.

The bases (``ActivationRejected``, ``EnrolmentRejected``, ``IdServerError``, ``NotFound``) live
in ``idserver.errors``, which turns every one of them into a JSON answer or a page.
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from ..errors import ActivationRejected
from ..errors import EnrolmentRejected
from ..errors import IdServerError
from ..errors import NotFound

__all__ = [
    "ActivationCodeBlocked",
    "ActivationCodeExpired",
    "ActivationCodeUsed",
    "CredentialExists",
    "EnrolmentExpired",
    "InvalidCitizen",
    "InvalidDeviceName",
    "InvalidImport",
    "ResidentNotFound",
    "TooManyWrongCodes",
    "WrongActivationCode",
]


# -- residents (clerk console and CLI; English, for the operator) --------------------------
class InvalidCitizen(IdServerError):
    """A resident's field is missing or malformed; the description names it."""

    error = "invalid_citizen"


class InvalidImport(IdServerError):
    """A resident import file is not a list of objects (JSON) or a table (CSV)."""

    error = "invalid_import"


class ResidentNotFound(NotFound):
    description = "no such resident"


# -- activation codes ------------------------------------------------------------------------
class WrongActivationCode(ActivationRejected):
    """Wrong, unknown or belonging to a resident no longer active: the same answer for all."""

    error = "invalid_activation_code"
    description = _l("This code is not right. Please check it and try again.")


class TooManyWrongCodes(ActivationRejected):
    """ACTIVATION_MAX_ATTEMPTS_PER_ADDRESS wrong codes from one address within the hour."""

    error = "too_many_attempts"
    status = 429
    description = _l("Too many wrong codes from this connection. Please try again in an hour.")


class ActivationCodeBlocked(ActivationRejected):
    """The code was entered wrongly ACTIVATION_MAX_ATTEMPTS times."""

    error = "too_many_attempts"
    status = 429
    description = _l("This code was entered wrongly too often. Please ask for a new letter.")


class ActivationCodeUsed(ActivationRejected):
    error = "code_used"
    description = _l("This code has already been used. Please ask for a new letter.")


class ActivationCodeExpired(ActivationRejected):
    error = "code_expired"
    description = _l("This code has expired. Please ask the citizens' office for a new letter.")


# -- enrolment -------------------------------------------------------------------------------
class EnrolmentExpired(EnrolmentRejected):
    """The enrolment's challenge is gone, or was made for another kind of ticket."""

    description = _l("This step has expired. Please start again.")


class InvalidDeviceName(EnrolmentRejected):
    error = "invalid_name"
    description = _l("Please give the phone a shorter name.")


class CredentialExists(EnrolmentRejected):
    """The credential (or its key) is registered already (WebAuthn L3 §7.1 step 25)."""

    error = "credential_exists"
    description = _l("This phone is already registered.")
