"""WebAuthn registration and authentication ceremonies over py_webauthn.

Protocol glue only: no Flask, no database. The library verifies signatures, flags and
attestation; this module adds the checks the library leaves to the relying party and turns
every library error into one ``PasskeyRejected`` (``errors``), which each caller maps to its
own error (``EnrolmentRejected``, ``LoginRejected``, ``PairingRejected``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric import rsa
from flask_babel import lazy_gettext as _l
from webauthn import generate_authentication_options
from webauthn import generate_registration_options
from webauthn import options_to_json
from webauthn import verify_authentication_response
from webauthn import verify_registration_response
from webauthn.helpers import base64url_to_bytes
from webauthn.helpers import decode_credential_public_key
from webauthn.helpers import parse_attestation_object
from webauthn.helpers.cose import COSECRV
from webauthn.helpers.cose import COSEKTY
from webauthn.helpers.decode_credential_public_key import DecodedEC2PublicKey
from webauthn.helpers.decode_credential_public_key import DecodedOKPPublicKey
from webauthn.helpers.decode_credential_public_key import DecodedRSAPublicKey
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import AttestationConveyancePreference
from webauthn.helpers.structs import AttestationFormat
from webauthn.helpers.structs import AuthenticatorSelectionCriteria
from webauthn.helpers.structs import COSEAlgorithmIdentifier
from webauthn.helpers.structs import PublicKeyCredentialDescriptor
from webauthn.helpers.structs import ResidentKeyRequirement
from webauthn.helpers.structs import UserVerificationRequirement
from webauthn.registration.verify_registration_response import VerifiedRegistration

from .errors import AttestationNotTrusted
from .errors import PasskeyRejected
from .models import MAX_CREDENTIAL_ID_BYTES

__all__ = [
    "OFFERED_ALGORITHMS",
    "VerifiedAssertion",
    "authentication_options",
    "credential_id_of",
    "load_attestation_roots",
    "public_key_fingerprint",
    "proves_hardware_key",
    "registration_options",
    "verify_assertion",
    "verify_registration",
]

# Offered in pubKeyCredParams; anything else is refused (WebAuthn L3 §7.1 step 21).
OFFERED_ALGORITHMS = [
    COSEAlgorithmIdentifier.ECDSA_SHA_256,
    COSEAlgorithmIdentifier.EDDSA,
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,
]
# The key type and curve each offered algorithm must come with (RFC 9053 §2.1, RFC 8812 §2).
KEY_SHAPES: dict[COSEAlgorithmIdentifier, tuple[COSEKTY, COSECRV | None]] = {
    COSEAlgorithmIdentifier.ECDSA_SHA_256: (COSEKTY.EC2, COSECRV.P256),
    COSEAlgorithmIdentifier.EDDSA: (COSEKTY.OKP, COSECRV.ED25519),
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256: (COSEKTY.RSA, None),
}
# NIST SP 800-131A Rev. 2: RSA below 2048 bits is disallowed for signatures. Above 16384 bits
# OpenSSL refuses to verify (OPENSSL_RSA_MAX_MODULUS_BITS), so no login could ever succeed.
RSA_MODULUS_BITS = range(2048, 16384 + 1)
TIMEOUT_MS = 120_000
# Formats whose certificate chain py_webauthn always checks against vendor roots it ships.
LIBRARY_ROOTED_FORMATS = ("apple", "android-key", "android-safetynet")
PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\s.+?\s-----END CERTIFICATE-----", re.DOTALL
)
# What a malformed answer can raise inside py_webauthn, cbor2 and cryptography; every one of
# them means "refused", never a server error.
MALFORMED = (
    WebAuthnException,
    KeyError,
    TypeError,
    ValueError,
    IndexError,
    AttributeError,
    OverflowError,
    struct.error,
    InvalidSignature,
)


@dataclass(frozen=True)
class VerifiedAssertion:
    credential_id: bytes
    sign_count: int
    backup_eligible: bool
    backed_up: bool
    user_handle: bytes | None


def _options_dict(options: Any) -> dict[str, Any]:
    return json.loads(options_to_json(options))


def _client_data(credential: dict[str, Any]) -> dict[str, Any]:
    try:
        raw = base64url_to_bytes(credential["response"]["clientDataJSON"])
        data = json.loads(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise PasskeyRejected(_l("The answer from the phone was malformed.")) from exc
    if not isinstance(data, dict):
        raise PasskeyRejected(_l("The answer from the phone was malformed."))
    return data


def _refuse_cross_origin(client_data: dict[str, Any]) -> None:
    # WebAuthn L3 §7.1 step 10 / §7.2 step 14: we never embed ceremonies in other origins.
    if client_data.get("crossOrigin") is True or "topOrigin" in client_data:
        raise PasskeyRejected(_l("Logging in from inside another website is not allowed."))


def credential_id_of(credential: Any) -> bytes:
    """The raw credential ID of a WebAuthn JSON response, length-checked (§7.1 step 24)."""
    if not isinstance(credential, dict):
        raise PasskeyRejected(_l("The answer from the phone was malformed."))
    try:
        raw = base64url_to_bytes(credential["rawId"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PasskeyRejected(_l("The answer from the phone was malformed.")) from exc
    if not raw or len(raw) > MAX_CREDENTIAL_ID_BYTES:
        raise PasskeyRejected(_l("The answer from the phone was malformed."))
    return raw


def registration_options(
    *,
    rp_id: str,
    rp_name: str,
    user_id: bytes,
    user_name: str,
    display_name: str,
    challenge: bytes,
    exclude_ids: Sequence[bytes] = (),
    want_attestation: bool = False,
) -> dict[str, Any]:
    """PublicKeyCredentialCreationOptions as JSON: UV required, resident key preferred."""
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=rp_name,
        user_id=user_id,
        user_name=user_name,
        user_display_name=display_name,
        challenge=challenge,
        timeout=TIMEOUT_MS,
        attestation=(
            AttestationConveyancePreference.DIRECT
            if want_attestation
            else AttestationConveyancePreference.NONE
        ),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=i) for i in exclude_ids],
        supported_pub_key_algs=OFFERED_ALGORITHMS,
    )
    return _options_dict(options)


def load_attestation_roots(path: str) -> list[bytes]:
    """The PEM certificates in a file, or in the ``.pem``/``.crt`` files of a folder."""
    if not path:
        return []
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.endswith((".pem", ".crt")))
        files = [os.path.join(path, name) for name in names]
    else:
        files = [path]
    roots: list[bytes] = []
    for name in files:
        with open(name, "rb") as handle:
            roots.extend(PEM_CERTIFICATE.findall(handle.read()))
    return roots


def _attestation_trusted(
    verified: VerifiedRegistration,
    *,
    policy: str,
    aaguid_allowlist: Sequence[str],
    roots: Sequence[bytes],
) -> bool:
    """Does the attestation meet ``policy`` (WebAuthn L3 §7.1 steps 21–23, §6.5.3)?

    The statement's signature (and, where roots are known, its chain) was already verified by
    py_webauthn; this decides whether what it proves is enough.
    """
    fmt = str(getattr(verified.fmt, "value", verified.fmt))
    if policy == "none":
        return True
    if fmt == "none":
        return False  # proves nothing about the authenticator
    if policy in ("allowlist", "trusted") and verified.aaguid not in aaguid_allowlist:
        return False
    if policy != "trusted":
        return True
    statement = parse_attestation_object(verified.attestation_object).att_stmt
    if fmt in LIBRARY_ROOTED_FORMATS:
        return True  # py_webauthn always chains these to the vendors' roots it ships
    # packed, tpm, fido-u2f: a chain (no self attestation) to a root we were given
    return bool(statement.x5c) and bool(roots)


CredentialKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey


def _load_credential_key(cose_key: bytes) -> CredentialKey:
    """The credential public key as a ``cryptography`` key if it is sound, else ``ValueError``.

    py_webauthn checks only that ``alg`` was offered (WebAuthn L3 §7.1 step 21); under a
    ``none`` attestation nothing else loads the key, so a point off its curve, a key type or
    curve other than the algorithm's, or a short RSA modulus would be stored unnoticed.
    """
    decoded = decode_credential_public_key(cose_key)
    kty, crv = KEY_SHAPES[decoded.alg]  # KeyError: an algorithm we did not offer
    if decoded.kty != kty:
        raise ValueError(f"key type {decoded.kty} does not fit algorithm {decoded.alg}")
    if isinstance(decoded, DecodedEC2PublicKey) and decoded.crv == crv == COSECRV.P256:
        # SEC 1 §2.3.5: each coordinate is exactly the field's 32 bytes
        if len(decoded.x) != 32 or len(decoded.y) != 32:
            raise ValueError("P-256 coordinates must be 32 bytes")
        x, y = int.from_bytes(decoded.x, "big"), int.from_bytes(decoded.y, "big")
        return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()  # on the curve
    if isinstance(decoded, DecodedOKPPublicKey) and decoded.crv == crv == COSECRV.ED25519:
        return ed25519.Ed25519PublicKey.from_public_bytes(decoded.x)  # exactly 32 bytes
    if isinstance(decoded, DecodedRSAPublicKey) and crv is None:
        e, n = int.from_bytes(decoded.e, "big"), int.from_bytes(decoded.n, "big")
        key = rsa.RSAPublicNumbers(e, n).public_key()  # e odd, 3 <= e < n
        if key.key_size not in RSA_MODULUS_BITS:
            raise ValueError(f"RSA modulus of {key.key_size} bits")
        return key
    raise ValueError(f"curve does not fit algorithm {decoded.alg}")


def _checked_credential_key(cose_key: bytes) -> CredentialKey:
    try:
        return _load_credential_key(cose_key)
    except MALFORMED as exc:
        raise PasskeyRejected(
            _l("The key this phone made is too weak or not valid, so it cannot be registered.")
        ) from exc


def public_key_fingerprint(cose_key: bytes) -> str:
    """SHA-256 (hex) of a sound credential key's SubjectPublicKeyInfo DER (RFC 5280 §4.1).

    One key has one fingerprint however its COSE map is spelt, so a unique column of these
    binds each key to a single credential, as credential ids are (WebAuthn L3 §7.1 step 25).
    """
    spki = _checked_credential_key(cose_key).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def proves_hardware_key(
    verified: VerifiedRegistration,
    *,
    aaguid_allowlist: Sequence[str],
    attestation_roots: Sequence[bytes],
) -> bool:
    """Did the attestation prove that the credential's key is kept in hardware (RFC 8176 ``hwk``)?

    Only one that meets the ``trusted`` policy, whatever policy let the credential in: a
    certificate chain verified to a trusted root (py_webauthn's vendor roots, or
    ``attestation_roots``, which must be the roots ``verified`` was checked with), from an
    allow-listed authenticator model, for a key that cannot leave the device (not
    backup-eligible, WebAuthn L3 §6.1.3). ``none`` and self attestation prove nothing about
    where the key is kept; SafetyNet vouches for the device's integrity, not for the key.
    """
    fmt = str(getattr(verified.fmt, "value", verified.fmt))
    device_type = getattr(verified.credential_device_type, "value", "multi_device")
    if fmt == "android-safetynet" or device_type != "single_device":
        return False
    return _attestation_trusted(
        verified, policy="trusted", aaguid_allowlist=aaguid_allowlist, roots=attestation_roots
    )


def verify_registration(
    *,
    credential: Any,
    expected_challenge: bytes,
    expected_rp_id: str,
    expected_origins: list[str],
    attestation_policy: str = "none",
    aaguid_allowlist: Sequence[str] = (),
    attestation_roots: Sequence[bytes] = (),
    require_user_verification: bool = True,
) -> VerifiedRegistration:
    """Verify a registration (WebAuthn L3 §7.1) and its attestation against the policy.

    ``attestation_policy``: ``none`` accepts any authenticator; ``self`` needs a verified
    attestation statement (self attestation allowed); ``allowlist`` adds the AAGUID allow-list;
    ``trusted`` needs a certificate chain to py_webauthn's known roots or ``attestation_roots``
    and an allow-listed AAGUID. The credential key must fit its algorithm: P-256 for ES256,
    Ed25519 for EdDSA, RSA of at least 2048 bits for RS256. ``require_user_verification`` is
    False only for verifying recorded payloads of relying parties that did not ask for it.
    """
    credential_id_of(credential)
    _refuse_cross_origin(_client_data(credential))
    roots = list(attestation_roots)
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=expected_challenge,
            expected_rp_id=expected_rp_id,
            expected_origin=expected_origins,
            require_user_verification=require_user_verification,
            supported_pub_key_algs=OFFERED_ALGORITHMS,
            pem_root_certs_bytes_by_fmt={fmt: roots for fmt in AttestationFormat}
            if roots
            else None,
        )
        trusted = _attestation_trusted(
            verified, policy=attestation_policy, aaguid_allowlist=aaguid_allowlist, roots=roots
        )
    except MALFORMED as exc:
        raise PasskeyRejected(_l("This phone could not be registered.")) from exc
    _checked_credential_key(verified.credential_public_key)
    if not trusted:
        raise AttestationNotTrusted()
    return verified


def authentication_options(
    *, rp_id: str, challenge: bytes, allow_ids: Sequence[bytes] = ()
) -> dict[str, Any]:
    """PublicKeyCredentialRequestOptions as JSON; no ``allow_ids`` means a discoverable login."""
    options = generate_authentication_options(
        rp_id=rp_id,
        challenge=challenge,
        timeout=TIMEOUT_MS,
        allow_credentials=[PublicKeyCredentialDescriptor(id=i) for i in allow_ids],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return _options_dict(options)


def verify_assertion(
    *,
    credential: Any,
    expected_challenge: bytes,
    expected_rp_id: str,
    expected_origins: list[str],
    credential_public_key: bytes,
) -> VerifiedAssertion:
    """Verify an assertion's signature and flags (WebAuthn L3 §7.2).

    The signature counter is compared by the caller, after the signature is known to be
    genuine, so that a regression can suspend the device instead of merely failing.
    """
    credential_id_of(credential)
    _refuse_cross_origin(_client_data(credential))
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=expected_challenge,
            expected_rp_id=expected_rp_id,
            expected_origin=expected_origins,
            credential_public_key=credential_public_key,
            credential_current_sign_count=0,
            require_user_verification=True,
        )
        user_handle_b64 = credential["response"].get("userHandle")
        user_handle = base64url_to_bytes(user_handle_b64) if user_handle_b64 else None
    except MALFORMED as exc:
        raise PasskeyRejected(_l("The confirmation on the phone could not be verified.")) from exc
    device_type = getattr(verified.credential_device_type, "value", "single_device")
    return VerifiedAssertion(
        credential_id=verified.credential_id,
        sign_count=verified.new_sign_count,
        backup_eligible=device_type == "multi_device",
        backed_up=verified.credential_backed_up,
        user_handle=user_handle,
    )
