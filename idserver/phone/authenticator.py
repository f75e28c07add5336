"""The soft phone: a software WebAuthn authenticator and client in one object.

It plays the part of a citizen's phone in tests and in the reference phone app. Given the JSON
options a server sends, it returns the JSON a browser's ``PublicKeyCredential.toJSON()`` would:

- client data as in WebAuthn Level 3 §5.8.1 (CollectedClientData, compact JSON);
- authenticator data as in §6.1, with attested credential data as in §6.5.2 and the credential
  public key as a COSE_Key (EC2, P-256, ES256);
- attestation statement format "none" (§8.7) or "packed" self attestation (§8.2).

The client half trusts its caller on ``origin`` and on the flags, so tests can play a hostile
client as easily as an honest one; the server must check everything. Keys live in a JSON file,
written atomically with mode 0600.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import struct
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Literal

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = [
    "SOFT_PHONE_AAGUID",
    "AuthenticatorError",
    "PhoneKey",
    "SoftAuthenticator",
]

SOFT_PHONE_AAGUID: bytes = uuid.uuid5(uuid.NAMESPACE_URL, "urn:buerger-id:soft-phone").bytes
"""AAGUID of the Bürger-ID soft phone (WebAuthn L3 §6.5.2), a fixed UUIDv5."""

_COSE_ALG_ES256 = -7
_CREDENTIAL_ID_LENGTH = 32
_FILE_FORMAT_VERSION = 1
_MAX_SIGN_COUNT = 2**32 - 1

# Authenticator data flags, WebAuthn L3 §6.1.
_FLAG_UP = 0x01
_FLAG_UV = 0x04
_FLAG_BE = 0x08
_FLAG_BS = 0x10
_FLAG_AT = 0x40


class AuthenticatorError(Exception):
    """The soft phone refuses a ceremony, as a real authenticator or client would."""


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    if not isinstance(text, str):
        raise AuthenticatorError(f"expected a base64url string, got {type(text).__name__}")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise AuthenticatorError(f"invalid base64url: {text!r}") from exc


@dataclass
class PhoneKey:
    """One credential held by the phone, scoped to the RP ID it was created for."""

    credential_id: bytes
    private_key: ec.EllipticCurvePrivateKey
    sign_count: int = 0
    aaguid: bytes = SOFT_PHONE_AAGUID
    user_handle: bytes | None = None
    rp_id: str | None = None

    @classmethod
    def generate(cls, *, rp_id: str, user_handle: bytes | None) -> PhoneKey:
        """Make a fresh P-256 key with a random 32-byte credential ID."""
        return cls(
            credential_id=secrets.token_bytes(_CREDENTIAL_ID_LENGTH),
            private_key=ec.generate_private_key(ec.SECP256R1()),
            user_handle=user_handle,
            rp_id=rp_id,
        )

    def public_key_der(self) -> bytes:
        """The public key as DER SubjectPublicKeyInfo, as ``getPublicKey()`` returns it."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def public_key_cose(self) -> bytes:
        """The public key as a CTAP2-canonical COSE_Key (RFC 9053 §7.1.1, EC2 P-256 ES256)."""
        numbers = self.private_key.public_key().public_numbers()
        cose_key = {
            1: 2,  # kty: EC2
            3: _COSE_ALG_ES256,
            -1: 1,  # crv: P-256
            -2: numbers.x.to_bytes(32, "big"),
            -3: numbers.y.to_bytes(32, "big"),
        }
        return cbor2.dumps(cose_key, canonical=True)

    def sign(self, data: bytes) -> bytes:
        """ES256 over ``data``, DER-encoded as WebAuthn L3 §6.5.5 requires."""
        return self.private_key.sign(data, ec.ECDSA(hashes.SHA256()))


