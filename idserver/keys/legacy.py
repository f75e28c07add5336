"""The keys folder of earlier versions (``IDSERVER_KEYS_DIR``), read once to import it.

Layout: ``keys.json`` names the key that signs (``active``) and the keys in the JWKS
(``published``); ``<kid>.pem`` holds each key (PKCS#8), a file not in ``published`` being a
retired key; ``pairwise-salt.hex`` holds the pairwise salt. Nothing here writes or removes a
file: after the import the folder may be archived and deleted.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .errors import KeyStoreError

MANIFEST = "keys.json"
SALT_FILE = "pairwise-salt.hex"
KID = re.compile(r"[A-Za-z0-9_-]{1,64}")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LegacyKey:
    kid: str
    private_key: ec.EllipticCurvePrivateKey
    state: str  # "active", "published" or "retired"


def has_keys(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, MANIFEST))


def has_salt(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, SALT_FILE))


def _checked_kid(kid: object) -> str:
    """A key id names a file in the folder: nothing that could leave it (``../``, ``/``)."""
    if not isinstance(kid, str) or not KID.fullmatch(kid):
        raise KeyStoreError(f"bad key id in {MANIFEST}: {kid!r}")
    return kid


def _read_private_key(directory: str, kid: str) -> ec.EllipticCurvePrivateKey:
    path = os.path.join(directory, f"{kid}.pem")
    try:
        with open(path, "rb") as handle:
            key = serialization.load_pem_private_key(handle.read(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise KeyStoreError(f"cannot read key {kid} from {path}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise KeyStoreError(f"key {kid} in {path} is not a P-256 key")
    return key


def read_keys(directory: str) -> list[LegacyKey]:
    """Every key of the folder, the active one first; KeyStoreError if any is unusable."""
    try:
        with open(os.path.join(directory, MANIFEST)) as handle:
            manifest = json.load(handle)
        active = manifest["active"]
        published = manifest["published"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KeyStoreError(f"unreadable {MANIFEST} in {directory}: {exc}") from exc
    if not isinstance(published, list):
        raise KeyStoreError(f"{MANIFEST} in {directory}: 'published' is not a list")
    active = _checked_kid(active)
    published = [_checked_kid(kid) for kid in published]
    if active not in published:
        raise KeyStoreError(f"{MANIFEST} in {directory}: the active key is not published")
    keys = [LegacyKey(active, _read_private_key(directory, active), "active")]
    keys += [
        LegacyKey(kid, _read_private_key(directory, kid), "published")
        for kid in dict.fromkeys(published)
        if kid != active
    ]
    for name in sorted(os.listdir(directory)):
        kid, ext = os.path.splitext(name)
        if ext != ".pem" or kid in published:
            continue
        if not KID.fullmatch(kid):
            log.warning("keys folder %s: %s is not named like a key; not imported", directory, name)
            continue
        keys.append(LegacyKey(kid, _read_private_key(directory, kid), "retired"))
    return keys


def read_salt(directory: str) -> bytes:
    path = os.path.join(directory, SALT_FILE)
    try:
        with open(path, "rb") as handle:
            salt = bytes.fromhex(handle.read().decode().strip())
    except (OSError, ValueError) as exc:
        raise KeyStoreError(f"unreadable pairwise salt {path}: {exc}") from exc
    if len(salt) < 16:
        raise KeyStoreError(f"the pairwise salt in {path} is too short")
    return salt
