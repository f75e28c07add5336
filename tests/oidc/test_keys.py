"""Signing keys and the pairwise salt: in the database, sealed under the KEK, one set for every
instance; rotated and retired by one command; imported from the keys folder of earlier versions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from harness import ERIKA
from harness import b64
from harness import complete_login
from harness import snapshot
from joserfc import jws
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text

from idserver import create_app
from idserver.audit import write_checkpoint
from idserver.audit.models import AuditCheckpoint
from idserver.audit.models import AuditEvent
from idserver.citizens.service import register_citizen
from idserver.cli import main
from idserver.config import ConfigError
from idserver.db import db
from idserver.keys import AUDIT
from idserver.keys import ID_TOKEN
from idserver.keys import key_store
from idserver.keys.models import ServerSecret
from idserver.keys.models import SigningKey
from idserver.keys.sealing import new_kek
from idserver.oidc.claims import pairwise_subject

EC_PUBLIC_KEY_OID = bytes.fromhex("06072a8648ce3d0201")  # in every PKCS#8 DER of an EC key
RSA_ENCRYPTION_OID = bytes.fromhex("06092a864886f70d010101")  # in every PKCS#8 DER of an RSA key


# -- helpers --------------------------------------------------------------------------------
@pytest.fixture
def instances(app_config: dict[str, Any], tmp_path: Any) -> Any:
    """``start(name, **settings)``: another instance on the test's database, with a keys folder
    of its own (``tmp_path/<name>``, empty unless the test fills it); the schema exists."""
    started = []

    def start(name: str, **settings: Any) -> Any:
        config = {**app_config, "KEYS_DIR": str(tmp_path / name), **settings}
        app = create_app(config)
        app.config["TESTING"] = True
        started.append(app)
        return app

    schema = start("schema")
    with schema.app_context():
        db.create_all()
    yield start
    for app in started:
        with app.app_context():
            db.engine.dispose()


def _old_keys_folder(directory: Any, *, published: int = 1, retired: int = 0) -> dict[str, Any]:
    """A keys folder as versions before the database wrote it: ``keys.json``, ``<kid>.pem``
    (PKCS#8, 0600) and ``pairwise-salt.hex``. Returns the kids and the salt."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    kids = [f"20260{n + 1}01-0000000{n}" for n in range(published + retired)]
    for kid in kids:
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(os.path.join(directory, f"{kid}.pem"), os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
    newest_first = list(reversed(kids[retired:]))
    manifest = {"active": newest_first[0], "published": newest_first}
    with open(os.path.join(directory, "keys.json"), "w") as handle:
        json.dump(manifest, handle)
    salt = os.urandom(32)
    with open(os.path.join(directory, "pairwise-salt.hex"), "w") as handle:
        handle.write(salt.hex())
    return {"active": manifest["active"], "published": newest_first, "retired": kids[:retired]}


def _old_pairwise_subject(salt: bytes, citizen_id: str, client_id: str) -> str:
    """The ``sub`` earlier versions gave (HMAC-SHA256 under the folder's salt)."""
    digest = hmac.new(salt, f"{client_id}\x00{citizen_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _jwks_kids(app: Any, alg: str | None = None) -> set[str]:
    """The kids in the JWKS, of one algorithm's keys if ``alg`` is given."""
    keys = app.test_client().get("/jwks.json").json["keys"]
    return {key["kid"] for key in keys if alg is None or key["alg"] == alg}


def _register_erika(app: Any) -> str:
    with app.app_context():
        citizen = register_citizen(**ERIKA)
        db.session.commit()
        return citizen.id


def _raw_rows(app: Any, table: str) -> list[tuple[Any, ...]]:
    with app.app_context(), db.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(f'SELECT * FROM "{table}"'))]  # noqa: S608


# -- first start ----------------------------------------------------------------------------
def test_first_start_creates_a_private_key_sealed_under_the_kek(app):
    # The table holds each private key only sealed (AES-GCM under the KEK): no PEM, no PKCS#8
    # structure, no private number in any spelling; the salt likewise. No file is written.
    with app.app_context():
        store = key_store()
        keys = {
            (p, alg): store.signing_key(p, alg).as_dict(private=True)
            for p, alg in ((ID_TOKEN, "ES256"), (ID_TOKEN, "RS256"), (AUDIT, "ES256"))
        }
        salt = store.pairwise_salt()
        counts = dict(
            db.session.execute(
                select(SigningKey.purpose, func.count()).group_by(SigningKey.purpose)
            ).all()
        )
    assert counts == {ID_TOKEN: 2, AUDIT: 1}  # ES256 and RS256 for ID tokens
    assert len({key["kid"] for key in keys.values()}) == 3
    rows = _raw_rows(app, "signing_keys") + _raw_rows(app, "server_secrets")
    raw = b"".join(v if isinstance(v, bytes) else str(v).encode() for row in rows for v in row)
    for key in keys.values():
        d = base64.urlsafe_b64decode(key["d"] + "==")
        for spelling in (d, d.hex().encode(), key["d"].encode(), str(int(d.hex(), 16)).encode()):
            assert spelling not in raw
    rsa = keys[(ID_TOKEN, "RS256")]
    for prime in (rsa["p"], rsa["q"]):
        assert base64.urlsafe_b64decode(prime + "==") not in raw and prime.encode() not in raw
    assert b"PRIVATE KEY" not in raw and EC_PUBLIC_KEY_OID not in raw
    assert RSA_ENCRYPTION_OID not in raw
    assert salt not in raw and salt.hex().encode() not in raw and b64(salt).encode() not in raw
    assert not os.path.exists(app.config["KEYS_DIR"])


def test_a_wrong_kek_refuses_to_start_with_one_clear_line(instances, app_config, tmp_path):
    first = instances("a", KEY_ENCRYPTION_KEY=new_kek())
    first_kids = _jwks_kids(first)
    _old_keys_folder(tmp_path / "b")  # and nothing is imported either
    before = snapshot(first)
    with pytest.raises(ConfigError) as refused:
        instances("b", KEY_ENCRYPTION_KEY=new_kek())
    assert snapshot(first) == before
    message = str(refused.value)
    assert "\n" not in message
    assert "IDSERVER_KEY_ENCRYPTION_KEY does not open" in message
    # the command line says the same in one line, and the keys stay as they were
    env = {
        "IDSERVER_DATABASE_URL": app_config["DATABASE_URL"],
        "IDSERVER_SECRET_KEY": app_config["SECRET_KEY"],
        "IDSERVER_ISSUER": app_config["ISSUER"],
        "IDSERVER_KEY_ENCRYPTION_KEY": new_kek(),
    }
    result = CliRunner().invoke(main, ["keys", "rotate"], env=env)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [message]
    assert _jwks_kids(first) == first_kids


def test_a_malformed_or_missing_kek_is_refused(app_config, monkeypatch):
    with pytest.raises(ConfigError, match="IDSERVER_KEY_ENCRYPTION_KEY must be 32"):
        create_app({**app_config, "KEY_ENCRYPTION_KEY": "c2hvcnQ"})
    monkeypatch.setenv("IDSERVER_DATABASE_URL", app_config["DATABASE_URL"])
    production = {
        **app_config,
        "ENV": "production",
        "ISSUER": "https://id.example.org",
        "SECRET_KEY": "s" * 48,
    }
    with pytest.raises(ConfigError, match="production needs IDSERVER_KEY_ENCRYPTION_KEY"):
        create_app(production)


def test_new_kek_prints_a_key_the_server_accepts(app_config):
    result = CliRunner().invoke(main, ["keys", "new-kek"], env={"IDSERVER_ISSUER": "bad"})
    assert result.exit_code == 0  # needs neither settings nor database
    kek = result.stdout.strip()
    assert len(base64.urlsafe_b64decode(kek)) == 32
    assert create_app({**app_config, "KEY_ENCRYPTION_KEY": kek}).config["KEY_ENCRYPTION_KEY"]


# -- one set of keys for every instance ---------------------------------------------------
def test_two_instances_with_their_own_empty_folders_share_kid_and_sub(instances):
    kek = new_kek()
    a = instances("a", KEY_ENCRYPTION_KEY=kek)
    b = instances("b", KEY_ENCRYPTION_KEY=kek)
    assert len(_jwks_kids(a, "ES256")) == len(_jwks_kids(a, "RS256")) == 1
    assert _jwks_kids(a) == _jwks_kids(b)
    citizen_id = _register_erika(a)
    subjects = []
    for app in (a, b):
        with app.app_context():
            subjects.append(pairwise_subject(citizen_id, client_id="client-1"))
    assert subjects[0] == subjects[1]


def test_a_token_from_one_instance_verifies_with_the_others_jwks(
    app, client, relying_party, enrolled_phone, citizen, instances
):
    id_token = complete_login(client, relying_party, enrolled_phone)["id_token"]
    other = instances("other")
    jwks = KeySet.import_key_set(other.test_client().get("/jwks.json").json)
    claims = jwt.decode(id_token, jwks, algorithms=["ES256"]).claims
    with other.app_context():
        assert claims["sub"] == pairwise_subject(citizen.id, client_id=relying_party.client_id)


def test_rotation_on_one_instance_reaches_the_others_jwks_and_signatures(instances):
    a = instances("a")
    b = instances("b", KEYS_REFRESH_SECONDS=0)
    (old_kid,) = _jwks_kids(b, "ES256")
    result = a.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    new_kid = json.loads(result.output)["active"]
    assert _jwks_kids(b, "ES256") == {old_kid, new_kid}
    with b.app_context():
        assert key_store().signing_key().kid == new_kid
    assert a.test_cli_runner().invoke(args=["keys", "retire", old_kid]).exit_code == 0
    assert _jwks_kids(b, "ES256") == {new_kid}


def test_a_worker_rereads_the_keys_after_the_refresh_interval(instances):
    a = instances("a")
    b = instances("b", KEYS_REFRESH_SECONDS=2)
    (old_kid,) = _jwks_kids(b, "ES256")
    with a.app_context():
        new_kid = key_store().rotate()
    assert _jwks_kids(b, "ES256") == {old_kid}  # cached: no database read per request
    time.sleep(2.1)
    assert _jwks_kids(b, "ES256") == {old_kid, new_kid}


def test_concurrent_first_starts_create_exactly_one_key_and_salt(instances):
    count = 4
    barrier = threading.Barrier(count)
    apps: list[Any] = [None] * count
    errors: list[BaseException] = []

    def start(index: int) -> None:
        try:
            barrier.wait()
            apps[index] = instances(f"instance-{index}")
        except BaseException as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with apps[0].app_context():
        rows = db.session.scalars(select(SigningKey)).all()
        assert sorted((row.purpose, row.alg) for row in rows) == [
            (AUDIT, "ES256"),
            (ID_TOKEN, "ES256"),
            (ID_TOKEN, "RS256"),
        ]
        assert len(db.session.scalars(select(ServerSecret)).all()) == 1
    seen = set()
    for app in apps:
        with app.app_context():
            store = key_store()
            seen.add((store.signing_key().kid, store.signing_key(AUDIT).kid, store.pairwise_salt()))
    assert len(seen) == 1


# -- rotation -------------------------------------------------------------------------------
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
    assert _jwks_kids(app, "ES256") == {old_kid, new_kid}
    new_token = complete_login(client, relying_party, enrolled_phone)["id_token"]
    assert relying_party.verify_id_token(client, new_token)
    jwks = KeySet.import_key_set(client.get("/jwks.json").json)
    assert jwt.decode(new_token, jwks, algorithms=["ES256"]).header["kid"] == new_kid
    assert jwt.decode(old_token, jwks, algorithms=["ES256"]).header["kid"] == old_kid

    refused = runner.invoke(args=["keys", "retire", new_kid])
    assert refused.exit_code == 1
    retired = runner.invoke(args=["keys", "retire", old_kid])
    assert retired.exit_code == 0, retired.output
    assert _jwks_kids(app, "ES256") == {new_kid}
    states = {k["kid"]: k["state"] for k in json.loads(retired.output)["keys"]}
    assert (states[old_kid], states[new_kid]) == ("retired", "active")


# -- the audit log's own key ----------------------------------------------------------------
def test_audit_checkpoints_are_signed_with_the_audit_key_never_published(app, client, runner):
    with app.app_context():
        audit_kid = key_store().signing_key(AUDIT).kid
        id_token_kid = key_store().signing_key().kid
        from idserver.audit import record_event

        record_event("clerk_action", actor="clerk:test", action="search")
        db.session.commit()
        checkpoint = write_checkpoint()
        assert checkpoint is not None
        assert jws.extract_compact(checkpoint.signature.encode()).headers()["kid"] == audit_kid
    assert audit_kid != id_token_kid
    assert audit_kid not in _jwks_kids(app)
    published = _jwks_kids(app)
    rotated = runner.invoke(args=["keys", "rotate", "--purpose", "audit"])
    assert rotated.exit_code == 0, rotated.output
    (new_audit_kid,) = json.loads(rotated.output)["rotated"]
    assert new_audit_kid not in _jwks_kids(app)
    assert _jwks_kids(app, "ES256") == {id_token_kid} and _jwks_kids(app) == published
    verified = runner.invoke(args=["audit", "verify"])
    assert (verified.exit_code, json.loads(verified.output)) == (0, {"ok": True})


def test_audit_verify_accepts_checkpoints_the_former_id_token_key_signed(instances, tmp_path):
    # Earlier versions signed checkpoints with the ID-token key from the folder. After the
    # import, a rotation and the retirement of that key, they still verify (by kid).
    old = _old_keys_folder(tmp_path / "a")
    app = instances("a")
    with app.app_context():
        from idserver.audit import record_event

        entry = record_event("clerk_action", actor="clerk:test", action="search")
        db.session.commit()
        with open(tmp_path / "a" / f"{old['active']}.pem", "rb") as handle:
            from joserfc.jwk import ECKey

            former = ECKey.import_key(handle.read(), {"kid": old["active"]})
        payload = json.dumps(
            {"event_id": entry.id, "event_hash": entry.hash, "at": 0}, separators=(",", ":")
        ).encode()
        signature = jws.serialize_compact({"alg": "ES256", "kid": former.kid}, payload, former)
        db.session.add(
            AuditCheckpoint(
                event_id=entry.id,
                event_hash=entry.hash,
                created_at=entry.at,
                signature=signature,
            )
        )
        db.session.commit()
        key_store().rotate()
        key_store().retire(old["active"])
    runner = app.test_cli_runner()
    verified = runner.invoke(args=["audit", "verify"])
    assert (verified.exit_code, json.loads(verified.output)) == (0, {"ok": True})


# -- the keys folder of earlier versions --------------------------------------------------
def test_the_old_keys_folder_is_imported_with_its_kids_and_salt(instances, tmp_path):
    old = _old_keys_folder(tmp_path / "a", published=2, retired=1)
    with open(tmp_path / "a" / "pairwise-salt.hex") as handle:
        salt = bytes.fromhex(handle.read())
    files = sorted(os.listdir(tmp_path / "a"))
    a = instances("a")  # the instance that has the folder starts first, and imports it
    b = instances("b")  # one without it finds the same keys and salt in the database
    for app in (a, b):
        assert _jwks_kids(app, "ES256") == set(old["published"])
        assert len(_jwks_kids(app, "RS256")) == 1  # the folder had none: made at the start
        with app.app_context():
            assert key_store().signing_key().kid == old["active"]
            keys = key_store().verification_keys(ID_TOKEN).keys
            verifying = {k.kid for k in keys if k.key_type == "EC"}
            assert verifying == set(old["published"]) | set(old["retired"])
    citizen_id = _register_erika(a)
    for app in (a, b):
        with app.app_context():
            assert pairwise_subject(citizen_id, client_id="rp") == _old_pairwise_subject(
                salt, citizen_id, "rp"
            )
    with a.app_context():
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "keys_imported"))
        (event,) = events.all()
        assert sorted(event.data["kids"]) == sorted(old["published"] + old["retired"])
        assert event.data["pairwise_salt"] is True
    assert sorted(os.listdir(tmp_path / "a")) == files  # left in place, for the operator


