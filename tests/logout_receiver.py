"""A relying party's back-channel logout endpoint, really listening on a loopback port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs


@dataclass
class LogoutReceiver:
    """Records every POST; answers with ``statuses`` in turn (then 200)."""

    uri: str = ""
    received: list[dict[str, list[str]]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    @property
    def logout_tokens(self) -> list[str]:
        return [form["logout_token"][0] for form in self.received]


@contextmanager
def logout_receiver(path: str = "/backchannel-logout") -> Iterator[LogoutReceiver]:
    receiver = LogoutReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 -- http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            receiver.received.append(parse_qs(self.rfile.read(length).decode()))
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.uri = f"http://127.0.0.1:{server.server_address[1]}{path}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
