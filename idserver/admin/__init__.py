"""The clerk console (``/admin``), activation letters, and erasing data after retention."""

from .letter import Sender
from .letter import activation_letter_pdf
from .retention import purge_deleted_residents

__all__ = ["Sender", "activation_letter_pdf", "purge_deleted_residents"]
