"""Where the local demo lives: its working folder and the four ports (no Bürger-ID code here).

Shared by the operator set-up (``setup_idp``), the process supervisor (``launcher``) and the
scripted walk-through (``walkthrough``), so none of them needs to import another.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_PORTS", "PORT_VARIABLES", "DemoError", "DemoSettings", "Letter", "free_ports"]

PORT_VARIABLES = {
    "idp": "DEMO_IDP_PORT",
    "parking": "DEMO_PARKING_PORT",
    "jobs": "DEMO_JOBS_PORT",
    "dogtax": "DEMO_DOGTAX_PORT",
}
DEFAULT_PORTS = {"idp": 5000, "parking": 5001, "jobs": 5002, "dogtax": 5003}


class DemoError(RuntimeError):
    """The demo cannot start; the message says why and what to do."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports nobody listens on right now (the kernel picks them)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


@dataclass(frozen=True)
class DemoSettings:
    root: Path
    ports: Mapping[str, int]
    # A scratch demo keeps everything under ``root`` whatever the environment names.
    isolated: bool = False

    @classmethod
    def from_environ(cls, root: Path, environ: Mapping[str, str] | None = None) -> DemoSettings:
        environ = os.environ if environ is None else environ
        ports = {}
        for name, variable in PORT_VARIABLES.items():
            raw = environ.get(variable, str(DEFAULT_PORTS[name]))
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise DemoError(f"{variable} must be a port number, not {raw!r}")
            ports[name] = int(raw)
        if len(set(ports.values())) != len(ports):
            raise DemoError(f"{', '.join(PORT_VARIABLES.values())} must differ")
        return cls(root=root.resolve(), ports=ports)

    @classmethod
    def scratch(cls, root: Path) -> DemoSettings:
        """A throw-away demo in ``root`` on free ports, touching nothing of a running demo."""
        ports = free_ports(len(DEFAULT_PORTS))
        return cls(
            root=root.resolve(), ports=dict(zip(DEFAULT_PORTS, ports, strict=True)), isolated=True
        )

    @property
    def issuer(self) -> str:
        # A host name, not 127.0.0.1: WebAuthn does not accept IP addresses as RP ID.
        return f"http://localhost:{self.ports['idp']}"

    def portal_url(self, kind: str) -> str:
        return f"http://localhost:{self.ports[kind]}"

    @property
    def instance(self) -> Path:
        return self.root / "instance"

    @property
    def logs(self) -> Path:
        return self.instance / "logs"

    @property
    def clients_file(self) -> Path:
        return self.instance / "demo-clients.json"


@dataclass(frozen=True)
class Letter:
    """An activation letter, as the citizens' office would post it."""

    key: str
    name: str
    address: str
    note: str
    activation_url: str
    code: str
    expires_at: str
    link: str  # the letter's QR code: the activation URL with the code in its fragment
