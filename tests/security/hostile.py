"""A hostile client: WebAuthn answers built byte by byte, so every field can be wrong.

The soft phone (``idserver.phone.authenticator``) plays an honest or careless phone; this module
plays an attacker who writes authenticator data, COSE keys and CBOR by hand (WebAuthn L3 §6.1,
§6.5.1, §6.5.2, RFC 9052/9053).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import ed448
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric import x25519

from idserver.phone.authenticator import PhoneKey

UP = 0x01
UV = 0x04
BE = 0x08
BS = 0x10
AT = 0x40
ORIGIN = "http://localhost"
RP_ID = "localhost"
P256_PRIME = 2**256 - 2**224 + 2**192 + 2**96 - 1  # SEC 2 §2.4.2


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def es256_cose(key: ec.EllipticCurvePrivateKey) -> bytes:
    numbers = key.public_key().public_numbers()
    return cbor2.dumps(
        {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
    )


def es512_cose() -> bytes:
    """An ECDSA P-521 key declared as ES512 (-36): a real algorithm we never offer."""
    numbers = ec.generate_private_key(ec.SECP521R1()).public_key().public_numbers()
    return cbor2.dumps(
        {1: 2, 3: -36, -1: 3, -2: numbers.x.to_bytes(66, "big"), -3: numbers.y.to_bytes(66, "big")}
    )


def rs1_cose() -> bytes:
    """An RSA key declared as RS1 (-65535, PKCS#1 v1.5 with SHA-1): deprecated and never offered."""
    numbers = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    public = numbers.public_numbers()
    return cbor2.dumps(
        {1: 3, 3: -65535, -1: public.n.to_bytes(256, "big"), -2: public.e.to_bytes(3, "big")}
    )


def rs256_cose(key_size: int = 2048) -> bytes:
    """An RSA key of ``key_size`` bits declared as RS256 (-257), an algorithm we offer."""
    public = rsa.generate_private_key(public_exponent=65537, key_size=key_size).public_key()
    numbers = public.public_numbers()
    modulus = numbers.n.to_bytes((key_size + 7) // 8, "big")
    return cbor2.dumps({1: 3, 3: -257, -1: modulus, -2: numbers.e.to_bytes(3, "big")})


def eddsa_cose() -> bytes:
    """An Ed25519 key declared as EdDSA (-8)."""
    raw = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    return cbor2.dumps({1: 1, 3: -8, -1: 6, -2: raw})


def off_curve_es256_cose(case: str) -> bytes:
    """An ES256 key whose point (x, y) does not satisfy P-256's equation (SEC 1 §3.2.2)."""
    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    x, y = {
        "y-plus-one": (numbers.x, (numbers.y + 1) % P256_PRIME),
        "origin": (0, 0),
        "x-y-swapped": (numbers.y, numbers.x),
    }[case]
    return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: x.to_bytes(32, "big"), -3: y.to_bytes(32, "big")})


def _ec2_cose(alg: int, crv: int, curve: ec.EllipticCurve, size: int) -> dict[int, Any]:
    numbers = ec.generate_private_key(curve).public_key().public_numbers()
    return {
        1: 2,
        3: alg,
        -1: crv,
        -2: numbers.x.to_bytes(size, "big"),
        -3: numbers.y.to_bytes(size, "big"),
    }


def _okp_cose(crv: int, raw: bytes) -> dict[int, Any]:
    return {1: 1, 3: -8, -1: crv, -2: raw}


def mismatched_cose(case: str) -> bytes:
    """A sound key of one type or curve declared under an algorithm that needs another."""
    build = {
        "P-384-as-ES256": lambda: _ec2_cose(-7, 2, ec.SECP384R1(), 48),
        "P-256-as-RS256": lambda: _ec2_cose(-257, 1, ec.SECP256R1(), 32),
        "RSA-as-ES256": lambda: {**cbor2.loads(rs256_cose()), 3: -7},
        "Ed448-as-EdDSA": lambda: _okp_cose(
            7, ed448.Ed448PrivateKey.generate().public_key().public_bytes_raw()
        ),
        "X25519-as-EdDSA": lambda: _okp_cose(
            4, x25519.X25519PrivateKey.generate().public_key().public_bytes_raw()
        ),
    }[case]
    return cbor2.dumps(build())


