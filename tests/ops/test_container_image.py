"""The Containerfile builds an image that serves Bürger-ID as its non-root user.

No container daemon or registry here: podman builds (``--isolation=chroot``) on a Debian
bookworm base made with debootstrap from the configured Debian mirror (cached under
``~/.cache/idserver-ci/`` for a week), and the built file system runs under ``chroot`` as the
image's user against the test PostgreSQL, configured the way compose.yaml configures it.
Select with ``-m container``; it needs root, podman, debootstrap and IDSERVER_TEST_DATABASE_URL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from harness import postgres_schema

from idserver.keys.sealing import new_kek

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv")
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "idserver-ci"
# Left out of the base like the official Debian images leave them out: apt's downloads and lists.
BASE_EXCLUDES = ("./var/cache/apt/archives/*.deb", "./var/cache/apt/*.bin", "./var/lib/apt/lists/*")


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (podman import/mount and chroot)"
    for tool in ("podman", "debootstrap"):
        if shutil.which(tool) is None:
            return f"needs {tool} (apt-get install podman debootstrap; .ci/run installs them)"
    if not os.environ.get("IDSERVER_TEST_DATABASE_URL"):
        return "needs IDSERVER_TEST_DATABASE_URL (the image runs against PostgreSQL)"
    return None


def _run(*args: str, timeout: float = 120, **kwargs: Any) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout.strip()


def debian_mirror() -> str:
    """The Debian mirror apt is configured with (deb822 .sources or one-line sources.list)."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        for stanza in path.read_text().split("\n\n"):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.+)$", stanza, re.M))
            if SUITE in fields.get("Suites", "").split() and "deb" in fields.get("Types", ""):
                return fields["URIs"].split()[0]
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.list")]:
        if path.exists():
            for match in re.finditer(
                rf"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{SUITE}\s", path.read_text(), re.M
            ):
                return match.group(1)
    return "http://deb.debian.org/debian"


def debian_base(mirror: str) -> str:
    """A podman image of Debian with python3 from debootstrap; the tarball is cached per week."""
    year, week, _ = dt.date.today().isocalendar()
    recipe = json.dumps([SUITE, mirror, PACKAGES, BASE_EXCLUDES, f"{year}-W{week:02d}"])
    key = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    image = f"localhost/idserver-ci-base:{key}"
    tarball = CACHE / f"debian-{SUITE}-{key}.tar"
    if not tarball.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tree = CACHE / f"tree-{key}"
        shutil.rmtree(tree, ignore_errors=True)
        _run(
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(tree),
            mirror,
            timeout=900,
        )
        partial = tarball.with_suffix(".partial")
        excludes = [f"--exclude={pattern}" for pattern in BASE_EXCLUDES]
        _run("tar", "-C", str(tree), *excludes, "--numeric-owner", "-cf", str(partial), ".")
        partial.rename(tarball)
        shutil.rmtree(tree)
        for old in CACHE.glob(f"debian-{SUITE}-*.tar"):
            if old != tarball:
                old.unlink()
    if subprocess.run(["podman", "image", "exists", image]).returncode != 0:
        _run("podman", "import", "--quiet", str(tarball), image, timeout=300)
    return image


