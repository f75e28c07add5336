"""Assertions encrypted to an SP that publishes an encryption key (SAML 2.0 Core §2.3.4)."""

from __future__ import annotations

import base64
import shutil

import pytest
from saml_sp import SamlServiceProvider
from saml_sp import qr_login

from idserver.saml import add_service_provider

pytestmark = pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="xmlsec1 is missing")


def _login(client, sp, phone) -> str:
    return qr_login(client, sp, phone)[1]["SAMLResponse"]


def test_an_sp_with_an_encryption_key_gets_an_encrypted_signed_assertion(
    app, client, tmp_path, enrolled_phone
):
    metadata = client.get("/saml/metadata").get_data(as_text=True)
    sp = SamlServiceProvider(tmp_path, metadata, requested=("givenName", "sn"), encrypting=True)
    with app.app_context():
        add_service_provider(sp.metadata(), source="test")
    encoded = _login(client, sp, enrolled_phone)
    xml = base64.b64decode(encoded).decode()
    assert "EncryptedAssertion" in xml
    encryption_cert = "".join(sp.encryption_files[1].read_text().splitlines()[1:-1])
    signing_cert = "".join(sp.cert_file.read_text().splitlines()[1:-1])
    assert encryption_cert in xml and signing_cert not in xml  # to the encryption key
    assert "Erika" not in xml and "Mustermann" not in xml  # nothing readable on the way
    response = sp.read_response(encoded)  # decrypts and checks both signatures
    assert response.get_identity() == {"givenName": ["Erika"], "sn": ["Mustermann"]}
    assert response.assertion.signature is not None  # the Assertion stayed signed inside


def test_an_sp_without_an_encryption_key_gets_a_plain_signed_assertion(
    app, client, tmp_path, enrolled_phone
):
    metadata = client.get("/saml/metadata").get_data(as_text=True)
    sp = SamlServiceProvider(tmp_path, metadata, requested=("givenName",))
    with app.app_context():
        add_service_provider(sp.metadata(), source="test")
    xml = base64.b64decode(_login(client, sp, enrolled_phone)).decode()
    assert "EncryptedAssertion" not in xml and "Erika" in xml
