"""Signing keys: created on first start with mode 0600, rotated, retired."""

from __future__ import annotations

import json
import os
import stat

from harness import complete_login
from joserfc import jwt
from joserfc.jwk import KeySet


def test_first_start_creates_a_private_key_readable_only_by_the_owner(app):
    keys_dir = app.config["KEYS_DIR"]
    pems = [name for name in os.listdir(keys_dir) if name.endswith(".pem")]
    assert len(pems) == 1
    mode = stat.S_IMODE(os.stat(os.path.join(keys_dir, pems[0])).st_mode)
    assert mode == 0o600


def test_rotation_signs_with_the_new_key_and_keeps_the_old_one_published(
    app, client, runner, relying_party, enrolled_phone
):
    old_token = complete_login(client, relying_party, enrolled_phone)["id_token"]
    jwks = KeySet.import_key_set(client.get("/jwks.json").json)
    old_kid = jwt.decode(old_token, jwks, algorithms=["ES256"]).header["kid"]
    result = runner.invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    new_kid = json.loads(result.output)["active"]
    assert new_kid != old_kid
    kids = {key["kid"] for key in client.get("/jwks.json").json["keys"]}
    assert kids == {old_kid, new_kid}
    new_token = complete_login(client, relying_party, enrolled_phone)["id_token"]
    assert relying_party.verify_id_token(client, new_token)
    jwks = KeySet.import_key_set(client.get("/jwks.json").json)
    assert jwt.decode(new_token, jwks, algorithms=["ES256"]).header["kid"] == new_kid
    assert jwt.decode(old_token, jwks, algorithms=["ES256"]).header["kid"] == old_kid

    refused = runner.invoke(args=["keys", "retire", new_kid])
    assert refused.exit_code == 1
    retired = runner.invoke(args=["keys", "retire", old_kid])
    assert retired.exit_code == 0, retired.output
    assert {key["kid"] for key in client.get("/jwks.json").json["keys"]} == {new_kid}
