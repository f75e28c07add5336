"""Attacks on the WebAuthn ceremonies: enrolment (WebAuthn L3 §7.1) and approval (§7.2).

An enrolment refusal burns the one-time challenge (it is deleted before verification, so an
answer can never be checked twice) and changes nothing else; an approval refusal burns the
login's nonce the same way.
"""

from __future__ import annotations

import copy
import json

import cbor2
import pytest
from harness import Phone
from harness import changed_tables
from sqlalchemy import select
from sqlalchemy import update

from idserver.citizens.models import ActivationCode
from idserver.citizens.service import issue_activation_code
from idserver.db import db
from idserver.db import utcnow
from idserver.passkeys.ceremonies import public_key_fingerprint
from idserver.passkeys.models import Credential
from idserver.phone.authenticator import SoftAuthenticator

from .conftest import begin_enrolment
from .conftest import scan_login
from .hostile import AT
from .hostile import BE
from .hostile import BS
from .hostile import UP
from .hostile import UV
from .hostile import assertion
from .hostile import b64
from .hostile import eddsa_cose
from .hostile import es256_cose
from .hostile import es512_cose
from .hostile import mismatched_cose
from .hostile import off_curve_es256_cose
from .hostile import registration
from .hostile import rs1_cose
from .hostile import rs256_cose
from .hostile import unb64

ONLY_THE_CHALLENGE = {"webauthn_challenges"}
ONLY_THE_NONCE = {"login_transactions"}


def _refused_enrolment(enrolment, credential, db_state, **body):
    before = db_state()
    response = enrolment.finish(credential, **body)
    assert 400 <= response.status_code < 500, response.json
    assert changed_tables(before, db_state()) == ONLY_THE_CHALLENGE
    return response


def _credentials(app):
    with app.app_context():
        return db.session.scalars(select(Credential)).all()


# -- enrolment ----------------------------------------------------------------------------------
def test_rejects_enrolment_without_user_presence(enrolment, db_state):
    forged = registration(enrolment.options, flags=UV | AT)
    assert _refused_enrolment(enrolment, forged, db_state).json["error"] == "enrolment_rejected"


def test_rejects_enrolment_signed_for_another_rp_id(enrolment, db_state):
    forged = registration(enrolment.options, rp_id="localhost.evil.example")
    _refused_enrolment(enrolment, forged, db_state)


def test_rejects_enrolment_from_a_phishing_origin(enrolment, db_state):
    forged = registration(enrolment.options, origin="https://buerger-id.evil.example")
    _refused_enrolment(enrolment, forged, db_state)


def test_rejects_enrolment_inside_a_cross_origin_iframe(enrolment, db_state):
    forged = registration(enrolment.options, client_data_extra={"crossOrigin": True})
    _refused_enrolment(enrolment, forged, db_state)


def test_rejects_enrolment_with_a_top_origin(enrolment, db_state):
    forged = registration(
        enrolment.options, client_data_extra={"topOrigin": "https://evil.example"}
    )
    _refused_enrolment(enrolment, forged, db_state)


def test_rejects_enrolment_answer_of_type_get(enrolment, db_state):
    forged = registration(enrolment.options)
    collected = {
        "type": "webauthn.get",
        "challenge": enrolment.options["challenge"],
        "origin": "http://localhost",
    }
    forged["response"]["clientDataJSON"] = b64(json.dumps(collected).encode())
    _refused_enrolment(enrolment, forged, db_state)


def test_rejects_credential_id_longer_than_1023_bytes(enrolment, db_state):
    # WebAuthn L3 §7.1 step 24: credential IDs are at most 1023 bytes.
    forged = registration(enrolment.options, credential_id=b"\x07" * 1024)
    _refused_enrolment(enrolment, forged, db_state)