def test_production_refuses_a_new_salt_when_residents_exist(instances, tmp_path, monkeypatch):
    # The database has residents but no salt (say, an upgrade whose instance does not see the
    # old keys folder): a new salt would change every `sub`, so production does not start.
    kek = new_kek()
    setup = instances("setup", KEY_ENCRYPTION_KEY=kek)
    _register_erika(setup)
    with setup.app_context():
        db.session.execute(text("DELETE FROM server_secrets"))
        db.session.commit()
    monkeypatch.setenv("IDSERVER_DATABASE_URL", setup.config["DATABASE_URL"])
    production = {
        "ENV": "production",
        "ISSUER": "https://id.example.org",
        "SECRET_KEY": "s" * 48,
        "KEY_ENCRYPTION_KEY": kek,
    }
    before = snapshot(setup)
    with pytest.raises(ConfigError) as refused:
        instances("empty", **production)
    assert "\n" not in str(refused.value) and "pairwise salt" in str(refused.value)
    assert snapshot(setup) == before
    # with the old keys folder in place, production imports its salt and starts
    _old_keys_folder(tmp_path / "restored")
    with open(tmp_path / "restored" / "pairwise-salt.hex") as handle:
        salt = bytes.fromhex(handle.read())
    restored = instances("restored", **production)
    with restored.app_context():
        assert key_store().pairwise_salt() == salt
