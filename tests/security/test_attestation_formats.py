"""Attestation: payloads recorded from real authenticators, and the attestation policies.

Each recorded registration (fixtures/attestation/, sources in fixtures/README.md) is accepted
by ``passkeys.ceremonies.verify_registration`` under the relying party it was recorded for, and
refused by our enrolment endpoint, whose RP ID, origin and challenge it does not match.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import hashlib
import inspect
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from harness import b64
from harness import changed_tables
from harness import desktop_status
from OpenSSL.crypto import FILETYPE_ASN1
from OpenSSL.crypto import FILETYPE_PEM
from OpenSSL.crypto import X509Store
from OpenSSL.crypto import X509StoreFlags
from OpenSSL.crypto import dump_certificate
from OpenSSL.crypto import load_certificate
from webauthn.helpers import base64url_to_bytes
from webauthn.helpers import validate_certificate_chain
from webauthn.helpers.known_root_certs import apple_webauthn_root_ca

from idserver.db import db
from idserver.passkeys.ceremonies import proves_hardware_key
from idserver.passkeys.ceremonies import verify_registration
from idserver.passkeys.errors import PasskeyRejected
from idserver.passkeys.models import Credential
from idserver.phone.authenticator import SOFT_PHONE_AAGUID

from .conftest import begin_enrolment

FIXTURES = Path(__file__).parent / "fixtures" / "attestation"
FORMATS = ["none", "packed", "fido-u2f", "tpm", "android-key", "apple"]


def _recorded(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


@contextlib.contextmanager
def _certificates_checked_as_recorded(recorded: dict[str, Any]) -> Iterator[None]:
    """Check chains at the recording time (as py_webauthn's own tests do) and, where the RP
    trusted an intermediate certificate, accept that intermediate as the anchor (OpenSSL's
    partial-chain mode) instead of bypassing the check."""
    when = recorded.get("verify_at")
    if when is None and not recorded.get("trust_last_x5c_certificate"):
        yield
        return
    store = X509Store()
    if when is not None:
        store.set_time(dt.datetime.fromisoformat(when.replace("Z", "+00:00")).replace(tzinfo=None))
    if recorded.get("trust_last_x5c_certificate"):
        store.set_flags(X509StoreFlags.PARTIAL_CHAIN)
    module = inspect.getmodule(validate_certificate_chain)
    original = module._generate_new_cert_store  # type: ignore[union-attr]
    module._generate_new_cert_store = lambda: store  # type: ignore[union-attr]
    try:
        yield
    finally:
        module._generate_new_cert_store = original  # type: ignore[union-attr]


def _statement(recorded: dict[str, Any]) -> dict[str, Any]:
    attestation = cbor2.loads(
        base64url_to_bytes(recorded["credential"]["response"]["attestationObject"])
    )
    return attestation["attStmt"]


def _own_roots(recorded: dict[str, Any]) -> list[bytes]:
    if not recorded.get("trust_last_x5c_certificate"):
        return []
    last = load_certificate(FILETYPE_ASN1, _statement(recorded)["x5c"][-1])
    return [dump_certificate(FILETYPE_PEM, last)]


def _verify_as_recorded(recorded: dict[str, Any], **policy: Any) -> Any:
    with _certificates_checked_as_recorded(recorded):
        return verify_registration(
            credential=copy.deepcopy(recorded["credential"]),
            expected_challenge=base64url_to_bytes(recorded["challenge"]),
            expected_rp_id=recorded["rp_id"],
            expected_origins=[recorded["origin"]],
            require_user_verification=recorded["user_verified"],
            **policy,
        )


@pytest.mark.parametrize("name", FORMATS)
def test_recorded_attestation_verifies_under_its_own_relying_party(app, name):
    recorded = _recorded(name)
    with app.test_request_context():
        verified = _verify_as_recorded(recorded, attestation_roots=_own_roots(recorded))
    assert verified.fmt == name
    assert verified.credential_id == base64url_to_bytes(recorded["credential"]["rawId"])


@pytest.mark.parametrize("name", ["apple", "android-key"])
def test_recorded_attestation_chains_to_a_trusted_root(app, name):
    # apple: the Apple WebAuthn root py_webauthn ships; android-key: the root its RP configured.
    recorded = _recorded(name)
    with app.test_request_context():
        aaguid = _verify_as_recorded(recorded, attestation_roots=_own_roots(recorded)).aaguid
        verified = _verify_as_recorded(
            recorded,
            attestation_policy="trusted",
            aaguid_allowlist=[aaguid],
            attestation_roots=_own_roots(recorded),
        )
    assert verified.aaguid == aaguid


@pytest.mark.parametrize("name", FORMATS)
def test_rejects_recorded_attestation_replayed_into_our_enrolment(enrolment, db_state, name):
    before = db_state()
    response = enrolment.finish(_recorded(name)["credential"])
    assert response.status_code == 400
    assert response.json["error"] == "enrolment_rejected"
    assert changed_tables(before, db_state()) == {"webauthn_challenges"}


def test_rejects_full_attestation_without_a_configured_root_under_trusted_policy(app):
    # A YubiKey's packed attestation is genuine, but nobody told us to trust Yubico's root.
    recorded = _recorded("packed")
    with app.test_request_context(), pytest.raises(PasskeyRejected) as refused:
        _verify_as_recorded(
            recorded,
            attestation_policy="trusted",
            aaguid_allowlist=["6d44ba9b-f6ec-2e49-b930-0c8fe920cb73"],
        )
    assert refused.value.error == "attestation_not_trusted"


def test_rejects_attestation_chained_to_another_root_under_trusted_policy(app):
    recorded = _recorded("packed")
    with app.test_request_context(), pytest.raises(PasskeyRejected) as refused:
        _verify_as_recorded(
            recorded,
            attestation_policy="trusted",
            aaguid_allowlist=["6d44ba9b-f6ec-2e49-b930-0c8fe920cb73"],
            attestation_roots=[apple_webauthn_root_ca],
        )
    # the chain itself does not verify: no code of its own, enrolment answers enrolment_rejected
    assert refused.value.error is None


def test_rejects_authenticator_model_outside_the_allow_list_under_trusted_policy(app):
    recorded = _recorded("apple")
    with app.test_request_context(), pytest.raises(PasskeyRejected) as refused:
        _verify_as_recorded(
            recorded,
            attestation_policy="trusted",
            aaguid_allowlist=["00000000-0000-0000-0000-000000000001"],
        )
    assert refused.value.error == "attestation_not_trusted"


def test_rejects_none_attestation_under_self_policy(app, phone, enrolment, db_state):
    app.config["ATTESTATION_POLICY"] = "self"
    credential = phone.authenticator.create_credential(enrolment.options, origin=phone.origin)
    before = db_state()
    response = enrolment.finish(credential)
    assert response.status_code == 400
    assert response.json["error"] == "attestation_not_trusted"
    assert changed_tables(before, db_state()) == {"webauthn_challenges"}


def test_rejects_self_attestation_under_trusted_policy(app, phone, activation, db_state):
    app.config["ATTESTATION_POLICY"] = "trusted"
    app.config["AAGUID_ALLOWLIST"] = [str(uuid.UUID(bytes=SOFT_PHONE_AAGUID))]
    enrolment = begin_enrolment(phone.client, activation)
    assert enrolment.options["attestation"] == "direct"
    credential = phone.authenticator.create_credential(
        enrolment.options, origin=phone.origin, attestation="packed"
    )
    before = db_state()
    response = enrolment.finish(credential)
    assert response.status_code == 400
    assert response.json["error"] == "attestation_not_trusted"
    assert changed_tables(before, db_state()) == {"webauthn_challenges"}


def test_self_policy_accepts_the_phones_self_attestation(app, phone, activation):
    app.config["ATTESTATION_POLICY"] = "self"
    enrolment = begin_enrolment(phone.client, activation)
    credential = phone.authenticator.create_credential(
        enrolment.options, origin=phone.origin, attestation="packed"
    )
    assert enrolment.finish(credential).status_code == 201


# -- amr: "hwk" only for a key that attestation proved to be kept in hardware (RFC 8176) -------
SOFT_PHONE = str(uuid.UUID(bytes=SOFT_PHONE_AAGUID))
OTHER_MODEL = "00000000-0000-0000-0000-000000000001"


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Beispiel Authenticator GmbH"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Authenticator Attestation"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


@pytest.fixture
def maker(tmp_path):
    """An authenticator maker: a root CA (its PEM in a file, as for IDSERVER_ATTESTATION_ROOTS)
    and a batch attestation key with a certificate it issued (WebAuthn L3 §8.2.1)."""
    now = dt.datetime.now(dt.UTC)
    root_key, batch_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )

    def issue(subject, key, issuer, signer, *, ca):
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(signer, hashes.SHA256())
        )

    root = issue(_name("Beispiel Root CA"), root_key, _name("Beispiel Root CA"), root_key, ca=True)
    batch = issue(_name("Beispiel Batch 1"), batch_key, root.subject, root_key, ca=False)
    roots_file = tmp_path / "attestation-roots.pem"
    roots_file.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    return {"key": batch_key, "x5c": [batch.public_bytes(serialization.Encoding.DER)]}, roots_file


def _full_attestation(credential, batch):
    """The soft phone's answer with a "packed" full attestation statement signed by the
    maker's batch key over authData ‖ SHA-256(clientDataJSON) (WebAuthn L3 §8.2)."""
    response = credential["response"]
    attestation = cbor2.loads(base64url_to_bytes(response["attestationObject"]))
    signed = (
        attestation["authData"]
        + hashlib.sha256(base64url_to_bytes(response["clientDataJSON"])).digest()
    )
    attestation["fmt"] = "packed"
    attestation["attStmt"] = {
        "alg": -7,
        "sig": batch["key"].sign(signed, ec.ECDSA(hashes.SHA256())),
        "x5c": batch["x5c"],
    }
    response["attestationObject"] = b64(cbor2.dumps(attestation))
    return credential


def _amr_after_enrolling(app, client, relying_party, phone, activation, *, attestation, synced):
    """Enrol the phone (its answer made by ``attestation``), log in; the ID token's amr and
    what was stored about the credential."""
    enrolment = begin_enrolment(phone.client, activation)
    credential = attestation(
        phone.authenticator.create_credential(
            enrolment.options,
            origin=phone.origin,
            attestation="packed" if attestation is _self_attested else "none",
            backup_eligible=synced,
        )
    )
    finished = enrolment.finish(credential, name="Telefon")
    assert finished.status_code == 201, finished.json
    login_id = relying_party.start_login(client)
    status = desktop_status(client, login_id).json
    approved = phone.approve(status["phone_url"], status["number"], backup_eligible=synced)
    assert approved.status_code == 200, approved.json
    continued = client.get(desktop_status(client, login_id).json["continue_url"])
    code = parse_qs(urlsplit(continued.headers["Location"]).query)["code"][0]
    tokens = relying_party.exchange(client, code)
    assert tokens.status_code == 200, tokens.json
    claims = relying_party.verify_id_token(client, tokens.json["id_token"])
    with app.app_context():
        stored = db.session.query(Credential).one()
        return claims["amr"], stored.hardware_attested, stored.attestation_format


def _self_attested(credential):
    return credential  # the soft phone made it "packed" without x5c (self attestation)


@pytest.mark.parametrize(
    ("policy", "attestation", "configured_root", "allowlist", "synced"),
    [
        ("none", "none", False, [], False),  # nothing proved at all
        ("self", "self", False, [], False),  # self attestation: the key vouching for itself
        ("self", "full", False, [SOFT_PHONE], False),  # a chain, but to no root we trust
        ("self", "full", True, [OTHER_MODEL], False),  # trusted root, model not allow-listed
        ("trusted", "full", True, [SOFT_PHONE], True),  # proved, but a synced passkey
    ],
    ids=[
        "none-attestation",
        "self-attestation",
        "chain-to-an-unconfigured-root",
        "model-not-allow-listed",
        "backup-eligible",
    ],
)
def test_amr_does_not_claim_hwk_without_hardware_attestation(
    app,
    client,
    relying_party,
    phone,
    activation,
    maker,
    policy,
    attestation,
    configured_root,
    allowlist,
    synced,
):
    # RFC 8176 "hwk" is proof of possession of a hardware-secured key. A clear backup-eligible
    # flag is only the authenticator's word; without attestation to a trusted root it is "swk".
    batch, roots_file = maker
    app.config.update(
        ATTESTATION_POLICY=policy,
        AAGUID_ALLOWLIST=allowlist,
        ATTESTATION_ROOTS=str(roots_file) if configured_root else "",
    )
    made_by = {
        "none": lambda credential: credential,
        "self": _self_attested,
        "full": lambda credential: _full_attestation(credential, batch),
    }[attestation]
    amr, hardware_attested, fmt = _amr_after_enrolling(
        app, client, relying_party, phone, activation, attestation=made_by, synced=synced
    )
    assert fmt == ("none" if attestation == "none" else "packed")
    assert sorted(amr) == ["mfa", "swk", "user"]
    assert hardware_attested is False


def test_amr_claims_hwk_for_a_key_attested_to_a_trusted_root(
    app, client, relying_party, phone, activation, maker
):
    batch, roots_file = maker
    app.config.update(
        ATTESTATION_POLICY="trusted",
        AAGUID_ALLOWLIST=[SOFT_PHONE],
        ATTESTATION_ROOTS=str(roots_file),
    )
    amr, hardware_attested, fmt = _amr_after_enrolling(
        app,
        client,
        relying_party,
        phone,
        activation,
        attestation=lambda credential: _full_attestation(credential, batch),
        synced=False,
    )
    assert fmt == "packed" and hardware_attested is True
    assert sorted(amr) == ["hwk", "mfa", "user"]


@pytest.mark.parametrize(
    ("name", "allow_listed", "proves"),
    [
        ("none", True, False),
        ("packed", True, False),  # a genuine YubiKey chain, but no Yubico root configured
        ("fido-u2f", True, False),
        ("tpm", True, False),
        ("android-key", True, True),  # chained to the root its relying party configured
        ("apple", True, True),  # chained to the Apple root py_webauthn ships
        ("android-key", False, False),  # the same, but the model is not on the allow-list
    ],
)
def test_only_recorded_attestation_to_a_trusted_root_proves_a_hardware_key(
    app, name, allow_listed, proves
):
    recorded = _recorded(name)
    roots = _own_roots(recorded)
    with app.test_request_context():
        verified = _verify_as_recorded(recorded, attestation_roots=roots)
    allowlist = [verified.aaguid] if allow_listed else [OTHER_MODEL]
    assert (
        proves_hardware_key(verified, aaguid_allowlist=allowlist, attestation_roots=roots) is proves
    )