@pytest.mark.parametrize("cose_key", [rs1_cose, es512_cose], ids=["RS1", "ES512"])
def test_rejects_key_algorithm_outside_the_offered_list(enrolment, db_state, cose_key):
    # WebAuthn L3 §7.1 step 21: only the algorithms in pubKeyCredParams (ES256, EdDSA, RS256).
    offered = {p["alg"] for p in enrolment.options["pubKeyCredParams"]}
    assert offered == {-7, -8, -257}
    forged = registration(enrolment.options, cose_key=cose_key())
    _refused_enrolment(enrolment, forged, db_state)


def _refused_key(enrolment, cose_key, db_state):
    """A key py_webauthn lets through under ``none`` attestation, refused by our own check."""
    response = _refused_enrolment(
        enrolment, registration(enrolment.options, cose_key=cose_key), db_state
    )
    assert response.status_code == 400
    assert response.json["error"] == "enrolment_rejected"
    assert "zu schwach oder ungültig" in response.json["error_description"]  # German by default


def _code_still_enrols(phone, activation):
    """The refusal left the activation code unused: an honest phone enrols with it."""
    again = begin_enrolment(phone.client, activation)
    honest = phone.authenticator.create_credential(again.options, origin=phone.origin)
    response = again.finish(honest)
    assert response.status_code == 201, response.json


@pytest.mark.parametrize("bits", [1024, 1536, 2047])
def test_rejects_rsa_key_shorter_than_2048_bits(enrolment, phone, activation, db_state, bits):
    # NIST SP 800-131A Rev. 2: RSA signatures need a modulus of at least 2048 bits.
    _refused_key(enrolment, rs256_cose(bits), db_state)
    _code_still_enrols(phone, activation)


@pytest.mark.parametrize("case", ["y-plus-one", "origin", "x-y-swapped"])
def test_rejects_ec_key_whose_point_is_not_on_the_curve(
    enrolment, phone, activation, db_state, case
):
    # An off-curve point invites invalid-curve attacks and can never verify a signature.
    _refused_key(enrolment, off_curve_es256_cose(case), db_state)
    _code_still_enrols(phone, activation)


@pytest.mark.parametrize(
    "case",
    ["P-384-as-ES256", "P-256-as-RS256", "RSA-as-ES256", "Ed448-as-EdDSA", "X25519-as-EdDSA"],
)
def test_rejects_key_whose_type_or_curve_does_not_fit_its_algorithm(
    enrolment, phone, activation, db_state, case
):
    # RFC 9053 §2.1, RFC 8812 §2: ES256 is ECDSA on P-256, EdDSA here Ed25519, RS256 RSA.
    _refused_key(enrolment, mismatched_cose(case), db_state)
    _code_still_enrols(phone, activation)


@pytest.mark.parametrize(
    "cose_key",
    [
        b"\x04",  # py_webauthn reads a leading 0x04 as a raw U2F point, here of no bytes
        cbor2.dumps({1: 2, 3: -7, -1: 1, -2: b"\x01" * 31, -3: b"\x02" * 31}),
        cbor2.dumps({1: 1, 3: -8, -1: 6, -2: b"\x01" * 31}),
        cbor2.dumps({**cbor2.loads(rs256_cose()), -2: b"\x01"}),  # e = 1
        cbor2.dumps({**cbor2.loads(rs256_cose()), -2: b"\x01\x00\x00"}),  # e even
        cbor2.dumps({1: 2, 3: -7, -1: 1, -2: "x", -3: 7}),
    ],
    ids=["cbor-integer-4", "short-ec2", "short-ed25519", "rsa-e-1", "rsa-e-even", "wrong-types"],
)
def test_rejects_credential_key_that_cannot_be_loaded(
    enrolment, phone, activation, db_state, cose_key
):
    _refused_key(enrolment, cose_key, db_state)
    _code_still_enrols(phone, activation)


