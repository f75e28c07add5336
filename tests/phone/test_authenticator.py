"""The soft phone against py_webauthn's verifiers: what it makes must be what a browser makes."""

from __future__ import annotations

import json
import stat
import uuid

import cbor2
import pytest
from webauthn import generate_authentication_options
from webauthn import generate_registration_options
from webauthn import options_to_json
from webauthn import verify_authentication_response
from webauthn import verify_registration_response
from webauthn.helpers import base64url_to_bytes
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers.exceptions import InvalidAuthenticationResponse
from webauthn.helpers.exceptions import InvalidRegistrationResponse
from webauthn.helpers.structs import AttestationConveyancePreference
from webauthn.helpers.structs import PublicKeyCredentialDescriptor
from webauthn.helpers.structs import UserVerificationRequirement

from idserver.phone.authenticator import SOFT_PHONE_AAGUID
from idserver.phone.authenticator import AuthenticatorError
from idserver.phone.authenticator import SoftAuthenticator

RP_ID = "id.buerger.example"
ORIGIN = "https://id.buerger.example"
USER_ID = b"citizen-0001"


def _registration_options(**kwargs) -> tuple[dict, bytes]:
    options = generate_registration_options(
        rp_id=RP_ID,
        rp_name="Bürger-ID",
        user_id=USER_ID,
        user_name="erika.mustermann",
        user_display_name="Erika Mustermann",
        **kwargs,
    )
    return json.loads(options_to_json(options)), options.challenge


def _authentication_options(**kwargs) -> tuple[dict, bytes]:
    options = generate_authentication_options(
        rp_id=RP_ID, user_verification=UserVerificationRequirement.REQUIRED, **kwargs
    )
    return json.loads(options_to_json(options)), options.challenge


def _register(phone: SoftAuthenticator, **kwargs):
    options, challenge = _registration_options()
    response = phone.create_credential(options, origin=ORIGIN, **kwargs)
    verified = verify_registration_response(
        credential=response,
        expected_challenge=challenge,
        expected_origin=ORIGIN,
        expected_rp_id=RP_ID,
        require_user_verification=True,
    )
    return response, verified


def _authenticate(phone: SoftAuthenticator, verified_registration, current_sign_count, **kwargs):
    options, challenge = _authentication_options()
    response = phone.get_assertion(options, origin=ORIGIN, **kwargs)
    return verify_authentication_response(
        credential=response,
        expected_challenge=challenge,
        expected_origin=ORIGIN,
        expected_rp_id=RP_ID,
        credential_public_key=verified_registration.credential_public_key,
        credential_current_sign_count=current_sign_count,
        require_user_verification=True,
    )


@pytest.mark.parametrize("attestation", ["none", "packed"])
def test_registration_verifies(attestation):
    phone = SoftAuthenticator()
    options, challenge = _registration_options(attestation=AttestationConveyancePreference.DIRECT)

    response = phone.create_credential(options, origin=ORIGIN, attestation=attestation)
    verified = verify_registration_response(
        credential=response,
        expected_challenge=challenge,
        expected_origin=ORIGIN,
        expected_rp_id=RP_ID,
        require_user_verification=True,
    )

    assert verified.fmt == attestation
    assert verified.user_verified is True
    assert verified.credential_id == phone.keys[0].credential_id
    assert len(verified.credential_id) == 32
    assert verified.aaguid == str(uuid.UUID(bytes=SOFT_PHONE_AAGUID))
    assert verified.sign_count == 0
    assert phone.keys[0].user_handle == USER_ID
    assert phone.keys[0].rp_id == RP_ID


def test_registration_response_has_browser_shape():
    phone = SoftAuthenticator()
    options, _ = _registration_options()

    response = phone.create_credential(options, origin=ORIGIN)

    assert response["id"] == response["rawId"]
    assert "=" not in response["id"]
    assert response["type"] == "public-key"
    assert response["clientExtensionResults"] == {}
    assert response["authenticatorAttachment"] == "platform"
    body = response["response"]
    assert body["publicKeyAlgorithm"] == -7
    assert base64url_to_bytes(body["publicKey"]) == phone.keys[0].public_key_der()
    client_data = json.loads(base64url_to_bytes(body["clientDataJSON"]))
    assert client_data == {
        "type": "webauthn.create",
        "challenge": options["challenge"],
        "origin": ORIGIN,
        "crossOrigin": False,
    }
    attestation_object = cbor2.loads(base64url_to_bytes(body["attestationObject"]))
    assert attestation_object["fmt"] == "none"
    assert attestation_object["attStmt"] == {}
    assert attestation_object["authData"] == base64url_to_bytes(body["authenticatorData"])


