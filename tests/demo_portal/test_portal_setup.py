"""Portal configuration, secrets on disk, and the German texts."""

from __future__ import annotations

import json
import stat

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from jinja2.ext import babel_extract

from demo_portal import create_portal
from demo_portal.config import ConfigError
from demo_portal.i18n import CATALOGUES

CLIENT = {"CLIENT_ID": "client", "CLIENT_SECRET": "secret"}


def test_reads_its_own_prefixed_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PORTAL_JOBS_CLIENT_ID", "jobs-client")
    monkeypatch.setenv("PORTAL_JOBS_CLIENT_SECRET", "jobs-secret")
    monkeypatch.setenv("PORTAL_JOBS_BASE_URL", "http://localhost:7002/")
    monkeypatch.setenv("PORTAL_JOBS_INSTANCE_PATH", str(tmp_path / "jobs"))
    monkeypatch.setenv("PORTAL_PARKING_CLIENT_ID", "not-for-jobs")
    app = create_portal("jobs")
    assert app.config["CLIENT_ID"] == "jobs-client"
    assert app.config["BASE_URL"] == "http://localhost:7002"
    assert app.config["DATABASE_URL"] == f"sqlite:///{tmp_path}/jobs/jobs.sqlite3"
    assert app.config["SESSION_COOKIE_NAME"] == "portal-jobs"


@pytest.mark.parametrize(
    ("config", "complaint"),
    [
        ({"CLIENT_SECRET": "s"}, "PORTAL_PARKING_CLIENT_ID"),
        ({"CLIENT_ID": "c"}, "PORTAL_PARKING_CLIENT_SECRET"),
        ({**CLIENT, "ISSUER": "ftp://localhost"}, "PORTAL_PARKING_ISSUER"),
        ({**CLIENT, "ISSUER": "http://idp.example"}, "PORTAL_PARKING_ISSUER"),
        ({**CLIENT, "BASE_URL": "http://parking.example"}, "PORTAL_PARKING_BASE_URL"),
        ({**CLIENT, "BASE_URL": "https://parking.example/?x=1"}, "PORTAL_PARKING_BASE_URL"),
    ],
)
def test_rejects_unusable_configuration(monkeypatch, tmp_path, config, complaint):
    for name in ("CLIENT_ID", "CLIENT_SECRET", "ISSUER", "BASE_URL"):
        monkeypatch.delenv(f"PORTAL_PARKING_{name}", raising=False)
    with pytest.raises(ConfigError, match=complaint):
        create_portal("parking", {**config, "INSTANCE_PATH": str(tmp_path)})


def test_rejects_unknown_portal():
    with pytest.raises(ConfigError, match="unknown portal"):
        create_portal("library", CLIENT)


def test_secrets_are_created_once_and_private(tmp_path):
    config = {**CLIENT, "INSTANCE_PATH": str(tmp_path / "parking")}
    first = create_portal("parking", config)
    second = create_portal("parking", config)
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
    for name in ("secret-key", "permit-signing-key.json"):
        mode = stat.S_IMODE((tmp_path / "parking" / name).stat().st_mode)
        assert mode == 0o600, name
    key = json.loads((tmp_path / "parking" / "permit-signing-key.json").read_text())
    assert key["kty"] == "EC" and key["crv"] == "P-256" and "d" in key
    with first.app_context(), second.app_context():
        from demo_portal.parking.service import KEY_EXTENSION

        assert first.extensions[KEY_EXTENSION].kid == second.extensions[KEY_EXTENSION].kid


def _message_ids() -> set[str]:
    package = CATALOGUES.parent
    found = extract_from_dir(
        str(package),
        method_map=[("**.py", "python"), ("templates/**.html", babel_extract)],
        options_map={"templates/**.html": {"extensions": "jinja2.ext.i18n"}},
        keywords={"_": None, "_l": None, "gettext": None, "lazy_gettext": None},
    )
    return {message for _file, _line, message, _comments, _context in found}


def test_every_text_has_a_german_translation():
    with (CATALOGUES / "de" / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalogue = read_po(handle)
    translated = {m.id for m in catalogue if m.id and m.string}
    used = _message_ids()
    assert not used - translated, f"untranslated: {sorted(used - translated)}"
    assert not {m.id for m in catalogue if m.id} - used, "translations nobody uses"


def test_pages_are_german(tmp_path):
    app = create_portal("jobs", {**CLIENT, "INSTANCE_PATH": str(tmp_path / "jobs")})
    page = app.test_client().get("/").get_data(as_text=True)
    assert '<html lang="de">' in page
    assert "Offene Stellen" in page and "Mit Bürger-ID anmelden" in page