@pytest.mark.parametrize("state", ["active", "revoked"])
def test_rejects_public_key_already_registered_under_another_credential_id(
    app, enrolment, phone, activation, other_citizen_phone, db_state, state
):
    # Another citizen's public key (it is public) under a fresh credential id: his phone's
    # signatures would then count for this account too. Refused whatever state his device is in.
    held = other_citizen_phone.authenticator.keys[0]
    if state == "revoked":
        with app.app_context():
            db.session.execute(update(Credential).values(revoked_at=utcnow()))
            db.session.commit()
    forged = registration(enrolment.options, cose_key=es256_cose(held.private_key))
    assert unb64(forged["rawId"]) != held.credential_id
    response = _refused_enrolment(enrolment, forged, db_state)
    assert response.status_code == 400
    assert response.json["error"] == "credential_exists"
    _code_still_enrols(phone, activation)


def test_rejects_own_public_key_registered_again_under_a_new_credential_id(
    app, citizen, enrolled_phone, db_state, tmp_path
):
    with app.app_context():
        record, code = issue_activation_code(citizen.id)
    enrolment = begin_enrolment(enrolled_phone.client, (record.id, code))
    numbers = enrolled_phone.authenticator.keys[0].private_key.public_key().public_numbers()
    # the same key spelt differently: other map order, a key id, the library keeps both
    respelled = cbor2.dumps(
        {
            -3: numbers.y.to_bytes(32, "big"),
            -2: numbers.x.to_bytes(32, "big"),
            2: b"another kid",
            -1: 1,
            3: -7,
            1: 2,
        }
    )
    forged = registration(enrolment.options, cose_key=respelled)
    response = _refused_enrolment(enrolment, forged, db_state)
    assert response.status_code == 400
    assert response.json["error"] == "credential_exists"
    tablet = Phone(app.test_client(), SoftAuthenticator(path=tmp_path / "tablet.json"))
    _code_still_enrols(tablet, (record.id, code))
    assert len(_credentials(app)) == 2


@pytest.mark.parametrize(
    "cose_key", [rs256_cose, eddsa_cose], ids=["RS256-2048-bits", "EdDSA-Ed25519"]
)
def test_sound_keys_of_every_offered_algorithm_still_enrol(app, enrolment, cose_key):
    key = cose_key()
    response = enrolment.finish(registration(enrolment.options, cose_key=key))
    assert response.status_code == 201, response.json
    (stored,) = _credentials(app)
    assert stored.public_key_hash == public_key_fingerprint(key)


def test_rejects_backup_state_without_backup_eligibility(enrolment, db_state):
    # §6.1: BS may only be set together with BE.
    forged = registration(enrolment.options, flags=UP | UV | AT | BS)
    _refused_enrolment(enrolment, forged, db_state)


def test_rejects_credential_already_registered_to_another_citizen(
    app, citizen, enrolment, other_citizen_phone, db_state
):
    taken = other_citizen_phone.authenticator.keys[0].credential_id
    forged = registration(enrolment.options, credential_id=taken)
    response = _refused_enrolment(enrolment, forged, db_state)
    assert response.json["error"] == "credential_exists"
    (stored,) = [c for c in _credentials(app) if c.credential_id == taken]
    assert stored.citizen_id != citizen.id  # still the other citizen's alone
    with app.app_context():
        # the activation code was not burned by the refused enrolment
        codes = db.session.scalars(select(ActivationCode).where(ActivationCode.used_at.is_(None)))
        assert len(codes.all()) == 1


def test_rejects_excluded_credential_enrolled_again(app, citizen, enrolled_phone, db_state):
    with app.app_context():
        record, code = issue_activation_code(citizen.id)
    enrolment = begin_enrolment(enrolled_phone.client, (record.id, code))
    held = enrolled_phone.authenticator.keys[0].credential_id
    assert b64(held) in [c["id"] for c in enrolment.options["excludeCredentials"]]
    # an honest authenticator refuses (InvalidStateError); a hostile client ignores the list
    forged = registration(enrolment.options, credential_id=held)
    response = _refused_enrolment(enrolment, forged, db_state)
    assert response.json["error"] == "credential_exists"
    assert len(_credentials(app)) == 1


