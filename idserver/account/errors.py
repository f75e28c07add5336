"""The account pages' errors (devices, pairings, services): one class per code, with its
status and message. The bases live in ``idserver.errors``."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from ..errors import IdServerError
from ..errors import NotFound
from ..errors import RateLimited

__all__ = [
    "DeviceNotFound",
    "InvalidDeviceName",
    "InvalidNumber",
    "NoUsableDevice",
    "NotBound",
    "NotOwnDevice",
    "PairingCancelled",
    "PairingClaimed",
    "PairingExpired",
    "PairingNotFound",
    "PairingRejected",
    "WrongPairingState",
    "PairingUsed",
    "ServiceNotFound",
    "TooManyApprovals",
    "WrongNumber",
]


# -- devices ---------------------------------------------------------------------------------
class InvalidDeviceName(IdServerError):
    """A device name must be 1–60 printable characters; the description says which rule."""

    error = "invalid_name"
    description = _l("Please give the device a name.")


class DeviceNotFound(NotFound):
    error = "unknown_device"
    description = _l("This device does not exist or has been removed.")


# -- services (consents) ---------------------------------------------------------------------
class ServiceNotFound(NotFound):
    error = "unknown_service"
    description = _l("You have not logged in to this service.")


# -- pairings --------------------------------------------------------------------------------
class PairingRejected(IdServerError):
    """Adding a device was refused: the pairing ended, is someone else's, or a check failed."""

    error = "pairing_rejected"


class PairingNotFound(NotFound):
    error = "pairing_not_found"
    description = _l("This link does not exist or has ended.")


class PairingExpired(PairingRejected):
    error = "pairing_expired"
    description = _l("This link has expired. Please start “Add another device” again.")


class PairingUsed(PairingRejected):
    error = "pairing_used"
    description = _l("This link has already been used to add a device. Each link works only once.")


class PairingCancelled(PairingRejected):
    error = "pairing_cancelled"
    description = _l("Adding the device was cancelled. Please start “Add another device” again.")


class WrongPairingState(PairingRejected):
    """The pairing is live but not in the state this step needs."""

    error = "pairing_state"
    description = _l("This step is not possible right now. Please reload the page.")


class PairingClaimed(PairingRejected):
    error = "pairing_claimed"
    description = _l(
        "This link is already being used by another device. If that was not you, "
        "cancel it on your registered device and start again."
    )


class NotBound(PairingRejected):
    """This browser does not hold the binding of the device that claimed the pairing."""

    error = "not_bound"
    description = _l("Please open the link or scan the QR code from your registered device again.")


class InvalidNumber(PairingRejected):
    error = "invalid_number"
    description = _l("Please type the two-digit number shown on the new device.")


class WrongNumber(PairingRejected):
    """The number typed is not the one the claiming device shows: the pairing is cancelled."""

    error = "wrong_number"
    description = _l(
        "The number was not right, so adding the device has been cancelled for your "
        "safety. If the new device is yours, please start again."
    )


class NoUsableDevice(PairingRejected):
    error = "no_usable_device"
    description = _l("None of your devices can confirm this any more.")


class NotOwnDevice(PairingRejected):
    """The approving passkey is not one of the pairing citizen's usable devices."""

    error = "unknown_device"
    description = _l("Please confirm with one of your own registered devices.")


class TooManyApprovals(RateLimited):
    """MAX_APPROVAL_CHALLENGES approval attempts for one pairing."""

    description = _l("Too many attempts. Please start “Add another device” again.")
