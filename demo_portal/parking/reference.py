"""Short signed permit references for the windscreen QR code: ``<number>.<tag>``.

The tag is HMAC-SHA256 over the permit number under the portal's own secret key (RFC 2104),
truncated to 80 bits (RFC 2104 §5 allows truncation to no fewer than half the output;
80 bits suffice for a tag that is only ever checked online, against the register). The
reference holds nothing but the permit number, so a QR code of it stays small enough to scan
through a windscreen. The key is created on first start (mode 0600). No Flask here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from pathlib import Path

from ..private_files import read_or_create

__all__ = [
    "MAX_REFERENCE_LENGTH",
    "PermitReferenceInvalid",
    "load_reference_key",
    "sign_reference",
    "verify_reference",
]

TAG_BYTES = 10
MAX_REFERENCE_LENGTH = 64
DOMAIN = b"demo_portal.parking.permit-reference:"


class PermitReferenceInvalid(ValueError):
    """Not a reference this portal signed: malformed, altered or forged."""


def load_reference_key(path: Path) -> bytes:
    """The portal's 256-bit reference key from ``path``, created there (mode 0600) if missing."""
    return read_or_create(path, lambda: secrets.token_bytes(32))


def _tag(number: str, key: bytes) -> str:
    digest = hmac.new(key, DOMAIN + number.encode(), hashlib.sha256).digest()[:TAG_BYTES]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign_reference(number: str, *, key: bytes) -> str:
    return f"{number}.{_tag(number, key)}"


def verify_reference(reference: str, *, key: bytes) -> str:
    """The permit number of a reference this portal signed; anything else raises."""
    reference = (reference or "").strip()
    if not reference or len(reference) > MAX_REFERENCE_LENGTH or "." not in reference:
        raise PermitReferenceInvalid("empty, oversized or malformed reference")
    number, tag = reference.rsplit(".", 1)
    if not number or not hmac.compare_digest(tag.encode(), _tag(number, key).encode()):
        raise PermitReferenceInvalid("wrong tag")
    return number
