"""compose.yaml, the documented production shape, stays consistent with the code it runs.

No container engine runs it here; these checks catch the drift a reader would trip over: a
setting that does not exist, an http issuer, a secret in the environment, an instance the proxy
does not know.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from idserver.config import PREFIX
from idserver.config import SETTINGS

ROOT = Path(__file__).resolve().parents[2]
SECRET_SETTINGS = {"SECRET_KEY", "DATABASE_URL", "KEY_ENCRYPTION_KEY"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def _instances(compose: dict[str, Any]) -> dict[str, Any]:
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("image") == "localhost/buergerid:latest" and "command" not in service
    }


def test_two_instances_run_in_production_mode_behind_the_proxy(compose):
    instances = _instances(compose)
    assert len(instances) == 2
    caddyfile = (ROOT / "container/Caddyfile").read_text()
    for name, service in instances.items():
        env = service["environment"]
        assert env["IDSERVER_ENV"] == "production"
        assert env["IDSERVER_ISSUER"].startswith("https://")
        assert env["IDSERVER_TRUST_PROXY"] == "true"
        assert env["IDSERVER_REDIS_URL"].startswith("redis://redis:")
        assert f"{name}:8000" in caddyfile
        assert "/readyz" in " ".join(service["healthcheck"]["test"])
    assert "tls internal" in caddyfile
    assert "health_uri /readyz" in caddyfile


def test_every_setting_named_exists_and_secrets_come_from_files(compose):
    known = {setting.name for setting in SETTINGS}
    for service in compose["services"].values():
        for variable, value in service.get("environment", {}).items():
            if not variable.startswith(PREFIX):
                continue
            name = variable.removeprefix(PREFIX).removesuffix("_FILE")
            assert name in known, variable
            if name in SECRET_SETTINGS:
                assert variable.endswith("_FILE"), f"{variable} must come from a secret file"
                secret = Path(value).name
                assert secret in service["secrets"]
                assert compose["secrets"][secret]["file"].startswith("./secrets/")


def test_the_database_and_redis_are_not_on_the_public_network(compose):
    assert compose["networks"]["backend"]["internal"] is True
    for name in ("postgres", "redis"):
        assert compose["services"][name]["networks"] == ["backend"]
        assert "ports" not in compose["services"][name]
    assert compose["services"]["proxy"]["networks"] == ["frontend"]
