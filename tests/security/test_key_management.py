"""Attacks on the signing keys (OIDC Core 1.0 §10.1, RFC 8725 §3.1)."""

from __future__ import annotations

import json
import os

import pytest
from harness import changed_tables
from harness import complete_login
from joserfc import jws
from joserfc.jwk import KeySet

from idserver.oidc.keys import KeyStoreError
from idserver.oidc.keys import key_store

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}


def test_jwks_never_publishes_private_key_material(app, client, runner, db_state):
    assert runner.invoke(args=["keys", "rotate"]).exit_code == 0
    before = db_state()
    keys = client.get("/jwks.json").json["keys"]
    assert len(keys) == 2
    for key in keys:
        assert not PRIVATE_MEMBERS & set(key)
        assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("EC", "P-256", "ES256", "sig")
    assert db_state() == before


def test_id_tokens_are_signed_es256_by_a_published_key_only(client, relying_party, enrolled_phone):
    id_token = complete_login(client, relying_party, enrolled_phone)["id_token"]
    header = jws.extract_compact(id_token.encode()).headers()
    assert header["alg"] == "ES256"
    published = KeySet.import_key_set(client.get("/jwks.json").json)
    assert header["kid"] in {key.kid for key in published.keys}
    meta = client.get("/.well-known/openid-configuration").json
    assert meta["id_token_signing_alg_values_supported"] == ["ES256"]


@pytest.mark.parametrize("kid", ["../../etc/passwd", "/etc/shadow", "key/../../x"])
def test_rejects_key_ids_that_leave_the_keys_folder(app, client, kid, db_state):
    with app.app_context():
        store = key_store()
        manifest_path = os.path.join(store.directory, "keys.json")
        with open(manifest_path) as handle:
            manifest = json.load(handle)
        manifest["published"] = [kid, *manifest["published"]]
        with open(manifest_path, "w") as handle:
            json.dump(manifest, handle)
        before = db_state()
        with pytest.raises(KeyStoreError):
            store.jwks()
    assert changed_tables(before, db_state()) == set()
