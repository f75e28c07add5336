"""Bürger-ID as in production: ``idserver serve`` (gunicorn or granian) in its own process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import IO
from typing import Any

from .agent import UserAgent
from .procstat import children_of
from .seed import UNREACHED_LIMITS

__all__ = ["Server", "free_port", "start_server"]

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    env: dict[str, str]
    log_path: Path
    workers: int
    threads: int | None
    name: str = "gunicorn"
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def issuer(self) -> str:
        return self.env["IDSERVER_ISSUER"]

    @property
    def master_pid(self) -> int:
        return self.process.pid

    def worker_pids(self) -> list[int]:
        return children_of(self.process.pid)

    def pids(self) -> list[int]:
        """The master and its workers (and anything they started): whose CPU and memory count
        as the server's."""
        found = [self.process.pid]
        for pid in found:
            found.extend(children_of(pid))
        return found

    def agent(self, **kwargs: Any) -> UserAgent:
        return UserAgent("127.0.0.1", self.port, **kwargs)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self._log is not None:
            self._log.close()

    def errors_in_log(self) -> list[str]:
        """Tracebacks and 5xx lines in the server's log, for the report."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [line for line in lines if "Traceback" in line or '" 50' in line or "ERROR" in line]


def start_server(
    *,
    database_url: str,
    keys_dir: Path,
    secret_key: str,
    workdir: Path,
    port: int | None = None,
    workers: int = 2,
    threads: int | None = None,
    server_name: str = "gunicorn",
    extra_env: dict[str, str] | None = None,
    startup_timeout: float = 60.0,
) -> Server:
    """Run ``idserver serve --host 127.0.0.1 --port P --workers N --server S`` and wait until it
    answers."""
    port = port or free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("IDSERVER_")},
        "IDSERVER_ISSUER": f"http://localhost:{port}",
        "IDSERVER_DATABASE_URL": database_url,
        "IDSERVER_KEYS_DIR": str(keys_dir),
        "IDSERVER_SECRET_KEY": secret_key,
        "IDSERVER_LOG_LEVEL": "WARNING",
        **{f"IDSERVER_{name}": value for name, value in UNREACHED_LIMITS.items()},
        **(extra_env or {}),
    }
    command = [
        str(BIN / "idserver"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--server",
        server_name,
    ]
    if threads is not None:
        command += ["--threads", str(threads)]
    log_path = workdir / f"server-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 -- closed in Server.stop
    process = subprocess.Popen(  # noqa: S603 -- our own console script, fixed arguments
        command, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT
    )
    server = Server(process, port, env, log_path, workers, threads, server_name, log)
    deadline = time.monotonic() + startup_timeout
    probe = server.agent(timeout=2)
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"idserver serve exited:\n{log_path.read_text()[-3000:]}")
        try:
            if probe.get("/.well-known/openid-configuration").status == 200 and (
                len(server.worker_pids()) >= workers
            ):
                break
        except OSError:
            probe.close()
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"idserver serve did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    probe.close()
    return server