def test_rejects_enrolment_challenge_used_for_a_second_credential(enrolment, phone, db_state):
    first = phone.authenticator.create_credential(enrolment.options, origin=phone.origin)
    assert enrolment.finish(first).status_code == 201
    second = registration(enrolment.options)
    before = db_state()
    response = enrolment.finish(second)
    assert response.status_code == 400
    assert db_state() == before


@pytest.mark.parametrize(
    "attestation_object",
    [
        b"\xa3\x63fmt",  # a map that ends after its first key
        cbor2.dumps(7),  # not a map
        cbor2.dumps({"fmt": "none", "attStmt": {}}),  # no authData
        cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": "text"}),  # authData not bytes
        b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff",  # a byte string claiming 2**64-1 bytes
        cbor2.dumps({"fmt": ["none"], "attStmt": [], "authData": b"\x00" * 37}),
        b"\xd9\xd9\xf7" * 40 + b"\x01",  # nested self-describe tags
    ],
    ids=[
        "truncated",
        "integer",
        "no-authData",
        "text-authData",
        "huge-length",
        "wrong-types",
        "tags",
    ],
)
def test_rejects_malformed_cbor_attestation_object(enrolment, db_state, attestation_object):
    forged = registration(enrolment.options, raw_attestation_object=attestation_object)
    _refused_enrolment(enrolment, forged, db_state)


@pytest.mark.parametrize("cut", [20, 36, 40, 60, 90, -10], ids=lambda c: f"cut-{c}")
def test_rejects_truncated_authenticator_data_at_enrolment(enrolment, db_state, cut):
    forged = registration(enrolment.options, auth_data_cut=cut)
    _refused_enrolment(enrolment, forged, db_state)


# not base64url at all, a length no base64 has, and JSON types that are not strings
BAD_ENCODINGS = ["***", "a", 12, None, {"x": 1}]


@pytest.mark.parametrize(
    "path",
    [("id",), ("rawId",), ("response", "clientDataJSON"), ("response", "attestationObject")],
    ids=lambda p: ".".join(p),
)
@pytest.mark.parametrize("bad", BAD_ENCODINGS, ids=repr)
def test_rejects_bad_base64_in_every_enrolment_field(enrolment, phone, db_state, path, bad):
    credential = phone.authenticator.create_credential(enrolment.options, origin=phone.origin)
    target = credential
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = bad
    _refused_enrolment(enrolment, credential, db_state)


# -- approval -------------------------------------------------------------------------------------
def _refused_approval(login, credential, db_state):
    before = db_state()
    response = login.approve(credential)
    assert 400 <= response.status_code < 500, response.json
    assert changed_tables(before, db_state()) == ONLY_THE_NONCE
    return response


@pytest.fixture
def issued(scanned):
    """The scanned login with its approval challenge issued: (login, options, phone key)."""
    options = scanned.challenge().json["options"]
    return scanned, options, scanned.phone.authenticator.keys[0]


def test_rejects_assertion_without_user_verification(issued, db_state):
    login, options, key = issued
    _refused_approval(login, assertion(key, options, flags=UP), db_state)


def test_rejects_assertion_without_user_presence(issued, db_state):
    login, options, key = issued
    _refused_approval(login, assertion(key, options, flags=UV), db_state)


def test_rejects_assertion_signed_for_another_rp_id(issued, db_state):
    login, options, key = issued
    _refused_approval(login, assertion(key, options, rp_id="evil.example"), db_state)


def test_rejects_assertion_from_a_phishing_origin(issued, db_state):
    login, options, key = issued
    forged = assertion(key, options, origin="https://buerger-id.evil.example")
    _refused_approval(login, forged, db_state)


def test_rejects_assertion_inside_a_cross_origin_iframe(issued, db_state):
    login, options, key = issued
    forged = assertion(key, options, client_data_extra={"crossOrigin": True})
    _refused_approval(login, forged, db_state)


