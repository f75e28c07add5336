"""``/metrics`` tells how the service is used (logins, clients, refusals): only for the scraper.

Threat model X4: a scrape needs ``Authorization: Bearer <IDSERVER_METRICS_TOKEN>``; without a
configured token the endpoint does not exist. A refused scrape shows no numbers and changes nothing.
"""

from __future__ import annotations

import secrets

import pytest

TOKEN = secrets.token_urlsafe(32)


@pytest.fixture
def app_config(app_config):
    return {**app_config, "METRICS_TOKEN": TOKEN}


@pytest.mark.parametrize(
    ("headers", "query", "error"),
    [
        ({}, {}, "unauthorized"),
        ({}, {"access_token": TOKEN}, "unauthorized"),  # never in the query (FAPI 2.0, RFC 9700)
        ({"Authorization": f"Basic {TOKEN}"}, {}, "unauthorized"),
        ({"Authorization": f"Token {TOKEN}"}, {}, "unauthorized"),
        ({"Authorization": f"Bearer {secrets.token_urlsafe(32)}"}, {}, "invalid_token"),
        ({"Authorization": f"Bearer {TOKEN[:16]}"}, {}, "invalid_token"),
        ({"Authorization": f"Bearer {TOKEN}{TOKEN}"}, {}, "invalid_token"),
        ({"Authorization": "Bearer \u00e4\u00f6\u00fc"}, {}, "invalid_token"),
    ],
    ids=["none", "in-query", "basic", "other-scheme", "guessed", "prefix", "doubled", "non-ascii"],
)
def test_rejects_metrics_scrape_without_the_token(
    client, relying_party, enrolled_phone, db_state, headers, query, error
):
    before = db_state()
    response = client.get("/metrics", headers=headers, query_string=query)
    assert response.status_code == 401
    assert response.json["error"] == error
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="idserver-metrics"')
    assert "idserver_" not in response.get_data(as_text=True)
    assert relying_party.client_id not in response.get_data(as_text=True)
    assert db_state() == before


def test_rejects_metrics_scrape_when_no_token_is_configured(app, client, db_state):
    app.config["METRICS_TOKEN"] = ""
    before = db_state()
    for authorization in (f"Bearer {TOKEN}", "Bearer ", ""):
        response = client.get(
            "/metrics", headers={"Authorization": authorization, "Accept": "application/json"}
        )
        assert response.status_code == 404
        assert response.json["error"] == "not_found"
        assert "WWW-Authenticate" not in response.headers
    assert db_state() == before
