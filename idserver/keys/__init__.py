"""Signing keys and server secrets: infrastructure for OIDC, the audit log and later SAML.

Kept in the database, sealed under the key-encryption key, shared by every instance.
"""

from .errors import KeyStoreError
from .service import ALGORITHMS
from .service import AUDIT
from .service import ID_TOKEN
from .service import PURPOSES
from .service import SAML
from .service import KeyStore
from .service import init_app
from .service import key_store

__all__ = [
    "ALGORITHMS",
    "AUDIT",
    "ID_TOKEN",
    "PURPOSES",
    "SAML",
    "KeyStore",
    "KeyStoreError",
    "init_app",
    "key_store",
]
