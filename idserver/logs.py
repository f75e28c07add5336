"""Logs: one format for the application's messages and its access log, on standard error.

Every record is one line, JSON (``IDSERVER_LOG_FORMAT=json``, for a log collector) or text
(``text``, for a terminal), with the same fields:

``ts``
    ISO 8601 time in UTC, to the millisecond (``2026-12-01T09:30:00.123Z``)
``level``, ``logger``, ``message``
    as Python's ``logging`` has them; the access log is the logger ``idserver.access``
``request_id``
    inside a request: the caller's ``X-Request-ID`` if it is a sane token (at most 128 of
    ``A-Z a-z 0-9 . _ -``), else a new one; the response echoes it in ``X-Request-ID``
``exception``
    a traceback, if the record has one

and on the access log's one line per request (written here, at the end of the request, so a
held long poll counts in full; gunicorn's own access log is off):

``method``, ``route``, ``status``, ``duration_ms``
    ``route`` is the URL rule (``/activate/<activation_id>``), never the path with its ids
``client_id``
    the OAuth client, once the request has named a registered one
``query``
    only the parameters in ``LOGGED_QUERY_PARAMETERS`` keep their value; any other parameter
    (``id_token_hint``, ``code``, ``state``, a search for a name …) is withheld and marked "…"

Nothing secret or personal is written: no path with ids, no query value outside the
allow-list, no body, header or cookie; and the libraries whose debug output carries tokens or
database rows (Authlib, SQLAlchemy) or a letter's glyphs (fontTools) are held above DEBUG
(``HUSHED_LOGGERS``). Static files and the health probes are not in the access log.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import secrets
import sys
import time
from collections.abc import Iterable
from collections.abc import Iterator
from typing import Any
from typing import TextIO
from urllib.parse import urlencode

from flask import Flask
from flask import Response
from flask import g
from flask import has_request_context
from flask import request

__all__ = [
    "ACCESS_LOGGER",
    "configure_logging",
    "current_route",
    "granian_logconfig",
    "gunicorn_logconfig",
    "init_app",
    "note_client",
    "request_id",
]

ACCESS_LOGGER = "idserver.access"
REQUEST_ID_HEADER = "X-Request-ID"
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
# Query parameters whose value says what was asked without being a secret or a personal datum.
LOGGED_QUERY_PARAMETERS = frozenset(
    {
        "client_id",
        "response_type",
        "response_mode",
        "scope",
        "prompt",
        "display",
        "max_age",
        "acr_values",
        "ui_locales",
        "code_challenge_method",
        "lang",
        "seen",
    }
)
WITHHELD = "…"
UNLOGGED_ROUTES = frozenset({"/healthz", "/readyz"})
# Their DEBUG (or INFO) output carries tokens (Authlib: "Issue token {…}"), SQL parameters and
# result rows (SQLAlchemy) or the glyphs of an activation code (fontTools' subsetter).
HUSHED_LOGGERS = {
    "authlib": logging.INFO,
    "sqlalchemy": logging.WARNING,
    "fontTools": logging.WARNING,
}
# Fields a record may carry beside the standard ones, in the order they are written.
CONTEXT_FIELDS = ("request_id", "method", "route", "status", "duration_ms", "client_id", "query")
_TEXT_SHOWN_IN_MESSAGE = frozenset({"request_id", "method", "route", "status"})
_MAX_VALUE = 128


# -- formats ----------------------------------------------------------------------------------
def _timestamp(record: logging.LogRecord) -> str:
    moment = dt.datetime.fromtimestamp(record.created, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line (ASCII, so any terminal or collector can take it)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def _text_value(value: Any) -> str:
    text = str(value)
    if not text or any(ch.isspace() or ch == '"' or not ch.isprintable() for ch in text):
        return json.dumps(text)  # quoted and escaped: a value cannot forge a second line
    return text


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger [request id] message key=value …``, for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), f"{record.levelname:<7}", record.name]
        request_id = getattr(record, "request_id", None)
        if request_id:
            parts.append(f"[{request_id}]")
        parts.append(record.getMessage())
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if field not in _TEXT_SHOWN_IN_MESSAGE and value is not None:
                parts.append(f"{field}={_text_value(value)}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


FORMATTERS: dict[str, type[logging.Formatter]] = {"json": JsonFormatter, "text": TextFormatter}


class RequestContext(logging.Filter):
    """Give every record made while a request is handled that request's id."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None and has_request_context():
            record.request_id = request_id()
        return True


class LogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Our one handler: standard error as it is at the time of writing (tests swap it)."""

    def __init__(self, fmt: str = "text") -> None:
        super().__init__()
        self.setFormatter(FORMATTERS[fmt]())
        self.addFilter(RequestContext())

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


class _WithoutWerkzeugRequestLines(logging.Filter):
    """Werkzeug's development server logs each request with its full URL (query and all):
    the access log is ours alone."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.endswith('] "%s" %s %s'))


