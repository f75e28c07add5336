"""Configuration: explicit, validated at start-up, and strict in production."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from idserver import create_app
from idserver.config import DEMO_SECRET_KEY
from idserver.config import SETTINGS
from idserver.config import ConfigError
from idserver.config import duration
from idserver.config import effective_config
from idserver.config import issuer_is_https
from idserver.config import read_config
from idserver.config import whole_minutes
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


def test_pairing_settings_are_read_from_the_environment(app_config, monkeypatch):
    monkeypatch.setenv("IDSERVER_PAIRING_TTL_SECONDS", "600")
    monkeypatch.setenv("IDSERVER_MAX_CHALLENGES_PER_PAIRING", "3")
    app = create_app(app_config)
    assert app.config["PAIRING_TTL_SECONDS"] == 600
    assert app.config["MAX_CHALLENGES_PER_PAIRING"] == 3


def test_durations_and_https_are_read_one_way_everywhere(app_config):
    app = create_app({**app_config, "PAIRING_TTL_SECONDS": 90, "ACTIVATION_TTL_DAYS": 2})
    assert duration("PAIRING_TTL_SECONDS", app.config) == dt.timedelta(seconds=90)
    assert duration("ACTIVATION_TTL_DAYS", app.config) == dt.timedelta(days=2)
    assert whole_minutes("PAIRING_TTL_SECONDS", app.config) == 2
    with app.app_context():
        assert whole_minutes("QR_STEP_SECONDS") == 1  # a page never says "0 minutes"
        assert issuer_is_https() is False
    with pytest.raises(KeyError, match="not a duration"):
        duration("ISSUER", app.config)
    assert issuer_is_https({"ISSUER": "https://id.example.org"}) is True


def test_malformed_environment_variable_is_named(app_config, monkeypatch):
    monkeypatch.setenv("IDSERVER_LOGIN_TTL_SECONDS", "two minutes")
    with pytest.raises(ConfigError, match="IDSERVER_LOGIN_TTL_SECONDS"):
        create_app(app_config)


# -- secrets from files (Docker and Kubernetes secrets) -------------------------------------------
SECRET_SETTINGS = [setting.name for setting in SETTINGS if setting.secret]


def test_every_setting_that_can_carry_a_password_is_secret():
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"} <= set(SECRET_SETTINGS)


@pytest.mark.parametrize("name", SECRET_SETTINGS)
@pytest.mark.parametrize(
    "contents, value",
    [("v4lue", "v4lue"), ("v4lue\n", "v4lue"), ("v4lue\r\n", "v4lue"), ("v4lue\n\n", "v4lue\n")],
)
def test_secret_setting_is_read_from_its_file(tmp_path, name, contents, value):
    path = tmp_path / "secret"
    path.write_bytes(contents.encode())
    reading = read_config({f"IDSERVER_{name}_FILE": str(path)})
    assert reading.problems == [] and reading.unknown == []
    assert reading.values[name] == value and reading.sources[name] == "file"


def test_app_runs_with_secret_key_and_database_url_from_files(app_config, tmp_path, monkeypatch):
    (tmp_path / "secret_key").write_text("k" * 40 + "\n")
    (tmp_path / "database_url").write_text(app_config["DATABASE_URL"] + "\n")
    monkeypatch.setenv("IDSERVER_SECRET_KEY_FILE", str(tmp_path / "secret_key"))
    monkeypatch.setenv("IDSERVER_DATABASE_URL_FILE", str(tmp_path / "database_url"))
    app = create_app({"ISSUER": app_config["ISSUER"], "KEYS_DIR": app_config["KEYS_DIR"]})
    assert app.config["SECRET_KEY"] == "k" * 40
    assert app.config["DATABASE_URL"] == app_config["DATABASE_URL"]


@pytest.mark.parametrize("name", SECRET_SETTINGS)
def test_rejects_a_secret_set_both_directly_and_as_file(tmp_path, name):
    path = tmp_path / "secret"
    path.write_text("from-file")
    reading = read_config({f"IDSERVER_{name}": "direct", f"IDSERVER_{name}_FILE": str(path)})
    assert reading.problems == [
        f"IDSERVER_{name} and IDSERVER_{name}_FILE are both set; set only one"
    ]
    assert reading.values[name] not in ("direct", "from-file")


def test_rejects_an_unreadable_secret_file_with_one_line(tmp_path):
    missing = tmp_path / "nowhere"
    reading = read_config({"IDSERVER_SECRET_KEY_FILE": str(missing)})
    assert reading.problems == [
        f"IDSERVER_SECRET_KEY_FILE: cannot read {str(missing)!r}: No such file or directory"
    ]


def test_file_form_of_a_setting_that_is_not_secret_is_reported():
    reading = read_config({"IDSERVER_ISSUER_FILE": "/run/secrets/issuer"})
    assert reading.unknown == [
        "IDSERVER_ISSUER_FILE: only secret settings can be read from a file; set IDSERVER_ISSUER"
    ]


# -- misspelt variables --------------------------------------------------------------------
@pytest.mark.parametrize(
    "variable, suggestion",
    [
        ("IDSERVER_LOGIN_TTL_SECOND", "IDSERVER_LOGIN_TTL_SECONDS"),
        ("IDSERVER_SECRETKEY", "IDSERVER_SECRET_KEY"),
        ("IDSERVER_SECRET_KEY_FIEL", "IDSERVER_SECRET_KEY_FILE"),
        ("idserver_issuer", "IDSERVER_ISSUER"),
        ("idserver_secret_key_file", "IDSERVER_SECRET_KEY_FILE"),
    ],
)
def test_misspelt_variable_is_named_with_a_suggestion(variable, suggestion):
    reading = read_config({variable: "x"})
    assert reading.unknown == [f"{variable} is not a known setting; did you mean {suggestion}?"]


def test_variables_of_the_test_suite_and_the_phone_are_not_settings_nor_misspelt():
    environ = {"IDSERVER_TEST_DATABASE_URL": "x", "IDSERVER_PHONE_SERVER": "y"}
    assert read_config(environ).unknown == []


def test_misspelt_variable_is_a_warning_in_development(app_config, monkeypatch, caplog):
    monkeypatch.setenv("IDSERVER_ACCESS_TOKEN_TTL", "60")
    with caplog.at_level(logging.WARNING, logger="idserver"):
        create_app(app_config)
    assert (
        "IDSERVER_ACCESS_TOKEN_TTL is not a known setting; "
        "did you mean IDSERVER_ACCESS_TOKEN_TTL_SECONDS?"
    ) in caplog.messages


def test_rejects_misspelt_variable_in_production(app_config, monkeypatch):
    monkeypatch.setenv("IDSERVER_DATABASE_URL", app_config["DATABASE_URL"])
    monkeypatch.setenv("IDSERVER_ACCESS_TOKEN_TTL", "60")
    with pytest.raises(ConfigError, match="did you mean IDSERVER_ACCESS_TOKEN_TTL_SECONDS"):
        create_app(
            {
                **app_config,
                "ENV": "production",
                "ISSUER": "https://id.example.org",
                "SECRET_KEY": "s" * 48,
            }
        )


# -- every problem at once, one line each ---------------------------------------------------------
def test_every_problem_is_reported_not_just_the_first(tmp_path):
    effective = effective_config(
        instance_path=str(tmp_path),
        environ={
            "IDSERVER_LOGIN_TTL_SECONDS": "two minutes",
            "IDSERVER_ACCESS_TOKEN_TTL_SECONDS": "-5",
            "IDSERVER_ATTESTATION_POLICY": "strict",
            "IDSERVER_ISSUER": "ftp://id.example.org",
            "IDSERVER_DATABASE_URL": "postgres://buergerid:hunter2@db/buergerid",
            "IDSERVER_REDIS_URL": "http://:hunter2@cache:6379/0",
            "IDSERVER_TIMEZONE": "Europe/Atlantis",
            "IDSERVER_LOG_LEVEL": "chatty",
            "IDSERVER_RATE_LIMIT_LOGIN": "lots",
            "IDSERVER_TRUST_PROXY": "perhaps",
        },
    )
    assert effective.problems == [
        "IDSERVER_LOGIN_TTL_SECONDS must be a whole number, not 'two minutes'",
        "IDSERVER_TRUST_PROXY must be true or false, not 'perhaps'",
        "IDSERVER_ACCESS_TOKEN_TTL_SECONDS must be a whole number of at least 1, not -5",
        "IDSERVER_ISSUER must be an absolute http(s) URL",
        "IDSERVER_ATTESTATION_POLICY must be one of none, self, allowlist, trusted",
        "IDSERVER_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not 'CHATTY'",
        "IDSERVER_TIMEZONE is not a known time zone: 'Europe/Atlantis'",
        "IDSERVER_DATABASE_URL names an unknown database 'postgres'",
        "IDSERVER_REDIS_URL must be a redis:// or rediss:// URL",
        "IDSERVER_RATE_LIMIT_LOGIN must be limits such as '10/minute;50/hour', not 'lots'",
    ]
    assert not any("hunter2" in line for line in effective.problems)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"RETENTION_DAYS": -1}, "IDSERVER_RETENTION_DAYS must be a whole number of at least 0"),
        (
            {"LONG_POLL_SECONDS": 0},
            "IDSERVER_LONG_POLL_SECONDS must be a whole number of at least 1",
        ),
        (
            {"PAIRING_TTL_SECONDS": 0},
            "IDSERVER_PAIRING_TTL_SECONDS must be a whole number of at least 1",
        ),
        (
            {"MAX_CHALLENGES_PER_PAIRING": 0},
            "IDSERVER_MAX_CHALLENGES_PER_PAIRING must be a whole number of at least 1",
        ),
        ({"DATABASE_URL": "not a url"}, "IDSERVER_DATABASE_URL is not a database URL"),
        ({"ISSUER": "http://[::1"}, "IDSERVER_ISSUER must be an absolute http(s) URL"),
        ({"ISSUER": "http://localhost:port"}, "IDSERVER_ISSUER must be an absolute http(s) URL"),
        ({"OFFICE_POSTCODE": "4413"}, "IDSERVER_OFFICE_POSTCODE must be five digits, not '4413'"),
    ],
)
def test_refuses_out_of_range_or_malformed_values(app_config, overrides, message):
    with pytest.raises(ConfigError) as refused:
        create_app({**app_config, **overrides})
    assert len(refused.value.problems) == 1 and refused.value.problems[0].startswith(message)


# -- the real console script: `idserver …` and `python -m demo_portal` ----------------------------
BIN = Path(sys.executable).parent
BAD_SETTINGS = {
    "IDSERVER_LOGIN_TTL_SECONDS": "two minutes",
    "IDSERVER_ACCESS_TOKEN_TTL_SECONDS": "-5",
    "IDSERVER_ENV": "prod",
    "IDSERVER_LOGIN_TTL_SECOND": "90",
}
BAD_SETTINGS_LINES = [
    "IDSERVER_LOGIN_TTL_SECONDS must be a whole number, not 'two minutes'",
    "IDSERVER_ACCESS_TOKEN_TTL_SECONDS must be a whole number of at least 1, not -5",
    "IDSERVER_ENV must be 'development' or 'production'",
    "IDSERVER_LOGIN_TTL_SECOND is not a known setting; did you mean IDSERVER_LOGIN_TTL_SECONDS?",
]


def _environment(tmp_path, **settings):
    """The test process's environment without any IDSERVER_* setting, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("IDSERVER_")}
    return {
        **env,
        "IDSERVER_DATABASE_URL": f"sqlite:///{tmp_path}/idserver.sqlite3",
        "IDSERVER_KEYS_DIR": str(tmp_path / "keys"),
        **settings,
    }


