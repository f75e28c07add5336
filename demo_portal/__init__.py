"""Two demo relying parties for Bürger-ID: a resident parking permit and a job portal."""

from .app import create_portal

__all__ = ["create_portal"]