class SoftAuthenticator:
    """A phone holding WebAuthn credentials, optionally persisted to a JSON file."""

    def __init__(self, *, path: str | os.PathLike[str] | None = None) -> None:
        self.path: Path | None = Path(path) if path is not None else None
        self.keys: list[PhoneKey] = []

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SoftAuthenticator:
        """Read the key file at ``path``; a missing file is an empty phone bound to that path."""
        key_file = Path(path)
        phone = cls(path=key_file)
        try:
            text = key_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return phone
        try:
            document = json.loads(text)
            if document.get("version") != _FILE_FORMAT_VERSION:
                raise AuthenticatorError(f"unsupported key file version in {key_file}")
            phone.keys = [_key_from_record(record) for record in document["keys"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise AuthenticatorError(f"malformed key file {key_file}: {exc}") from exc
        return phone

    def save(self) -> None:
        """Write all keys to ``self.path`` atomically (temp file + ``os.replace``), mode 0600."""
        if self.path is None:
            raise AuthenticatorError("this soft phone has no key file")
        document = {
            "version": _FILE_FORMAT_VERSION,
            "keys": [_key_to_record(key) for key in self.keys],
        }
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        # mkstemp creates the file O_EXCL with mode 0600, so the key never sits world-readable.
        fd, temp_name = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, indent=2)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp_name, 0o600)
            os.replace(temp_name, self.path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise

    def find_key(self, credential_id: bytes) -> PhoneKey | None:
        """The key with this credential ID, if the phone holds it."""
        return next((k for k in self.keys if k.credential_id == credential_id), None)

    def create_credential(
        self,
        options: dict[str, Any],
        *,
        origin: str,
        attestation: Literal["none", "packed"] = "none",
        user_verified: bool = True,
        user_present: bool = True,
        backup_eligible: bool = False,
        backed_up: bool = False,
        cross_origin: bool = False,
        top_origin: str | None = None,
    ) -> dict[str, Any]:
        """Answer ``navigator.credentials.create()`` (WebAuthn L3 §5.1.3, §6.3.2).

        ``options`` is PublicKeyCredentialCreationOptionsJSON; the result is
        RegistrationResponseJSON.
        """
        if attestation not in ("none", "packed"):
            raise AuthenticatorError(f"unsupported attestation format {attestation!r}")
        rp_id = (options.get("rp") or {}).get("id")
        if not rp_id:
            raise AuthenticatorError("options.rp.id is missing")
        algorithms = [p.get("alg") for p in options.get("pubKeyCredParams") or []]
        if _COSE_ALG_ES256 not in algorithms:
            raise AuthenticatorError(f"ES256 (-7) not among pubKeyCredParams {algorithms}")
        excluded = _descriptor_ids(options.get("excludeCredentials"))
        if any(k.rp_id == rp_id and k.credential_id in excluded for k in self.keys):
            # WebAuthn L3 §6.3.2 step 3: InvalidStateError.
            raise AuthenticatorError(
                f"a credential in excludeCredentials is already held for {rp_id}"
            )
        user_id = (options.get("user") or {}).get("id")
        user_handle = _b64url_decode(user_id) if user_id else None

        client_data_json = _client_data_json(
            "webauthn.create",
            challenge=options.get("challenge"),
            origin=origin,
            cross_origin=cross_origin,
            top_origin=top_origin,
        )
        key = PhoneKey.generate(rp_id=rp_id, user_handle=user_handle)
        attested_credential_data = (
            key.aaguid
            + struct.pack(">H", len(key.credential_id))
            + key.credential_id
            + key.public_key_cose()
        )
        flags = _flags(
            user_present=user_present,
            user_verified=user_verified,
            backup_eligible=backup_eligible,
            backed_up=backed_up,
        )
        authenticator_data = (
            _authenticator_data_prefix(rp_id, flags | _FLAG_AT, key.sign_count)
            + attested_credential_data
        )
        if attestation == "packed":
            signed = authenticator_data + hashlib.sha256(client_data_json).digest()
            statement: dict[str, Any] = {"alg": _COSE_ALG_ES256, "sig": key.sign(signed)}
        else:
            statement = {}
        attestation_object = cbor2.dumps(
            {"fmt": attestation, "attStmt": statement, "authData": authenticator_data},
            canonical=True,
        )

        self.keys.append(key)
        if self.path is not None:
            self.save()
        return {
            "id": _b64url_encode(key.credential_id),
            "rawId": _b64url_encode(key.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": _b64url_encode(client_data_json),
                "attestationObject": _b64url_encode(attestation_object),
                "transports": ["internal"],
                "publicKeyAlgorithm": _COSE_ALG_ES256,
                "publicKey": _b64url_encode(key.public_key_der()),
                "authenticatorData": _b64url_encode(authenticator_data),
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def get_assertion(
        self,
        options: dict[str, Any],
        *,
        origin: str,
        user_verified: bool = True,
        user_present: bool = True,
        credential_id: bytes | None = None,
        sign_count_override: int | None = None,
        cross_origin: bool = False,
        top_origin: str | None = None,
        backup_eligible: bool = False,
        backed_up: bool = False,
    ) -> dict[str, Any]:
        """Answer ``navigator.credentials.get()`` (WebAuthn L3 §5.1.4, §6.3.3).

        ``options`` is PublicKeyCredentialRequestOptionsJSON; an empty ``allowCredentials`` means
        a discoverable login. Among several eligible keys the earliest enrolled is used unless
        ``credential_id`` picks one. ``sign_count_override`` puts that count in the authenticator
        data without touching the stored counter (for cloned-authenticator tests).
        """
        rp_id = options.get("rpId")
        if not rp_id:
            raise AuthenticatorError("options.rpId is missing")
        candidates = [k for k in self.keys if k.rp_id == rp_id]
        allowed = _descriptor_ids(options.get("allowCredentials"))
        if allowed:
            candidates = [k for k in candidates if k.credential_id in allowed]
        if credential_id is not None:
            candidates = [k for k in candidates if k.credential_id == credential_id]
        if not candidates:
            raise AuthenticatorError(f"no eligible credential for RP ID {rp_id!r}")
        key = candidates[0]

        if sign_count_override is None:
            if key.sign_count >= _MAX_SIGN_COUNT:
                raise AuthenticatorError("signature counter exhausted")
            key.sign_count += 1
            sign_count = key.sign_count
        else:
            sign_count = sign_count_override

        client_data_json = _client_data_json(
            "webauthn.get",
            challenge=options.get("challenge"),
            origin=origin,
            cross_origin=cross_origin,
            top_origin=top_origin,
        )
        flags = _flags(
            user_present=user_present,
            user_verified=user_verified,
            backup_eligible=backup_eligible,
            backed_up=backed_up,
        )
        authenticator_data = _authenticator_data_prefix(rp_id, flags, sign_count)
        signature = key.sign(authenticator_data + hashlib.sha256(client_data_json).digest())

        if self.path is not None and sign_count_override is None:
            self.save()
        return {
            "id": _b64url_encode(key.credential_id),
            "rawId": _b64url_encode(key.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": _b64url_encode(client_data_json),
                "authenticatorData": _b64url_encode(authenticator_data),
                "signature": _b64url_encode(signature),
                "userHandle": (
                    _b64url_encode(key.user_handle) if key.user_handle is not None else None
                ),
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }


def _client_data_json(
    ceremony: str,
    *,
    challenge: Any,
    origin: str,
    cross_origin: bool,
    top_origin: str | None,
) -> bytes:
    """CollectedClientData serialised as browsers do (WebAuthn L3 §5.8.1.1)."""
    if not challenge:
        raise AuthenticatorError("options.challenge is missing")
    client_data: dict[str, Any] = {
        "type": ceremony,
        "challenge": _b64url_encode(_b64url_decode(challenge)),
        "origin": origin,
        "crossOrigin": cross_origin,
    }
    if top_origin is not None:
        client_data["topOrigin"] = top_origin
    return json.dumps(client_data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _descriptor_ids(descriptors: Any) -> set[bytes]:
    """Credential IDs from a list of PublicKeyCredentialDescriptorJSON (WebAuthn L3 §5.10.3)."""
    if not descriptors:
        return set()
    try:
        return {_b64url_decode(descriptor["id"]) for descriptor in descriptors}
    except (KeyError, TypeError) as exc:
        raise AuthenticatorError(f"malformed credential descriptors: {descriptors!r}") from exc


def _flags(
    *, user_present: bool, user_verified: bool, backup_eligible: bool, backed_up: bool
) -> int:
    flags = 0
    if user_present:
        flags |= _FLAG_UP
    if user_verified:
        flags |= _FLAG_UV
    if backup_eligible:
        flags |= _FLAG_BE
    if backed_up:
        flags |= _FLAG_BS
    return flags


def _authenticator_data_prefix(rp_id: str, flags: int, sign_count: int) -> bytes:
    """rpIdHash || flags || signCount (WebAuthn L3 §6.1)."""
    rp_id_hash = hashlib.sha256(rp_id.encode("utf-8")).digest()
    return rp_id_hash + struct.pack(">BI", flags, sign_count)


def _key_to_record(key: PhoneKey) -> dict[str, Any]:
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {
        "credential_id": _b64url_encode(key.credential_id),
        "private_key": pem.decode("ascii"),
        "sign_count": key.sign_count,
        "aaguid": str(uuid.UUID(bytes=key.aaguid)),
        "user_handle": _b64url_encode(key.user_handle) if key.user_handle is not None else None,
        "rp_id": key.rp_id,
    }


def _key_from_record(record: dict[str, Any]) -> PhoneKey:
    private_key = serialization.load_pem_private_key(
        record["private_key"].encode("ascii"), password=None
    )
    if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
        private_key.curve, ec.SECP256R1
    ):
        raise AuthenticatorError("key file holds a key that is not EC P-256")
    user_handle = record.get("user_handle")
    return PhoneKey(
        credential_id=_b64url_decode(record["credential_id"]),
        private_key=private_key,
        sign_count=int(record["sign_count"]),
        aaguid=uuid.UUID(record["aaguid"]).bytes,
        user_handle=_b64url_decode(user_handle) if user_handle is not None else None,
        rp_id=record.get("rp_id"),
    )
