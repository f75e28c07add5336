"""WebAuthn registration and authentication ceremonies over py_webauthn.

Protocol glue only: no Flask, no database. The library verifies signatures, flags and
attestation; this module adds the checks the library leaves to the relying party and turns
every library error into ``EnrolmentRejected`` or ``LoginRejected``.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from flask_babel import lazy_gettext as _l
from webauthn import generate_authentication_options
from webauthn import generate_registration_options
from webauthn import options_to_json
from webauthn import verify_authentication_response
from webauthn import verify_registration_response
from webauthn.helpers import base64url_to_bytes
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers import parse_attestation_object
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import AttestationConveyancePreference
from webauthn.helpers.structs import AttestationFormat
from webauthn.helpers.structs import AuthenticatorSelectionCriteria
from webauthn.helpers.structs import COSEAlgorithmIdentifier
from webauthn.helpers.structs import PublicKeyCredentialDescriptor
from webauthn.helpers.structs import ResidentKeyRequirement
from webauthn.helpers.structs import UserVerificationRequirement
from webauthn.registration.verify_registration_response import VerifiedRegistration

from ..errors import EnrolmentRejected
from ..errors import LoginRejected
from .models import MAX_CREDENTIAL_ID_BYTES

__all__ = [
    "OFFERED_ALGORITHMS",
    "VerifiedAssertion",
    "authentication_options",
    "credential_id_of",
    "load_attestation_roots",
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


def _client_data(credential: dict[str, Any], rejected: type[Exception]) -> dict[str, Any]:
    try:
        raw = base64url_to_bytes(credential["response"]["clientDataJSON"])
        data = json.loads(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise rejected(_l("The answer from the phone was malformed.")) from exc
    if not isinstance(data, dict):
        raise rejected(_l("The answer from the phone was malformed."))
    return data


def _refuse_cross_origin(client_data: dict[str, Any], rejected: type[Exception]) -> None:
    # WebAuthn L3 §7.1 step 10 / §7.2 step 14: we never embed ceremonies in other origins.
    if client_data.get("crossOrigin") is True or "topOrigin" in client_data:
        raise rejected(_l("Logging in from inside another website is not allowed."))


def credential_id_of(credential: Any, rejected: type[Exception]) -> bytes:
    """The raw credential ID of a WebAuthn JSON response, length-checked (§7.1 step 24)."""
    if not isinstance(credential, dict):
        raise rejected(_l("The answer from the phone was malformed."))
    try:
        raw = base64url_to_bytes(credential["rawId"])
    except (KeyError, TypeError, ValueError) as exc:
        raise rejected(_l("The answer from the phone was malformed.")) from exc
    if not raw or len(raw) > MAX_CREDENTIAL_ID_BYTES:
        raise rejected(_l("The answer from the phone was malformed."))
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
    and an allow-listed AAGUID. ``require_user_verification`` is False only for verifying
    recorded payloads of relying parties that did not ask for it.
    """
    credential_id_of(credential, EnrolmentRejected)
    _refuse_cross_origin(_client_data(credential, EnrolmentRejected), EnrolmentRejected)
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
        raise EnrolmentRejected(_l("This phone could not be registered.")) from exc
    if not trusted:
        raise EnrolmentRejected(
            _l("This kind of phone or security key is not accepted here."),
            error="attestation_not_trusted",
        )
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
    credential_id_of(credential, LoginRejected)
    _refuse_cross_origin(_client_data(credential, LoginRejected), LoginRejected)
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
        raise LoginRejected(_l("The confirmation on the phone could not be verified.")) from exc
    device_type = getattr(verified.credential_device_type, "value", "single_device")
    return VerifiedAssertion(
        credential_id=verified.credential_id,
        sign_count=verified.new_sign_count,
        backup_eligible=device_type == "multi_device",
        backed_up=verified.credential_backed_up,
        user_handle=user_handle,
    )


def b64(data: bytes) -> str:
    return bytes_to_base64url(data)
