"""The passkeys package's errors.

The ceremonies (``ceremonies``, ``service.take_challenge``) serve enrolment, login and pairing
alike, so they raise one ``PasskeyRejected`` and each caller maps it to its own error
(``EnrolmentRejected``, ``LoginRejected``, ``PairingRejected``), keeping the description and,
where the refusal has one, its own code: ``raise LoginRejected(exc.description, error=exc.error)``.
"""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l

from ..errors import LoginRejected

__all__ = ["AttestationNotTrusted", "ChallengeExpired", "DeviceSuspended", "PasskeyRejected"]


class PasskeyRejected(Exception):
    """A WebAuthn ceremony refused what the browser sent (WebAuthn L3 §7.1, §7.2)."""

    error: str | None = None  # a code of its own, kept by the caller; None: the caller's code
    description: Any = _l("The answer from the phone was malformed.")

    def __init__(self, description: Any = None) -> None:
        if description is not None:
            self.description = description
        super().__init__(f"{self.error}: {self.description}")


class ChallengeExpired(PasskeyRejected):
    """The challenge is unknown, for another purpose, already taken or past its time."""

    description = _l("This step has expired. Please start again.")


class AttestationNotTrusted(PasskeyRejected):
    """The attestation does not meet ``ATTESTATION_POLICY`` (WebAuthn L3 §7.1 steps 21–23)."""

    error = "attestation_not_trusted"
    description = _l("This kind of phone or security key is not accepted here.")


class DeviceSuspended(LoginRejected):
    """The signature counter went back: a cloned authenticator (WebAuthn L3 §6.1.1)."""

    error = "device_suspended"
    description = _l("This phone has been blocked for safety. Please contact the citizens' office.")
