"""``python -m demo_portal --check``: the whole demo from a fresh directory, twice.

Real processes on free ports: ``idserver serve`` and two gunicorns, driven by the scripted
walk-through with soft phones. The second run must find and keep the first run's data.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_SECONDS = 240


def _free_ports(count: int) -> list[int]:
    try:
        with ExitStack() as stack:
            sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
            for sock in sockets:
                sock.bind(("127.0.0.1", 0))
            return [sock.getsockname()[1] for sock in sockets]
    except OSError as exc:
        pytest.skip(f"cannot bind local ports for the demo's servers: {exc}")


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _run_check(directory: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "demo_portal", "--check"],
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
        pytest.fail(f"the walk-through took longer than {RUN_TIMEOUT_SECONDS}s:\n{output}")
    return subprocess.CompletedProcess(process.args, process.returncode, output, None)


def test_check_runs_the_walkthrough_and_keeps_data_between_runs(tmp_path):
    ports = _free_ports(3)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("IDSERVER_", "PORTAL_"))
    }
    env.update(
        DEMO_IDP_PORT=str(ports[0]),
        DEMO_PARKING_PORT=str(ports[1]),
        DEMO_JOBS_PORT=str(ports[2]),
        PYTHONPATH=os.pathsep.join(p for p in (str(REPOSITORY), env.get("PYTHONPATH")) if p),
    )

    first = _run_check(tmp_path, env)
    assert first.returncode == 0, first.stdout
    assert "Walk-through passed" in first.stdout
    assert "the portals know Erika by different subs" in first.stdout
    clients_file = tmp_path / "instance" / "demo-clients.json"
    assert stat.S_IMODE(clients_file.stat().st_mode) == 0o600
    clients = json.loads(clients_file.read_text())
    assert set(clients) == {"parking", "jobs"}
    assert (tmp_path / "instance" / "idserver.sqlite3").exists()
    database = sqlite3.connect(tmp_path / "instance" / "idserver.sqlite3")
    try:  # the demo's keys live in its database, sealed under a KEK derived from its secret
        purposes = {row[0] for row in database.execute("SELECT purpose FROM signing_keys")}
    finally:
        database.close()
    assert purposes == {"id_token", "audit"}
    assert (
        stat.S_IMODE((tmp_path / "instance" / "parking" / "permit-signing-key.json").stat().st_mode)
        == 0o600
    )
    assert all(_port_is_free(port) for port in ports), "a server outlived the demo"

    second = _run_check(tmp_path, env)
    assert second.returncode == 0, second.stdout
    assert json.loads(clients_file.read_text()) == clients
    subs = [line for line in first.stdout.splitlines() if "different subs" in line]
    assert subs and subs[0] in second.stdout  # same residents, same pairwise subs


def test_check_fails_cleanly_when_a_port_is_taken(tmp_path):
    ports = _free_ports(3)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IDSERVER_", "PORTAL_"))}
    env.update(
        DEMO_IDP_PORT=str(ports[0]),
        DEMO_PARKING_PORT=str(ports[1]),
        DEMO_JOBS_PORT=str(ports[2]),
        PYTHONPATH=os.pathsep.join(p for p in (str(REPOSITORY), env.get("PYTHONPATH")) if p),
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports[1]))
        taken.listen()
        result = _run_check(tmp_path, env)
    assert result.returncode == 1
    assert f"port {ports[1]} is in use" in result.stdout and "DEMO_PARKING_PORT" in result.stdout