def _run(command, env, cwd):
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "command",
    [
        ["idserver", "serve", "--port", "1"],
        ["idserver", "db", "upgrade"],
        ["idserver", "keys", "list"],
        ["idserver", "audit", "verify"],
        ["python", "-m", "demo_portal"],
    ],
)
def test_invalid_settings_stop_the_start_with_one_line_each(tmp_path, command):
    executable = sys.executable if command[0] == "python" else BIN / command[0]
    result = _run([executable, *command[1:]], _environment(tmp_path, **BAD_SETTINGS), tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == BAD_SETTINGS_LINES
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "keys").exists() and not (tmp_path / "idserver.sqlite3").exists()


def test_help_works_while_the_settings_are_broken(tmp_path):
    result = _run([BIN / "idserver", "--help"], _environment(tmp_path, **BAD_SETTINGS), tmp_path)
    assert result.returncode == 0 and "config" in result.stdout


def test_config_check_shows_values_and_sources_with_secrets_masked(tmp_path):
    secret_key = "sk-" + "9" * 40
    (tmp_path / "secret_key").write_text(secret_key + "\n")
    env = _environment(
        tmp_path,
        IDSERVER_SECRET_KEY_FILE=str(tmp_path / "secret_key"),
        IDSERVER_REDIS_URL="redis://:redis-pw-4711@127.0.0.1:6379/0",
        IDSERVER_LOGIN_TTL_SECONDS="90",
    )
    env["IDSERVER_DATABASE_URL"] = "postgresql+psycopg://buergerid:db-pw-0815@db.internal/buergerid"
    result = _run([BIN / "idserver", "config", "check"], env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    for secret in (secret_key, "redis-pw-4711", "db-pw-0815", "db.internal"):
        assert secret not in output
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["problems"] == []
    settings = report["settings"]
    assert set(settings) == {f"IDSERVER_{setting.name}" for setting in SETTINGS}
    assert settings["IDSERVER_SECRET_KEY"] == {"value": "***", "source": "file"}
    assert settings["IDSERVER_DATABASE_URL"] == {"value": "***", "source": "environment"}
    assert settings["IDSERVER_REDIS_URL"] == {"value": "***", "source": "environment"}
    assert settings["IDSERVER_LOGIN_TTL_SECONDS"] == {"value": 90, "source": "environment"}
    assert settings["IDSERVER_QR_STEP_SECONDS"] == {"value": 1, "source": "default"}
    assert settings["IDSERVER_RP_ID"] == {"value": "localhost", "source": "default"}
    assert not (tmp_path / "keys").exists()  # it reads the settings; it starts nothing


def test_config_check_exits_1_naming_each_problem(tmp_path):
    result = _run(
        [BIN / "idserver", "config", "check"], _environment(tmp_path, **BAD_SETTINGS), tmp_path
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == BAD_SETTINGS_LINES
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["problems"] == BAD_SETTINGS_LINES[:3]
    assert report["warnings"] == BAD_SETTINGS_LINES[3:]
    assert "Traceback" not in result.stderr