def test_backup_flags_are_reported():
    phone = SoftAuthenticator()

    _, verified = _register(phone, backup_eligible=True, backed_up=True)

    assert verified.credential_device_type.value == "multi_device"
    assert verified.credential_backed_up is True


def test_authentication_verifies_and_counts_up():
    phone = SoftAuthenticator()
    _, registration = _register(phone)

    first = _authenticate(phone, registration, 0)
    second = _authenticate(phone, registration, first.new_sign_count)

    assert first.new_sign_count == 1
    assert second.new_sign_count == 2
    assert first.user_verified is True
    assert phone.keys[0].sign_count == 2


def test_discoverable_login_returns_user_handle():
    phone = SoftAuthenticator()
    _register(phone)
    options, _ = _authentication_options()
    assert options["allowCredentials"] == []

    response = phone.get_assertion(options, origin=ORIGIN)

    assert base64url_to_bytes(response["response"]["userHandle"]) == USER_ID
    assert response["id"] == bytes_to_base64url(phone.keys[0].credential_id)


def test_allow_credentials_picks_the_listed_key():
    phone = SoftAuthenticator()
    _register(phone)
    _, second = _register(phone)
    options, challenge = _authentication_options(
        allow_credentials=[PublicKeyCredentialDescriptor(id=second.credential_id)]
    )

    response = phone.get_assertion(options, origin=ORIGIN)

    assert base64url_to_bytes(response["rawId"]) == second.credential_id
    verify_authentication_response(
        credential=response,
        expected_challenge=challenge,
        expected_origin=ORIGIN,
        expected_rp_id=RP_ID,
        credential_public_key=second.credential_public_key,
        credential_current_sign_count=0,
        require_user_verification=True,
    )


def test_keys_persist_across_reload_with_mode_0600(tmp_path):
    path = tmp_path / "phone.json"
    phone = SoftAuthenticator.load(path)
    assert phone.keys == []
    _, registration = _register(phone)
    _authenticate(phone, registration, 0)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "BEGIN PRIVATE KEY" in path.read_text()
    reloaded = SoftAuthenticator.load(path)
    assert reloaded.keys[0].credential_id == registration.credential_id
    assert reloaded.keys[0].sign_count == 1
    assert reloaded.keys[0].user_handle == USER_ID
    assert reloaded.keys[0].aaguid == SOFT_PHONE_AAGUID
    assert _authenticate(reloaded, registration, 1).new_sign_count == 2
    assert SoftAuthenticator.load(path).keys[0].sign_count == 2
    assert [p.name for p in tmp_path.iterdir()] == ["phone.json"]


def test_rejects_registration_without_user_verification():
    phone = SoftAuthenticator()

    with pytest.raises(InvalidRegistrationResponse, match="verif"):
        _register(phone, user_verified=False)


def test_rejects_authentication_without_user_verification():
    phone = SoftAuthenticator()
    _, registration = _register(phone)

    with pytest.raises(InvalidAuthenticationResponse, match="verif"):
        _authenticate(phone, registration, 0, user_verified=False)


def test_rejects_registration_from_wrong_origin():
    phone = SoftAuthenticator()
    options, challenge = _registration_options()
    response = phone.create_credential(options, origin="https://id.buerger.example.evil")

    with pytest.raises(InvalidRegistrationResponse, match="origin"):
        verify_registration_response(
            credential=response,
            expected_challenge=challenge,
            expected_origin=ORIGIN,
            expected_rp_id=RP_ID,
            require_user_verification=True,
        )


def test_rejects_authentication_from_wrong_origin():
    phone = SoftAuthenticator()
    _, registration = _register(phone)
    options, challenge = _authentication_options()
    response = phone.get_assertion(options, origin="https://phish.example")

    with pytest.raises(InvalidAuthenticationResponse, match="origin"):
        verify_authentication_response(
            credential=response,
            expected_challenge=challenge,
            expected_origin=ORIGIN,
            expected_rp_id=RP_ID,
            credential_public_key=registration.credential_public_key,
            credential_current_sign_count=0,
            require_user_verification=True,
        )