def configure_logging(*, fmt: str, level: str) -> None:
    """Route every logger through one ``LogHandler`` on the root logger (replacing ours only:
    a test's capturing handler stays), at ``level``, with the leaky libraries hushed."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, LogHandler):
            root.removeHandler(handler)
    root.addHandler(LogHandler(fmt))
    root.setLevel(level)
    for name, floor in HUSHED_LOGGERS.items():
        logging.getLogger(name).setLevel(max(floor, root.level))
    werkzeug = logging.getLogger("werkzeug")
    if not any(isinstance(f, _WithoutWerkzeugRequestLines) for f in werkzeug.filters):
        werkzeug.addFilter(_WithoutWerkzeugRequestLines())


def gunicorn_logconfig(*, fmt: str, level: str) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict``: its messages through our handler, its access log off."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": level, "handlers": ["idserver"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
        },
        "handlers": {"idserver": {"()": LogHandler, "fmt": fmt}},
    }


def granian_logconfig(*, fmt: str, level: str) -> dict[str, Any]:
    """granian's ``log_dictconfig``: its messages through our handler, its access log off."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": level, "handlers": ["idserver"]},
        "loggers": {
            "_granian": {"level": level, "handlers": [], "propagate": True},
            "granian.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
        },
        "handlers": {"idserver": {"()": LogHandler, "fmt": fmt}},
    }


# -- the request's id, client and access line -------------------------------------------------
def request_id() -> str:
    """This request's id: a sane incoming ``X-Request-ID``, else a new random one."""
    known: str | None = g.get("request_id")
    if known is None:
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        known = offered if SANE_REQUEST_ID.fullmatch(offered) else secrets.token_hex(16)
        g.request_id = known
    return known


def note_client(client_id: str) -> None:
    """Name the registered OAuth client this request is for, for its access line."""
    if has_request_context():
        g.log_client_id = client_id


def current_route() -> str:
    """The URL rule that matched (``/login/<login_id>``), or "-": never the raw path."""
    rule = request.url_rule
    return rule.rule if rule is not None else "-"


def _logged_query() -> str | None:
    if not request.args:
        return None
    kept = [
        (name, value[:_MAX_VALUE])
        for name, value in request.args.items(multi=True)
        if name in LOGGED_QUERY_PARAMETERS
    ]
    others = any(name not in LOGGED_QUERY_PARAMETERS for name in request.args)
    shown = urlencode(kept)
    if others:
        shown = f"{shown}&{WITHHELD}" if shown else WITHHELD
    return shown


def _start() -> None:
    g.log_started = time.perf_counter()
    request_id()


def _access_line(status: int) -> dict[str, Any] | None:
    """The access line's fields for this request, or None for one that is not logged (nor
    built: with the access log off, ``LOG_LEVEL=WARNING``, a request skips its query's
    filtering and the line's dict)."""
    if not logging.getLogger(ACCESS_LOGGER).isEnabledFor(logging.INFO):
        return None
    rule = request.url_rule
    route = rule.rule if rule is not None else None  # None: no route matched (a 404)
    if request.endpoint == "static" or route in UNLOGGED_ROUTES:
        return None
    return {
        "request_id": request_id(),
        "method": request.method,
        "route": route,
        "status": status,
        "client_id": g.get("log_client_id"),
        "query": _logged_query(),
    }


def _write(line: dict[str, Any], started: float | None) -> None:
    if started is not None:
        line["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
    logging.getLogger(ACCESS_LOGGER).info(
        "%s %s %s", line["method"], line["route"] or "-", line["status"], extra=line
    )


def _written_when_sent(
    body: Iterable[Any], line: dict[str, Any], started: float | None
) -> Iterator[Any]:
    try:
        yield from body
    finally:  # sent in full, or closed early (the client went away)
        _write(line, started)


def _echo_request_id(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = request_id()
    g.log_status = response.status_code
    if response.is_streamed and not response.direct_passthrough:
        # A held long poll: its line is written once the answer has gone, with its whole length.
        line = _access_line(response.status_code)
        if line is not None:
            response.response = _written_when_sent(response.response, line, g.get("log_started"))
            g.log_deferred = True
    return response


def _write_access_line(_exc: BaseException | None) -> None:
    if g.get("log_deferred"):
        return
    line = _access_line(g.get("log_status", 500))
    if line is not None:
        _write(line, g.get("log_started"))


def init_app(app: Flask) -> None:
    """Log set-up from the settings, and the request hooks; call it before any other hook."""
    configure_logging(fmt=app.config["LOG_FORMAT"], level=app.config["LOG_LEVEL"])
    app.before_request(_start)
    app.after_request(_echo_request_id)  # after-request hooks run last-registered first
    app.teardown_request(_write_access_line)