def client_data(ceremony: str, challenge: str, *, origin: str = ORIGIN, **extra: Any) -> bytes:
    data = {"type": ceremony, "challenge": challenge, "origin": origin, "crossOrigin": False}
    data.update(extra)
    return json.dumps(data, separators=(",", ":")).encode()


def registration(
    options: dict[str, Any],
    *,
    origin: str = ORIGIN,
    rp_id: str | None = None,
    flags: int = UP | UV | AT,
    credential_id: bytes | None = None,
    cose_key: bytes | None = None,
    fmt: str = "none",
    att_stmt: dict[str, Any] | None = None,
    client_data_extra: dict[str, Any] | None = None,
    auth_data_cut: int | None = None,
    raw_attestation_object: bytes | None = None,
) -> dict[str, Any]:
    """A RegistrationResponseJSON for ``options`` with every part under the caller's control."""
    credential_id = secrets.token_bytes(32) if credential_id is None else credential_id
    cose_key = es256_cose(ec.generate_private_key(ec.SECP256R1())) if cose_key is None else cose_key
    rp_hash = hashlib.sha256((rp_id or options["rp"]["id"]).encode()).digest()
    auth_data = (
        rp_hash
        + struct.pack(">BI", flags, 0)
        + bytes(16)
        + struct.pack(">H", len(credential_id))
        + credential_id
        + cose_key
    )
    if auth_data_cut is not None:
        auth_data = auth_data[:auth_data_cut]
    attestation_object = raw_attestation_object or cbor2.dumps(
        {"fmt": fmt, "attStmt": att_stmt or {}, "authData": auth_data}
    )
    collected = client_data(
        "webauthn.create", options["challenge"], origin=origin, **(client_data_extra or {})
    )
    return {
        "id": b64(credential_id),
        "rawId": b64(credential_id),
        "type": "public-key",
        "response": {
            "clientDataJSON": b64(collected),
            "attestationObject": b64(attestation_object),
            "transports": ["internal"],
        },
        "clientExtensionResults": {},
    }


def assertion(
    key: PhoneKey,
    options: dict[str, Any],
    *,
    origin: str = ORIGIN,
    rp_id: str | None = None,
    flags: int = UP | UV,
    sign_count: int | None = None,
    client_data_extra: dict[str, Any] | None = None,
    ceremony: str = "webauthn.get",
) -> dict[str, Any]:
    """An AuthenticationResponseJSON signed by ``key`` over whatever the caller chose."""
    if sign_count is None:
        key.sign_count += 1
        sign_count = key.sign_count
    rp_hash = hashlib.sha256((rp_id or options["rpId"]).encode()).digest()
    auth_data = rp_hash + struct.pack(">BI", flags, sign_count)
    collected = client_data(
        ceremony, options["challenge"], origin=origin, **(client_data_extra or {})
    )
    signature = key.private_key.sign(
        auth_data + hashlib.sha256(collected).digest(), ec.ECDSA(hashes.SHA256())
    )
    return {
        "id": b64(key.credential_id),
        "rawId": b64(key.credential_id),
        "type": "public-key",
        "response": {
            "clientDataJSON": b64(collected),
            "authenticatorData": b64(auth_data),
            "signature": b64(signature),
            "userHandle": b64(key.user_handle) if key.user_handle else None,
        },
        "clientExtensionResults": {},
    }


def frame(phone_url: str) -> tuple[str, dict[str, str]]:
    """(login id, {"t", "h"}) of a QR frame URL."""
    parts = urlsplit(phone_url)
    query = parse_qs(parts.query)
    return parts.path.rsplit("/", 1)[-1], {"t": query["t"][0], "h": query["h"][0]}
