"""Configuration: explicit, validated at start-up, and strict in production."""

from __future__ import annotations

import pytest

from idserver import create_app
from idserver.config import DEMO_SECRET_KEY
from idserver.config import ConfigError
from idserver.keys.sealing import new_kek


def test_demo_defaults_start(app_config):
    app = create_app({**app_config, "SECRET_KEY": DEMO_SECRET_KEY})
    assert app.config["RP_ID"] == "localhost"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"ENV": "production", "SECRET_KEY": DEMO_SECRET_KEY}, "SECRET_KEY"),
        ({"ENV": "production", "ISSUER": "http://id.example.org"}, "https"),
        ({"ISSUER": "ftp://id.example.org"}, "ISSUER"),
        ({"ISSUER": "https://id.example.org", "RP_ID": "other.org"}, "RP_ID"),
        ({"ATTESTATION_POLICY": "allowlist"}, "AAGUID_ALLOWLIST"),
        ({"QR_MAX_AGE_SECONDS": 0}, "QR_MAX_AGE"),
        ({"PROXIMITY_POLICY": "sometimes"}, "PROXIMITY_POLICY"),
        ({"PROXIMITY_IPV4_PREFIX": 33}, "PROXIMITY_IPV4_PREFIX"),
        ({"PROXIMITY_IPV6_PREFIX": 8}, "PROXIMITY_IPV6_PREFIX"),
    ],
)
def test_refuses_unsafe_or_broken_settings(app_config, overrides, message):
    with pytest.raises(ConfigError, match=message):
        create_app({**app_config, **overrides})


def test_production_with_real_settings_starts(app_config, monkeypatch):
    monkeypatch.setenv("IDSERVER_DATABASE_URL", app_config["DATABASE_URL"])
    app = create_app(
        {
            **app_config,
            "ENV": "production",
            "ISSUER": "https://id.example.org",
            "SECRET_KEY": "s" * 48,
            "KEY_ENCRYPTION_KEY": new_kek(),
        }
    )
    assert app.config["SESSION_COOKIE_NAME"] == "__Host-session"
    assert app.config["SESSION_COOKIE_SECURE"] is True


def test_environment_variables_are_read(app_config, monkeypatch):
    monkeypatch.setenv("IDSERVER_LOGIN_TTL_SECONDS", "90")
    monkeypatch.setenv("IDSERVER_ALLOWED_ORIGINS", "android:apk-key-hash:abc, ios:bundle-id:x")
    app = create_app({k: v for k, v in app_config.items()})
    assert app.config["LOGIN_TTL_SECONDS"] == 90
    assert app.config["ALLOWED_ORIGINS"] == ["android:apk-key-hash:abc", "ios:bundle-id:x"]


def test_malformed_environment_variable_is_named(app_config, monkeypatch):
    monkeypatch.setenv("IDSERVER_LOGIN_TTL_SECONDS", "two minutes")
    with pytest.raises(ConfigError, match="IDSERVER_LOGIN_TTL_SECONDS"):
        create_app(app_config)
