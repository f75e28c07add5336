"""SAML 2.0 identity provider (pysaml2 with xmlsec1) for the municipal form servers.

Beside ``oidc``: it starts the same QR-code login and answers once it has ended. What other
packages may use:
"""

from .service import add_service_provider
from .service import remove_service_provider
from .service import service_providers

__all__ = ["add_service_provider", "remove_service_provider", "service_providers"]
