"""Attacks on the signing keys (OIDC Core 1.0 §10.1, RFC 8725 §3.1)."""

from __future__ import annotations

import base64
import json

import pytest
from harness import changed_tables
from harness import complete_login
from harness import snapshot
from joserfc import jws
from joserfc.jwk import KeySet

from idserver import create_app
from idserver.config import ConfigError
from idserver.db import db
from idserver.keys import KeyStoreError
from idserver.keys import key_store

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}


def test_jwks_never_publishes_private_key_material(app, client, runner, db_state):
    assert runner.invoke(args=["keys", "rotate"]).exit_code == 0
    before = db_state()
    keys = client.get("/jwks.json").json["keys"]
    assert len(keys) == 4  # ES256 and RS256, each the active and the previous key
    for key in keys:
        assert not PRIVATE_MEMBERS & set(key)
        if key["kty"] == "EC":
            assert (key["crv"], key["alg"], key["use"]) == ("P-256", "ES256", "sig")
        else:
            assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig")
            assert len(base64.urlsafe_b64decode(key["n"] + "==")) * 8 >= 2048
    assert db_state() == before


def test_id_tokens_are_signed_es256_by_a_published_key_only(client, relying_party, enrolled_phone):
    id_token = complete_login(client, relying_party, enrolled_phone)["id_token"]
    header = jws.extract_compact(id_token.encode()).headers()
    assert header["alg"] == "ES256"
    published = KeySet.import_key_set(client.get("/jwks.json").json)
    assert header["kid"] in {key.kid for key in published.keys}
    meta = client.get("/.well-known/openid-configuration").json
    assert meta["id_token_signing_alg_values_supported"] == ["ES256", "RS256"]


@pytest.mark.parametrize("kid", ["../../etc/passwd", "/etc/shadow", "key/../../x"])
def test_rejects_key_ids_that_leave_the_keys_folder(app_config, tmp_path, kid):
    # The keys folder of earlier versions is imported on the first start: a tampered manifest
    # must not make it open files outside the folder, and nothing is imported or created.
    folder = tmp_path / "old-keys"
    folder.mkdir()
    (folder / "keys.json").write_text(json.dumps({"active": kid, "published": [kid]}))
    app = create_app({**app_config, "KEYS_DIR": str(folder)})
    try:
        with app.app_context():
            db.create_all()
        before = snapshot(app)
        with app.app_context(), pytest.raises(KeyStoreError, match="bad key id"):
            key_store().jwks()
        assert changed_tables(before, snapshot(app)) == set()
        # at start, the same refusal stops the server with one line
        with pytest.raises(ConfigError, match="bad key id"):
            create_app({**app_config, "KEYS_DIR": str(folder)})
        assert changed_tables(before, snapshot(app)) == set()
    finally:
        with app.app_context():
            db.engine.dispose()