def test_rejects_assertion_with_a_top_origin(issued, db_state):
    login, options, key = issued
    forged = assertion(key, options, client_data_extra={"topOrigin": "http://localhost"})
    _refused_approval(login, forged, db_state)


def test_rejects_assertion_of_type_create(issued, db_state):
    login, options, key = issued
    _refused_approval(login, assertion(key, options, ceremony="webauthn.create"), db_state)


def test_rejects_assertion_signed_by_another_key(app, issued, other_citizen_phone, db_state):
    login, options, key = issued
    impostor = copy.copy(other_citizen_phone.authenticator.keys[0])
    impostor.credential_id = key.credential_id  # claims to be the citizen's device
    _refused_approval(login, assertion(impostor, options), db_state)


def test_rejects_assertion_over_a_superseded_challenge(issued, db_state):
    login, first_options, key = issued
    login.challenge()  # a second challenge replaces the first
    _refused_approval(login, assertion(key, first_options), db_state)


def test_rejects_assertion_with_flipped_backup_eligibility(app, issued, db_state):
    # WebAuthn L3 §6.1.3: BE is fixed when the credential is created; a change means another
    # authenticator (or a tampered one).
    login, options, key = issued
    _refused_approval(login, assertion(key, options, flags=UP | UV | BE), db_state)
    (stored,) = _credentials(app)
    assert stored.backup_eligible is False and stored.sign_count == 0


@pytest.mark.parametrize("cut", [0, 20, 32, 36], ids=lambda c: f"cut-{c}")
def test_rejects_truncated_authenticator_data_in_an_assertion(issued, db_state, cut):
    login, options, key = issued
    forged = assertion(key, options)
    forged["response"]["authenticatorData"] = b64(
        unb64(forged["response"]["authenticatorData"])[:cut]
    )
    _refused_approval(login, forged, db_state)


@pytest.mark.parametrize(
    "field",
    ["id", "rawId", "clientDataJSON", "authenticatorData", "signature", "userHandle"],
)
@pytest.mark.parametrize("bad", BAD_ENCODINGS, ids=repr)
def test_rejects_bad_base64_in_every_assertion_field(issued, db_state, field, bad):
    login, options, key = issued
    forged = assertion(key, options)
    # userHandle None included: a discoverable login must name its user (§7.2 step 6)
    if field in ("id", "rawId"):
        forged[field] = bad
    else:
        forged["response"][field] = bad
    _refused_approval(login, forged, db_state)


def test_sign_count_regression_suspends_the_device_and_it_stays_suspended(
    app, client, relying_party, enrolled_phone, db_state
):
    # WebAuthn L3 §6.1.1: a counter that does not grow means a cloned authenticator.
    first = scan_login(app.test_client(), relying_party, enrolled_phone)
    options = first.challenge().json["options"]
    honest = enrolled_phone.authenticator.get_assertion(options, origin=enrolled_phone.origin)
    assert first.approve(honest).status_code == 200
    clone = scan_login(client, relying_party, enrolled_phone)
    options = clone.challenge().json["options"]
    cloned = enrolled_phone.authenticator.get_assertion(
        options, origin=enrolled_phone.origin, sign_count_override=1
    )
    before = db_state()
    refused = clone.approve(cloned)
    assert refused.status_code == 400
    assert refused.json["error"] == "device_suspended"
    assert changed_tables(before, db_state()) == {
        "login_transactions",
        "credentials",
        "audit_events",
    }
    (stored,) = _credentials(app)
    assert stored.suspended_at is not None and stored.sign_count == 1
    # the genuine phone, with a higher counter, stays locked out until the office helps
    later = scan_login(app.test_client(), relying_party, enrolled_phone)
    options = later.challenge().json["options"]
    genuine = enrolled_phone.authenticator.get_assertion(options, origin=enrolled_phone.origin)
    before = db_state()
    again = later.approve(genuine)
    assert again.json["error"] == "unknown_device"
    assert changed_tables(before, db_state()) == ONLY_THE_NONCE
