"""The clerk console (``/admin``), activation letters, and erasing data after retention."""

from .letter import Sender
from .letter import activation_letter_pdf
from .retention import purge_deleted_residents
from .retention import purge_expired_data
from .retention import start_periodic_purge

__all__ = [
    "Sender",
    "activation_letter_pdf",
    "purge_deleted_residents",
    "purge_expired_data",
    "start_periodic_purge",
]
