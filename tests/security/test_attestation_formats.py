"""Attestation: payloads recorded from real authenticators, and the attestation policies.

Each recorded registration (fixtures/attestation/, sources in fixtures/README.md) is accepted
by ``passkeys.ceremonies.verify_registration`` under the relying party it was recorded for, and
refused by our enrolment endpoint, whose RP ID, origin and challenge it does not match.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import inspect
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
from harness import changed_tables
from OpenSSL.crypto import FILETYPE_ASN1
from OpenSSL.crypto import FILETYPE_PEM
from OpenSSL.crypto import X509Store
from OpenSSL.crypto import X509StoreFlags
from OpenSSL.crypto import dump_certificate
from OpenSSL.crypto import load_certificate
from webauthn.helpers import base64url_to_bytes
from webauthn.helpers import validate_certificate_chain
from webauthn.helpers.known_root_certs import apple_webauthn_root_ca

from idserver.errors import EnrolmentRejected
from idserver.passkeys.ceremonies import verify_registration
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
    with app.test_request_context(), pytest.raises(EnrolmentRejected) as refused:
        _verify_as_recorded(
            recorded,
            attestation_policy="trusted",
            aaguid_allowlist=["6d44ba9b-f6ec-2e49-b930-0c8fe920cb73"],
        )
    assert refused.value.error == "attestation_not_trusted"


def test_rejects_attestation_chained_to_another_root_under_trusted_policy(app):
    recorded = _recorded("packed")
    with app.test_request_context(), pytest.raises(EnrolmentRejected) as refused:
        _verify_as_recorded(
            recorded,
            attestation_policy="trusted",
            aaguid_allowlist=["6d44ba9b-f6ec-2e49-b930-0c8fe920cb73"],
            attestation_roots=[apple_webauthn_root_ca],
        )
    assert refused.value.error == "enrolment_rejected"  # the chain itself does not verify


def test_rejects_authenticator_model_outside_the_allow_list_under_trusted_policy(app):
    recorded = _recorded("apple")
    with app.test_request_context(), pytest.raises(EnrolmentRejected) as refused:
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
