"""The key store's own errors."""

from __future__ import annotations

from ..errors import IdServerError


class KeyStoreError(RuntimeError):
    """A key operation that cannot be done (retiring the active key, an unusable key folder)."""


class InvalidKey(IdServerError):
    """An operator's key command refused (the description is the KeyStoreError's)."""

    error = "invalid_key"
