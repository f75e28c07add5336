"""SAML 2.0 identity provider (pysaml2 with xmlsec1) for the municipal form servers.

Beside ``oidc``: it starts the same QR-code login and answers once it has ended. What other
packages may use is listed in ``__all__``.
"""

import warnings

from cryptography.utils import CryptographyDeprecationWarning

# pysaml2 7.5 names a cipher mode that cryptography has moved (for its legacy symmetric
# encryption, unused here) when it is imported: a stray line in every log otherwise.
warnings.filterwarnings(
    "ignore", message="CFB has been moved", category=CryptographyDeprecationWarning
)

from .attributes import claims_for  # noqa: E402 -- after the filter above
from .service import ServiceUsed  # noqa: E402
from .service import add_service_provider  # noqa: E402
from .service import remove_service_provider  # noqa: E402
from .service import service_providers  # noqa: E402
from .service import services_used  # noqa: E402

__all__ = [
    "ServiceUsed",
    "add_service_provider",
    "claims_for",
    "remove_service_provider",
    "service_providers",
    "services_used",
]