def test_rejects_tampered_signature():
    phone = SoftAuthenticator()
    _, registration = _register(phone)
    options, challenge = _authentication_options()
    response = phone.get_assertion(options, origin=ORIGIN)
    signature = bytearray(base64url_to_bytes(response["response"]["signature"]))
    signature[-1] ^= 0x01
    response["response"]["signature"] = bytes_to_base64url(bytes(signature))

    with pytest.raises(InvalidAuthenticationResponse, match="signature"):
        verify_authentication_response(
            credential=response,
            expected_challenge=challenge,
            expected_origin=ORIGIN,
            expected_rp_id=RP_ID,
            credential_public_key=registration.credential_public_key,
            credential_current_sign_count=0,
            require_user_verification=True,
        )


def test_rejects_replayed_sign_count():
    phone = SoftAuthenticator()
    _, registration = _register(phone)
    _authenticate(phone, registration, 0)

    with pytest.raises(InvalidAuthenticationResponse, match="sign count"):
        _authenticate(phone, registration, 1, sign_count_override=1)
    assert phone.keys[0].sign_count == 1


def test_rejects_excluded_credential():
    phone = SoftAuthenticator()
    _, registration = _register(phone)
    options, _ = _registration_options(
        exclude_credentials=[PublicKeyCredentialDescriptor(id=registration.credential_id)]
    )

    with pytest.raises(AuthenticatorError, match="excludeCredentials"):
        phone.create_credential(options, origin=ORIGIN)
    assert len(phone.keys) == 1


def test_rejects_tampered_packed_attestation():
    phone = SoftAuthenticator()
    options, challenge = _registration_options()
    response = phone.create_credential(options, origin=ORIGIN, attestation="packed")
    attestation_object = cbor2.loads(base64url_to_bytes(response["response"]["attestationObject"]))
    forged = phone.keys[0].sign(b"something else entirely")
    attestation_object["attStmt"]["sig"] = forged
    response["response"]["attestationObject"] = bytes_to_base64url(cbor2.dumps(attestation_object))

    with pytest.raises(InvalidRegistrationResponse, match="signature"):
        verify_registration_response(
            credential=response,
            expected_challenge=challenge,
            expected_origin=ORIGIN,
            expected_rp_id=RP_ID,
            require_user_verification=True,
        )


def test_rejects_options_without_es256():
    phone = SoftAuthenticator()
    options, _ = _registration_options()
    options["pubKeyCredParams"] = [{"type": "public-key", "alg": -257}]

    with pytest.raises(AuthenticatorError, match="ES256"):
        phone.create_credential(options, origin=ORIGIN)
    assert phone.keys == []


def test_rejects_options_without_rp_id():
    phone = SoftAuthenticator()
    options, _ = _registration_options()
    del options["rp"]["id"]

    with pytest.raises(AuthenticatorError, match="rp.id"):
        phone.create_credential(options, origin=ORIGIN)
    assert phone.keys == []


def test_rejects_assertion_for_another_rp_id():
    phone = SoftAuthenticator()
    _register(phone)
    options, _ = _authentication_options()
    options["rpId"] = "portal.example"

    with pytest.raises(AuthenticatorError, match="portal.example"):
        phone.get_assertion(options, origin="https://portal.example")
    assert phone.keys[0].sign_count == 0


def test_rejects_assertion_when_allowed_credential_not_held():
    phone = SoftAuthenticator()
    _register(phone)
    options, _ = _authentication_options(
        allow_credentials=[PublicKeyCredentialDescriptor(id=b"\x00" * 32)]
    )

    with pytest.raises(AuthenticatorError, match="no eligible credential"):
        phone.get_assertion(options, origin=ORIGIN)


def test_rejects_malformed_key_file(tmp_path):
    path = tmp_path / "phone.json"
    path.write_text('{"version": 1, "keys": [{"credential_id": "AA"}]}')

    with pytest.raises(AuthenticatorError, match="malformed key file"):
        SoftAuthenticator.load(path)
