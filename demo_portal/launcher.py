"""``python -m demo_portal``: Bürger-ID and the three portals on localhost, ready to try.

Process supervision only; what is done *at* Bürger-ID lives in ``setup_idp`` (operator set-up).

1. prepare: ``setup_idp.prepare`` (schema, clients, demo residents, fresh activation codes),
   then each portal's tables and keys; the SAML portal's metadata is written to
   ``instance/dogtax/saml/metadata.xml`` and registered with ``idserver saml-sp add``;
2. start ``idserver serve`` and one gunicorn per portal as child processes (logs in
   ``instance/logs/``), and wait until all of them answer;
3. print the URLs, the activation letters and the soft-phone commands;
4. on Ctrl-C or SIGTERM terminate the children and wait for them.

The demo lives under the working directory (``instance/`` and ``keys/``, as for ``idserver``
itself). ``--check`` instead builds a throw-away demo in a temporary folder on free ports,
runs the scripted walk-through against it and removes it: a demo already running beside it
keeps its database, clients and ports untouched.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import TextIO

import requests

from .app import create_portal
from .config import NO_XMLSEC
from .config import SAML_KINDS
from .config import prefix
from .config import started_kinds
from .db import db as portal_db
from .demo_settings import PORT_VARIABLES
from .demo_settings import DemoError
from .demo_settings import DemoSettings
from .demo_settings import Letter
from .setup_idp import IdpSettingsRefused
from .setup_idp import check_idp_settings
from .setup_idp import idp_environment
from .setup_idp import idp_serve_command
from .setup_idp import prepare
from .setup_idp import register_saml_portal
from .walkthrough import run_walkthrough

__all__ = ["run"]

BIN = Path(sys.executable).parent
PACKAGE_PARENT = Path(__file__).resolve().parents[1]
START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 10


def prepare_portals(settings: DemoSettings, clients: dict[str, dict[str, str]]) -> None:
    """Create each portal once here, so its tables and keys exist before workers start; the
    SAML portal's metadata (with its new key's certificate) is registered at Bürger-ID."""
    for kind in started_kinds():
        app = create_portal(kind, portal_config(settings, kind, clients.get(kind)))
        with app.app_context():
            portal_db.engine.dispose()
        if kind in SAML_KINDS:
            metadata = app.test_client().get("/saml/metadata")
            if metadata.status_code != 200:
                raise DemoError(f"{kind} published no SAML metadata")
            metadata_file = Path(app.instance_path) / "saml" / "metadata.xml"
            metadata_file.write_bytes(metadata.get_data())
            register_saml_portal(settings, kind, metadata_file)


def portal_config(
    settings: DemoSettings, kind: str, client: dict[str, str] | None
) -> dict[str, str]:
    config = {
        "ISSUER": settings.issuer,
        "BASE_URL": settings.portal_url(kind),
        "INSTANCE_PATH": str(settings.instance / kind),
    }
    if client is not None:  # an OpenID Connect portal; the SAML one has its metadata instead
        config.update(CLIENT_ID=client["client_id"], CLIENT_SECRET=client["client_secret"])
    if settings.isolated:  # database and cookie key in the scratch folder, whatever PORTAL_* say
        config.update(DATABASE_URL="", SECRET_KEY="")
    return config


# -- running ---------------------------------------------------------------------------------
@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    ready_url: str


def check_ports_free(settings: DemoSettings) -> None:
    for name, port in settings.ports.items():
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError as exc:
                raise DemoError(
                    f"port {port} is in use; choose another with {PORT_VARIABLES[name]}=…"
                ) from exc


def _spawn(
    name: str, command: list[str], env: dict[str, str], settings: DemoSettings
) -> tuple[subprocess.Popen[bytes], Path]:
    settings.logs.mkdir(parents=True, exist_ok=True)
    log = settings.logs / f"{name}.log"
    with log.open("ab") as handle:
        process = subprocess.Popen(  # noqa: S603 -- our own programs, fixed arguments
            command,
            cwd=settings.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
        )
    return process, log


def _gunicorn_command(settings: DemoSettings, kind: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{settings.ports[kind]}",
        "--workers",
        "1",
        "--worker-class",
        "gthread",
        "--threads",
        "8",
        "--graceful-timeout",
        "5",
        "--access-logfile",
        "-",
        f"demo_portal.app:create_portal({kind!r})",
    ]


def start(settings: DemoSettings, clients: dict[str, dict[str, str]]) -> list[Child]:
    """Start Bürger-ID and the portals; returns once all of them answer."""
    check_ports_free(settings)
    children: list[Child] = []
    try:
        process, log = _spawn(
            "idserver", idp_serve_command(settings), idp_environment(settings), settings
        )
        discovery = f"{settings.issuer}/.well-known/openid-configuration"
        children.append(Child("idserver", process, log, discovery))
        for kind in started_kinds():
            config = portal_config(settings, kind, clients.get(kind))
            env = {
                **os.environ,
                **{prefix(kind) + name: value for name, value in config.items()},
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(PACKAGE_PARENT), os.environ.get("PYTHONPATH")) if p
                ),
            }
            process, log = _spawn(kind, _gunicorn_command(settings, kind), env, settings)
            children.append(Child(kind, process, log, f"{settings.portal_url(kind)}/"))
        wait_until_ready(children)
    except BaseException:
        stop(children)
        raise
    return children


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def wait_until_ready(children: list[Child], timeout: float = START_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    for child in children:
        while True:
            if child.process.poll() is not None:
                raise DemoError(f"{child.name} exited during start:\n{_log_tail(child.log)}")
            try:
                if requests.get(child.ready_url, timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise DemoError(f"{child.name} did not answer in time:\n{_log_tail(child.log)}")
            time.sleep(0.2)


def stop(children: list[Child]) -> None:
    """SIGTERM to each child (gunicorn shuts down gracefully), then wait; kill stragglers."""
    for child in children:
        if child.process.poll() is None:
            child.process.terminate()
    for child in children:
        try:
            child.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()


class Stopped(Exception):
    """SIGTERM or SIGINT arrived."""


def _raise_stopped(signum: int, _frame: Any) -> None:
    raise Stopped(signal.Signals(signum).name)


# -- telling the user ------------------------------------------------------------------------
def _shown_path(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def print_instructions(settings: DemoSettings, letters: list[Letter], out: TextIO) -> None:
    phone = _shown_path(BIN / "idserver-phone", settings.root)
    lines = [
        "",
        "Bürger-ID demo is running. Press Ctrl-C to stop.",
        "",
        f"  Bürger-ID (identity provider)      {settings.issuer}",
        f"  Bewohnerparkausweis (parking)      {settings.portal_url('parking')}",
        f"  Bewerberportal (jobs)              {settings.portal_url('jobs')}",
        *(
            [f"  Hundesteuer-Anmeldung (SAML)       {settings.portal_url('dogtax')}"]
            if "dogtax" in started_kinds()
            else [f"  ({NO_XMLSEC})"]
        ),
        "",
        "Demo residents, each with a fresh activation code:",
    ]
    for letter in letters:
        lines += [
            "",
            f"  {letter.name}, {letter.address} — {letter.note}",
            f"    activation URL: {letter.activation_url}",
            f"    code:           {letter.code}   (valid until {letter.expires_at})",
            f"    QR-code link:   {letter.link}",
            "    enrol a soft phone (once per key file) with the QR-code link:",
            f"      {phone} --key-file .phone/{letter.key}.json enrol {shlex.quote(letter.link)}",
        ]
    lines += [
        "",
        "To sign in: open a portal and choose “Mit Bürger-ID anmelden”. On the QR-code page open",
        "“Can't scan the code?”, copy the phone URL and type the two-digit number shown there:",
        f"  {phone} --key-file .phone/erika.json approve '<phone URL>' --number NN",
        "(The demo accepts a copied phone URL for 60 s; in production a QR frame is stale after",
        " 5 s, see IDSERVER_QR_MAX_AGE_SECONDS.)",
        "",
        f"Logs: {_shown_path(settings.logs, settings.root)}/ · "
        f"client secrets: {_shown_path(settings.clients_file, settings.root)}",
        "",
    ]
    out.write("\n".join(lines) + "\n")
    out.flush()


def _serve(settings: DemoSettings, children: list[Child], out: TextIO, *, check: bool) -> int:
    """Prepare and start everything into ``children``; then the walk-through or wait."""
    check_idp_settings(settings)
    check_ports_free(settings)  # before any work, so a clash is reported at once
    out.write("Preparing Bürger-ID and the portals …\n")
    if set(SAML_KINDS) - set(started_kinds()):
        out.write(NO_XMLSEC + "\n")
    out.flush()
    preparation = prepare(settings)
    prepare_portals(settings, preparation.clients)
    children.extend(start(settings, preparation.clients))
    if check:
        return 0 if run_walkthrough(settings, preparation.letters, out=out) else 1
    print_instructions(settings, preparation.letters, out)
    while True:
        for child in children:
            if child.process.poll() is not None:
                out.write(f"{child.name} stopped unexpectedly:\n{_log_tail(child.log)}\n")
                return 1
        time.sleep(0.5)


def run(root: Path, *, check: bool = False, out: TextIO = sys.stdout) -> int:
    """The demo (until Ctrl-C), or with ``check`` the walk-through on a scratch demo; status."""
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in (signal.SIGINT, signal.SIGTERM)}
    children: list[Child] = []
    scratch = tempfile.TemporaryDirectory(prefix="demo-check-") if check else None
    try:
        if scratch is not None:
            settings = DemoSettings.scratch(Path(scratch.name))
        else:
            settings = DemoSettings.from_environ(root)
        return _serve(settings, children, out, check=check)
    except IdpSettingsRefused as exc:  # as `idserver` does: one line per problem, exit status 2
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except DemoError as exc:
        out.write(f"error: {exc}\n")
        return 1
    except Stopped:
        out.write("\nStopping …\n")
        return 0
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        stop(children)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if children:
            out.write("Bürger-ID and the portals have stopped.\n")
        out.flush()
        if scratch is not None:
            scratch.cleanup()