def pip_build_args() -> list[str]:
    """This machine's pip index and CA bundle for pip in the build (the proxy variables podman
    passes on by itself); ``file:`` indexes cannot be seen there."""
    config = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    ).stdout
    found = dict(re.findall(r"^[\w:.]*?\.?([\w-]+)='(.*)'$", config, re.M))
    args = []
    for option, variable in (
        ("index-url", "PIP_INDEX_URL"),
        ("extra-index-url", "PIP_EXTRA_INDEX_URL"),
        ("trusted-host", "PIP_TRUSTED_HOST"),
    ):
        value = os.environ.get(variable) or found.get(option, "")
        usable = [item for item in value.split() if not item.startswith("file:")]
        if usable:
            args += ["--build-arg", f"{variable}={' '.join(usable)}"]
    cert = os.environ.get("PIP_CERT") or found.get("cert")
    if cert and Path(cert).is_file():
        args += ["--secret", f"id=pip_cert,src={cert}"]
    return args


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def image() -> Iterator[dict[str, Any]]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    started = time.monotonic()
    base = debian_base(debian_mirror())
    print(f"\nbase image {base} ready after {time.monotonic() - started:.0f} s")
    build = [
        "podman",
        "build",
        "--isolation=chroot",
        "--network=host",
        "--format=docker",  # keeps HEALTHCHECK, which the OCI format has no field for
        "--build-arg",
        f"BASE_IMAGE={base}",
        *pip_build_args(),
        "--file",
        str(ROOT / "Containerfile"),
    ]
    dependencies = dependencies_tag(base)
    _run(*build, "--target=dependencies", "--tag", dependencies, str(ROOT), timeout=900)
    tag = f"localhost/idserver-test:{secrets.token_hex(4)}"
    _run(*build, "--tag", tag, str(ROOT), timeout=900)
    try:
        inspected = json.loads(_run("podman", "image", "inspect", tag))[0]
        size = inspected["Size"] / 1e6
        print(f"image {tag}: {size:.0f} MB, built after {time.monotonic() - started:.0f} s")
        yield inspected
    finally:
        _run("podman", "rmi", "--force", tag)
        remove_build_leftovers(dependencies)


def dependencies_tag(base: str) -> str:
    """A name for the dependencies stage, so its layers survive as the cache of the next build."""
    recipe = [base, (ROOT / "Containerfile").read_text(), (ROOT / "pyproject.toml").read_text()]
    return f"localhost/idserver-ci-deps:{hashlib.sha256(repr(recipe).encode()).hexdigest()[:12]}"


def remove_build_leftovers(dependencies: str) -> None:
    """Remove the untagged layers built on top of the dependencies stage (the code of this run)
    and dependency stages of earlier recipes; newest first, children before their parents."""
    images = json.loads(_run("podman", "images", "--all", "--format", "json"))
    parent = {image["Id"]: image.get("ParentId", "") for image in images}
    keep = json.loads(_run("podman", "image", "inspect", dependencies))[0]["Id"]

    def on_top_of_ours(image_id: str) -> bool:
        while image_id := parent.get(image_id, ""):
            if image_id == keep:
                return True
        return False

    stale = [
        image
        for image in images
        if (not image.get("Names") and on_top_of_ours(image["Id"]))
        or any(
            name.startswith("localhost/idserver-ci-deps:") and name != dependencies
            for name in image.get("Names") or ()
        )
    ]
    for image in sorted(stale, key=lambda image: image["Created"], reverse=True):
        subprocess.run(["podman", "rmi", image["Id"]], capture_output=True)


@pytest.fixture
def mounted(image: dict[str, Any]) -> Iterator[Path]:
    container = _run("podman", "create", image["Id"])
    try:
        yield Path(_run("podman", "mount", container))
    finally:
        subprocess.run(["podman", "umount", container], capture_output=True)
        _run("podman", "rm", "--force", container)


