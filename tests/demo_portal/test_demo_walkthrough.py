"""``python -m demo_portal`` and ``--check``: real processes on free ports.

The check builds its own throw-away demo (temporary folder, free ports) and runs the scripted
walk-through with soft phones there, so a demo running beside it keeps its database, its
client registrations and its ports. The operator set-up keeps its data between runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from demo_portal.demo_settings import DemoSettings
from demo_portal.demo_settings import free_ports
from demo_portal.setup_idp import DEMO_RESIDENTS
from demo_portal.setup_idp import idp_config
from demo_portal.setup_idp import prepare

REPOSITORY = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_SECONDS = 240
START_TIMEOUT_SECONDS = 90


def _ports(count: int) -> list[int]:
    try:
        return free_ports(count)
    except OSError as exc:
        pytest.skip(f"cannot bind local ports for the demo's servers: {exc}")


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _environment(ports: list[int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IDSERVER_", "PORTAL_"))}
    env.update(
        DEMO_IDP_PORT=str(ports[0]),
        DEMO_PARKING_PORT=str(ports[1]),
        DEMO_JOBS_PORT=str(ports[2]),
        DEMO_DOGTAX_PORT=str(ports[3]),
        PYTHONPATH=os.pathsep.join(p for p in (str(REPOSITORY), env.get("PYTHONPATH")) if p),
    )
    return env


def _run(directory: Path, env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess:
    process = subprocess.Popen(
        [sys.executable, "-m", "demo_portal", *arguments],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)  # the demo stops its servers on SIGTERM
        output, _ = process.communicate(timeout=30)
        pytest.fail(f"the demo took longer than {RUN_TIMEOUT_SECONDS}s:\n{output}")
    return subprocess.CompletedProcess(process.args, process.returncode, output, None)


def _fingerprint(directory: Path) -> dict[str, str]:
    """SHA-256 of every file the demo keeps (its logs aside, which only grow)."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and "logs" not in path.relative_to(directory).parts
    }


def test_check_runs_beside_a_running_demo_without_touching_it(tmp_path):
    ports = _ports(4)
    env = _environment(ports)
    demo = subprocess.Popen(
        [sys.executable, "-m", "demo_portal"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert demo.stdout is not None
        started = []
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        for line in demo.stdout:
            started.append(line)
            if "demo is running" in line or time.monotonic() > deadline:
                break
        assert "demo is running" in started[-1], "".join(started)
        clients = json.loads((tmp_path / "instance" / "demo-clients.json").read_text())
        before = _fingerprint(tmp_path)
        entries = set(tmp_path.iterdir())

        checked = _run(tmp_path, env, "--check")  # same folder, same DEMO_*_PORT variables

        assert checked.returncode == 0, checked.stdout
        assert "Walk-through passed" in checked.stdout
        assert "the portals know Erika by different subs" in checked.stdout
        assert _fingerprint(tmp_path) == before, "the check changed the running demo's files"
        assert set(tmp_path.iterdir()) == entries
        assert json.loads((tmp_path / "instance" / "demo-clients.json").read_text()) == clients
        for port in ports:  # the running demo still answers on its own ports
            assert requests.get(f"http://localhost:{port}/", timeout=10).status_code in (200, 404)
    finally:
        demo.send_signal(signal.SIGTERM)
        rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, rest
    assert "have stopped" in rest
    assert all(_port_is_free(port) for port in ports), "a server outlived the demo"


def test_operator_set_up_keeps_clients_and_residents_between_runs(tmp_path, monkeypatch):
    for name in [n for n in os.environ if n.startswith("IDSERVER_")]:
        monkeypatch.delenv(name)
    settings = DemoSettings(root=tmp_path, ports={"idp": 5900, "parking": 5901, "jobs": 5902})
    first = prepare(settings)
    second = prepare(settings)
    assert set(first.clients) == {"parking", "jobs"}
    assert second.clients == first.clients  # registered once, found again
    assert stat.S_IMODE(settings.clients_file.stat().st_mode) == 0o600
    assert [letter.name for letter in second.letters] == [letter.name for letter in first.letters]
    assert {letter.code for letter in first.letters}.isdisjoint(
        letter.code for letter in second.letters
    )  # each run posts fresh activation codes
    assert (tmp_path / "instance" / "idserver.sqlite3").exists()
    database = sqlite3.connect(tmp_path / "instance" / "idserver.sqlite3")
    try:  # the demo's keys live in its database, sealed under a KEK derived from its secret
        purposes = {row[0] for row in database.execute("SELECT purpose FROM signing_keys")}
    finally:
        database.close()
    assert purposes == {"id_token", "audit"}


def test_the_demo_office_is_in_its_residents_city(tmp_path, monkeypatch):
    """Letters and the clerk console carry the letterhead of the city the residents live in."""
    for name in [n for n in os.environ if n.startswith("IDSERVER_")]:
        monkeypatch.delenv(name)
    settings = DemoSettings(root=tmp_path, ports={"idp": 5900, "parking": 5901, "jobs": 5902})
    config = idp_config(settings)
    assert {resident["city"] for resident in DEMO_RESIDENTS} == {config["OFFICE_CITY"]}
    assert config["MUNICIPALITY_NAME"] == f"Stadt {config['OFFICE_CITY']}"
    monkeypatch.setenv("IDSERVER_MUNICIPALITY_NAME", "Stadt Beispielhausen")
    assert "MUNICIPALITY_NAME" not in idp_config(settings)  # the operator's own setting wins


def test_demo_fails_cleanly_when_a_port_is_taken(tmp_path):
    ports = _ports(4)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports[1]))
        taken.listen()
        result = _run(tmp_path, _environment(ports))
    assert result.returncode == 1
    assert f"port {ports[1]} is in use" in result.stdout and "DEMO_PARKING_PORT" in result.stdout


def test_check_passes_without_xmlsec1_and_says_the_saml_portal_is_left_out(tmp_path):
    """`make demo` needs only Python and make: where xmlsec1 is missing the OIDC portals run
    and the SAML portal is left out with one line saying how to get it."""
    env = _environment(_ports(4))
    env["PATH"] = str(Path(sys.executable).parent)  # the virtualenv's programs, no xmlsec1
    checked = _run(tmp_path, env, "--check")
    assert checked.returncode == 0, checked.stdout
    assert "xmlsec1 not found: the SAML portal (Hundesteuer-Anmeldung) is not started" in (
        checked.stdout
    )
    assert "Walk-through passed: all 10 steps." in checked.stdout
    assert "dog tax" not in checked.stdout
