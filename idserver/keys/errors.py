"""The key store's own error."""

from __future__ import annotations


class KeyStoreError(RuntimeError):
    """A key operation that cannot be done (retiring the active key, an unusable key folder)."""
