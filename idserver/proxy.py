"""Who is calling: the client's address, and the one proxy hop trusted to tell it.

With ``IDSERVER_TRUST_PROXY`` the address comes from the last ``X-Forwarded-For`` hop and the
scheme from ``X-Forwarded-Proto`` (Werkzeug's ProxyFix); otherwise from the connection. The
address keys rate limits (``limits``) and tells phone and computer apart (``crosslogin``).
"""

from __future__ import annotations

from flask import Flask
from flask import request
from werkzeug.middleware.proxy_fix import ProxyFix

__all__ = ["client_address", "init_app"]


def client_address() -> str:
    """The caller's address (behind a trusted proxy, ProxyFix has already set it)."""
    return (request.remote_addr or "unknown")[:64]


def init_app(app: Flask) -> None:
    if app.config["TRUST_PROXY"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]