def test_image_runs_as_its_own_user_with_a_readiness_healthcheck(image):
    config = image["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["idserver-entrypoint"]
    assert config["Cmd"] == ["serve"]
    assert "/readyz" in " ".join(_healthcheck(image))
    assert "8000/tcp" in config["ExposedPorts"]


def test_image_holds_the_venv_and_no_build_leftovers(mounted):
    venv = mounted / "opt/idserver"
    assert (venv / "bin/idserver").exists()
    assert not (venv / "bin/pip").exists()
    assert not (mounted / "src").exists()
    site = next(venv.glob("lib/python3*/site-packages"))
    assert (site / "idserver/migrations/env.py").exists()
    assert (site / "psycopg").is_dir()
    assert not list(site.glob("idserver/**/*.pem"))
    owner = (mounted / "var/lib/idserver").stat()
    assert (owner.st_uid, owner.st_gid, owner.st_mode & 0o777) == (10001, 10001, 0o700)


def _healthcheck(image: dict[str, Any]) -> list[str]:
    """The HEALTHCHECK command (podman shows it beside the config, Docker inside it)."""
    return (image.get("Healthcheck") or image["Config"]["Healthcheck"])["Test"]


def _in_image(root: Path, workdir: str, uid: int, gid: int) -> Any:
    def enter() -> None:
        os.chroot(root)
        os.chdir(workdir)
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    return enter


def test_image_serves_openid_configuration_against_postgresql(image, mounted, tmp_path):
    config = image["Config"]
    uid, gid = (int(part) for part in config["User"].split(":"))
    port = _free_port()
    issuer = f"http://127.0.0.1:{port}"
    secrets_dir = mounted / "run/secrets"
    secrets_dir.mkdir(parents=True, exist_ok=True)
    log_path = tmp_path / "server.log"
    with postgres_schema() as database_url:
        for name, value in (
            ("database_url", database_url),
            ("secret_key", secrets.token_urlsafe(48)),
            ("key_encryption_key", new_kek()),
        ):
            (secrets_dir / name).write_text(value + "\n")
            os.chown(secrets_dir / name, uid, gid)
            (secrets_dir / name).chmod(0o400)
        env = dict(item.split("=", 1) for item in config["Env"])
        env.update(
            HOST="127.0.0.1",
            PORT=str(port),
            IDSERVER_ENV="production",
            IDSERVER_ISSUER=issuer,
            IDSERVER_TRUST_PROXY="true",
            IDSERVER_DATABASE_URL_FILE="/run/secrets/database_url",
            IDSERVER_SECRET_KEY_FILE="/run/secrets/secret_key",
            IDSERVER_KEY_ENCRYPTION_KEY_FILE="/run/secrets/key_encryption_key",
        )
        enter = _in_image(mounted, config["WorkingDir"], uid, gid)
        with log_path.open("wb") as log:
            server = subprocess.Popen(
                [*config["Entrypoint"], *config["Cmd"], "--workers", "1", "--threads", "8"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=enter,  # chroot, then drop to the image's user
            )
        try:
            started = time.monotonic()
            ready = _await_ready(issuer, server, log_path)
            print(f"ready {time.monotonic() - started:.1f} s after start")
            assert ready.json()["checks"]["migrations"] == "ok"
            assert _uid_of(server.pid) == uid

            discovery = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=5)
            assert discovery.status_code == 200
            assert discovery.json()["issuer"] == issuer
            assert requests.get(discovery.json()["jwks_uri"], timeout=5).json()["keys"]
            # the keys live in the database, sealed under the KEK: nothing in the volume
            assert not list((mounted / "var/lib/idserver/keys").glob("*.pem"))

            healthcheck = _healthcheck(image)
            assert healthcheck[0] == "CMD"
            checked = subprocess.run(
                healthcheck[1:], env=env, preexec_fn=enter, capture_output=True, timeout=30
            )
            assert checked.returncode == 0, checked.stderr
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    assert server.returncode == 0, log_path.read_text(errors="replace")


@pytest.mark.parametrize(
    ("settings", "exit_code"),
    [
        ({"IDSERVER_SECRET_KEY": "x" * 40, "IDSERVER_SECRET_KEY_FILE": "/etc/hostname"}, 64),
        ({"IDSERVER_SECRET_KEY_FILE": "/run/secrets/missing"}, 66),
    ],
    ids=["both-value-and-file", "missing-file"],
)
def test_entrypoint_refuses_unusable_secret_files(image, mounted, settings, exit_code):
    config = image["Config"]
    uid, gid = (int(part) for part in config["User"].split(":"))
    env = dict(item.split("=", 1) for item in config["Env"]) | settings
    refused = subprocess.run(
        [*config["Entrypoint"], "serve"],
        env=env,
        preexec_fn=_in_image(mounted, config["WorkingDir"], uid, gid),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == exit_code
    assert "IDSERVER_SECRET_KEY" in refused.stderr
    assert "x" * 40 not in refused.stderr


def _await_ready(issuer: str, server: subprocess.Popen[bytes], log: Path) -> Any:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail("the image's server exited:\n" + log.read_text(errors="replace"))
        try:
            response = requests.get(f"{issuer}/readyz", timeout=2)
            if response.status_code == 200:
                return response
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    pytest.fail("no /readyz 200 within 90 s:\n" + log.read_text(errors="replace"))


def _uid_of(pid: int) -> int:
    """The real uid of ``pid`` (the entrypoint execs idserver, which is gunicorn's master)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]


def test_ignore_files_agree():
    """Docker reads .dockerignore, podman .containerignore first: they must say the same."""
    assert (ROOT / ".containerignore").read_text() == (ROOT / ".dockerignore").read_text()
