"""The production server for tests: ``idserver serve`` (gunicorn) on a free port of 127.0.0.1.

Tests that need real processes — several workers, a worker killed, logs as an operator reads
them — start the server here, the way an operator does, and talk to it over HTTP. Only
127.0.0.1 is ever used; every process started here is stopped when the test ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _json_command(program: str, env: dict[str, str], args: tuple[str, ...]) -> Any:
    result = subprocess.run(
        [BIN / program, *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def idserver_cli(env: dict[str, str], *args: str) -> Any:
    """Run ``idserver ARGS`` as an operator would; its JSON answer. Fails the test on an error."""
    return _json_command("idserver", env, args)


def phone_cli(env: dict[str, str], *args: str) -> Any:
    """Run the reference soft phone, ``idserver-phone ARGS``; its JSON answer."""
    return _json_command("idserver-phone", env, args)


def server_environment(
    tmp: Path,
    *,
    database_url: str | None = None,
    base: dict[str, str] | None = None,
    **settings: str,
) -> dict[str, str]:
    """The environment of a served IdP: a database, a keys folder and a secret of its own.

    ``base`` defaults to this process's environment; ``settings`` are further ``IDSERVER_*``
    values by name (``LOG_LEVEL="DEBUG"``). The issuer is set when the server starts.
    """
    return {
        **(os.environ if base is None else base),
        "IDSERVER_DATABASE_URL": database_url or f"sqlite:///{tmp}/served.sqlite3",
        "IDSERVER_KEYS_DIR": str(tmp / "keys"),
        "IDSERVER_SECRET_KEY": secrets.token_urlsafe(32),
        **{f"IDSERVER_{name}": value for name, value in settings.items()},
    }


@dataclass
class Served:
    """One running ``idserver serve``: where it answers, how it was started, what it logged."""

    issuer: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def answers(self, path: str = "/healthz") -> bool:
        try:
            return requests.get(self.issuer + path, timeout=2).ok
        except requests.RequestException:
            return False

    def wait_until_ready(self, *, seconds: float = 60, path: str = "/healthz") -> None:
        deadline = time.monotonic() + seconds
        while not self.answers(path):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(
                    f"idserver serve at {self.issuer} did not come up "
                    f"(exit {self.process.poll()}):\n{self.log_text()[-4000:]}"
                )
            time.sleep(0.2)

    def stop(self, stop_signal: int = signal.SIGTERM) -> None:
        """Ask gunicorn to stop (SIGTERM graceful, SIGINT quick); kill it if it does not."""
        if self.process.poll() is None:
            self.process.send_signal(stop_signal)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_idserver(
    env: dict[str, str],
    tmp: Path,
    *,
    workers: int = 1,
    threads: int | None = None,
    options: Sequence[str] = (),
) -> Served:
    """Start ``idserver serve`` with ``env`` on a free port; returns at once (not yet ready)."""
    port = free_port()
    issuer = f"http://localhost:{port}"
    log = tmp / f"serve-{port}.log"
    command = [BIN / "idserver", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers), *(["--threads", str(threads)] if threads else [])]
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, *options],
            env={**env, "IDSERVER_ISSUER": issuer},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return Served(issuer, {**env, "IDSERVER_ISSUER": issuer}, process, log)


@contextlib.contextmanager
def served_idserver(
    env: dict[str, str],
    tmp: Path,
    *,
    workers: int = 1,
    threads: int | None = None,
    options: Sequence[str] = (),
    stop_signal: int = signal.SIGTERM,
) -> Iterator[Served]:
    """``idserver serve`` ready to answer for the ``with`` block, stopped after it."""
    served = start_idserver(env, tmp, workers=workers, threads=threads, options=options)
    try:
        served.wait_until_ready()
        yield served
    finally:
        served.stop(stop_signal)


class LiveServer:
    """A WSGI app on a free loopback port; the port is known before the app is built."""

    def __init__(self) -> None:
        self.app: Flask | None = None
        self._server = make_server("127.0.0.1", 0, self._dispatch, threaded=True)
        self.url = f"http://localhost:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _dispatch(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.app is not None
        return self.app(environ, start_response)

    def start(self, app: Flask) -> None:
        self.app = app
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=10)
        self._server.server_close()
