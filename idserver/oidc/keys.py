"""ES256 signing keys in ``IDSERVER_KEYS_DIR`` and the public JWKS (RFC 7517).

Layout: ``<kid>.pem`` (PKCS#8, mode 0600) per key and ``keys.json`` naming the key that signs
(``active``) and the older keys still published so tokens they signed keep verifying
(``published``). Rotation adds a key and signs with it; ``retire`` stops publishing an old one.
Every worker re-reads the folder when ``keys.json`` changes, so a rotation reaches all of them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import tempfile
import threading
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask import current_app
from joserfc.jwk import ECKey
from joserfc.jwk import KeySet

MANIFEST = "keys.json"
SALT_FILE = "pairwise-salt.hex"


class KeyStoreError(RuntimeError):
    """The keys folder is unusable (missing key file, bad manifest)."""


@dataclass
class _Loaded:
    mtime_ns: int
    active: ECKey
    published: list[ECKey]


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _create_once(path: str, data: bytes) -> bool:
    """Create ``path`` holding ``data`` (mode 0600) unless it exists; False if it did.

    Written under a temporary name and then hard-linked, so an instance starting at the same
    moment never reads a half-written file, and of two the first one wins.
    """
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".new-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    return True


def _write_manifest(directory: str, manifest: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".keys-", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(manifest, handle, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, os.path.join(directory, MANIFEST))


class KeyStore:
    """The signing keys of one server; safe to share between threads."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self._salt: bytes | None = None

    # -- files ---------------------------------------------------------------------------
    def _manifest(self) -> dict[str, Any]:
        with open(os.path.join(self.directory, MANIFEST)) as handle:
            return json.load(handle)

    def _read_key(self, kid: str) -> ECKey:
        if not kid.replace("-", "").replace("_", "").isalnum():
            raise KeyStoreError(f"bad key id in manifest: {kid!r}")
        with open(os.path.join(self.directory, f"{kid}.pem"), "rb") as handle:
            return ECKey.import_key(handle.read(), {"kid": kid, "alg": "ES256", "use": "sig"})

    def _new_key_file(self) -> str:
        kid = dt.datetime.now(dt.UTC).strftime("%Y%m%d") + "-" + secrets.token_hex(4)
        private = ec.generate_private_key(ec.SECP256R1())
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private(os.path.join(self.directory, f"{kid}.pem"), pem)
        return kid

    def ensure(self) -> bool:
        """Create the folder and a first key if there is none; True if one was created.

        Instances starting together on an empty folder agree on one first key: the manifest
        that names it is created once, and the others remove the key they made meanwhile.
        """
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        manifest = os.path.join(self.directory, MANIFEST)
        if os.path.exists(manifest):
            return False
        kid = self._new_key_file()
        first = json.dumps({"active": kid, "published": [kid]}, indent=2).encode()
        if _create_once(manifest, first):
            return True
        os.unlink(os.path.join(self.directory, f"{kid}.pem"))
        return False

    def rotate(self) -> str:
        """Add a key and sign with it; the previous keys stay published until retired."""
        self.ensure()
        manifest = self._manifest()
        kid = self._new_key_file()
        manifest["published"] = [kid, *manifest["published"]]
        manifest["active"] = kid
        _write_manifest(self.directory, manifest)
        return kid

    def retire(self, kid: str) -> None:
        """Stop publishing ``kid``; its file is kept for the operator to archive or delete."""
        manifest = self._manifest()
        if kid == manifest["active"]:
            raise KeyStoreError("the active key cannot be retired; rotate first")
        if kid not in manifest["published"]:
            raise KeyStoreError(f"no published key {kid}")
        manifest["published"] = [k for k in manifest["published"] if k != kid]
        _write_manifest(self.directory, manifest)

    def pairwise_salt(self) -> bytes:
        """The secret behind pairwise ``sub`` values: created once, never rotated."""
        if self._salt is None:
            path = os.path.join(self.directory, SALT_FILE)
            _create_once(path, secrets.token_bytes(32).hex().encode())
            with open(path, "rb") as handle:
                self._salt = bytes.fromhex(handle.read().decode().strip())
        return self._salt

    def describe(self) -> dict[str, Any]:
        return self._manifest()

    # -- use -----------------------------------------------------------------------------
    def _current(self) -> _Loaded:
        mtime = os.stat(os.path.join(self.directory, MANIFEST)).st_mtime_ns
        loaded = self._loaded
        if loaded is not None and loaded.mtime_ns == mtime:
            return loaded
        with self._lock:
            manifest = self._manifest()
            published = [self._read_key(kid) for kid in manifest["published"]]
            active = next(k for k in published if k.kid == manifest["active"])
            self._loaded = _Loaded(mtime, active, published)
            return self._loaded

    def signing_key(self) -> ECKey:
        return self._current().active

    def jwks(self) -> dict[str, Any]:
        keys = [
            key.as_dict(private=False, alg="ES256", use="sig") for key in self._current().published
        ]
        return {"keys": keys}

    def public_keyset(self) -> KeySet:
        return KeySet.import_key_set(self.jwks())  # type: ignore[arg-type]


def init_app(app: Flask) -> None:
    directory = os.path.abspath(app.config["KEYS_DIR"])
    store = KeyStore(directory)
    if store.ensure():
        app.logger.info("created a first signing key in %s", directory)
    app.extensions["idserver.keys"] = store


def key_store() -> KeyStore:
    return current_app.extensions["idserver.keys"]
