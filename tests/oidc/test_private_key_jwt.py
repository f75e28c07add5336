"""``private_key_jwt`` client authentication (RFC 7523, OIDC Core §9)."""

from __future__ import annotations

import secrets
import time

import pytest
from harness import changed_tables
from joserfc import jwt
from joserfc.jwk import ECKey


def _assertion(key, client_id, relative=None, **overrides):
    """``relative(now)`` gives time claims computed when the assertion is made, not collected."""
    now = int(time.time())
    if relative is not None:
        overrides.update(relative(now))
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": "http://localhost",
        "iat": now,
        "exp": now + 60,
        "jti": secrets.token_urlsafe(16),
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key)


def test_private_key_jwt_exchanges_the_code(client, jwt_client, rp_key, enrolled_phone):
    code = jwt_client.approved_code(client, enrolled_phone)
    response = jwt_client.exchange(client, code, assertion=_assertion(rp_key, jwt_client.client_id))
    assert response.status_code == 200, response.json
    jwt_client.verify_id_token(client, response.json["id_token"])


def _bad_assertion(key, client_id, overrides):
    if callable(overrides):
        return _assertion(key, client_id, relative=overrides)
    return _assertion(key, client_id, **overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "http://localhost/token"},  # FAPI 2.0: the issuer is the only audience
        {"aud": "https://other.example"},
        lambda now: {"exp": now - 120},
        lambda now: {"iat": now + 600, "exp": now + 660},
        lambda now: {"exp": now + 3600},  # lifetime beyond five minutes
        {"jti": None},
        {"sub": "someone-else"},
    ],
    ids=[
        "aud-token-endpoint",
        "aud-other",
        "expired",
        "from-the-future",
        "too-long",
        "no-jti",
        "sub",
    ],
)
def test_rejects_bad_client_assertion(
    client, jwt_client, rp_key, enrolled_phone, db_state, overrides
):
    code = jwt_client.approved_code(client, enrolled_phone)
    before = db_state()
    response = jwt_client.exchange(
        client, code, assertion=_bad_assertion(rp_key, jwt_client.client_id, overrides)
    )
    assert response.status_code in (400, 401), response.json  # RFC 6749 §5.2
    assert response.json["error"] == "invalid_client"
    assert changed_tables(before, db_state()) <= {"rate_limit_counters"}


def test_rejects_replayed_client_assertion_jti(
    client, jwt_client, rp_key, enrolled_phone, db_state
):
    assertion = _assertion(rp_key, jwt_client.client_id)
    first = jwt_client.exchange(
        client, jwt_client.approved_code(client, enrolled_phone), assertion=assertion
    )
    assert first.status_code == 200
    code = jwt_client.approved_code(client, enrolled_phone)
    before = db_state()
    replay = jwt_client.exchange(client, code, assertion=assertion)
    assert replay.json["error"] == "invalid_client"
    assert changed_tables(before, db_state()) <= {"rate_limit_counters"}


def test_rejects_assertion_signed_by_an_unregistered_key(
    client, jwt_client, enrolled_phone, db_state
):
    code = jwt_client.approved_code(client, enrolled_phone)
    stranger = ECKey.generate_key("P-256", parameters={"kid": "rp-1", "alg": "ES256"})
    before = db_state()
    response = jwt_client.exchange(
        client, code, assertion=_assertion(stranger, jwt_client.client_id)
    )
    assert response.json["error"] == "invalid_client"
    assert changed_tables(before, db_state()) <= {"rate_limit_counters"}


def test_rejects_client_secret_for_a_private_key_jwt_client(
    client, jwt_client, enrolled_phone, db_state
):
    code = jwt_client.approved_code(client, enrolled_phone)
    before = db_state()
    response = jwt_client.exchange(client, code, auth=(jwt_client.client_id, "guess"))
    assert response.status_code == 401
    assert changed_tables(before, db_state()) <= {"rate_limit_counters"}
