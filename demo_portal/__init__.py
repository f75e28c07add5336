"""Three demo relying parties for Bürger-ID: a resident parking permit and a job portal (OpenID
Connect), and a dog-tax registration (SAML 2.0)."""

from .app import create_portal

__all__ = ["create_portal"]
