"""Sealing key material under the key-encryption key (KEK) with AES-256-GCM.

The KEK is ``IDSERVER_KEY_ENCRYPTION_KEY``: 32 random bytes, base64 (``idserver keys new-kek``
prints one). Production requires it; development derives one from ``IDSERVER_SECRET_KEY``
(HKDF-SHA256, RFC 5869), so the demo runs without the setting. A sealed value is
``version ‖ 96-bit nonce ‖ ciphertext and tag``; the associated data names the row it belongs
to (``signing-key/<purpose>/<kid>``, ``server-secret/<name>``), so a sealed value copied into
another row does not open.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..config import parse_kek

VERSION = b"\x01"
NONCE_BYTES = 12
DEVELOPMENT_INFO = b"buergerid/development key-encryption key"


class SealBroken(ValueError):
    """A sealed value does not open: another KEK, or the bytes were changed."""


def new_kek() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def key_encryption_key(config: Mapping[str, Any]) -> bytes:
    """The configured KEK; in development without one, derived from the secret key."""
    if config["KEY_ENCRYPTION_KEY"]:
        return parse_kek(config["KEY_ENCRYPTION_KEY"])
    if config["ENV"] == "production":  # validate_config refuses this first
        raise ValueError("production needs IDSERVER_KEY_ENCRYPTION_KEY")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=DEVELOPMENT_INFO)
    return hkdf.derive(config["SECRET_KEY"].encode())


class Sealer:
    """Seals and opens values under one KEK."""

    def __init__(self, kek: bytes) -> None:
        self._aead = AESGCM(kek)

    def seal(self, plaintext: bytes, *, label: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return VERSION + nonce + self._aead.encrypt(nonce, plaintext, label.encode())

    def open(self, sealed: bytes, *, label: str) -> bytes:
        sealed = bytes(sealed)
        if sealed[:1] != VERSION or len(sealed) < 1 + NONCE_BYTES + 16:
            raise SealBroken(f"{label}: not a sealed value")
        nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, label.encode())
        except InvalidTag as exc:
            raise SealBroken(f"{label}: does not open with this key-encryption key") from exc
