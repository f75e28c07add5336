"""A relying party's back-channel logout endpoint, really listening on a loopback port (an OIDC
RP's form POSTs, or a SAML SP's SOAP binding with ``answer``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs


@dataclass
class LogoutReceiver:
    """Records every POST; answers with ``statuses`` in turn (then 200), with the body that
    ``answer`` makes of the request's body (a SOAP endpoint), else none."""

    uri: str = ""
    received: list[dict[str, list[str]]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    answer: Callable[[bytes], bytes] | None = None

    @property
    def logout_tokens(self) -> list[str]:
        return [form["logout_token"][0] for form in self.received]


@contextmanager
def logout_receiver(path: str = "/backchannel-logout") -> Iterator[LogoutReceiver]:
    receiver = LogoutReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 -- http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            receiver.bodies.append(body)
            receiver.received.append(parse_qs(body.decode()))
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            answer = receiver.answer(body) if receiver.answer and status == 200 else b""
            self.send_response(status)
            if answer:
                self.send_header("Content-Type", "text/xml; charset=utf-8")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

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
