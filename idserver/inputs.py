"""What a request may carry: no text that cannot be stored, no JSON nested too deeply.

NUL characters and lone surrogates cannot be stored or even looked up (PostgreSQL refuses NUL;
UTF-8 has no surrogates), so they are refused where the request is read, before any view runs:
the JSON body as malformed, the path, query, headers and form fields as a 400 page or answer.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask import request
from flask.json.provider import DefaultJSONProvider
from flask_babel import lazy_gettext as _l

from .errors import IdServerError

__all__ = ["InputJSONProvider", "init_app", "refuse_unstorable_input"]


class InputJSONProvider(DefaultJSONProvider):
    """Request bodies: too deep, NUL characters or lone surrogates make them malformed.

    ``get_json`` sees a ValueError, as for any body that is not JSON.
    """

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            value = super().loads(s, **kwargs)
        except RecursionError as exc:
            raise ValueError("JSON nested too deeply") from exc
        pending = [value]
        while pending:
            item = pending.pop()
            if isinstance(item, dict):
                pending.extend(item.keys())
                pending.extend(item.values())
            elif isinstance(item, list):
                pending.extend(item)
            elif isinstance(item, str):
                _check_storable(item)
        return value


def _check_storable(text: str) -> None:
    if "\x00" in text:
        raise ValueError("NUL character")
    text.encode("utf-8")  # UnicodeEncodeError (a ValueError) for a lone surrogate


# Werkzeug's ``EnvironHeaders``: every ``HTTP_*`` variable but these two, and the body's type and
# length under their CGI names when not empty.
_SHADOWED = frozenset({"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"})
_CGI_HEADERS = frozenset({"CONTENT_TYPE", "CONTENT_LENGTH"})


def _header_values(environ: dict[str, Any]) -> list[str]:
    """The values of ``request.headers``, read from the WSGI environ as Werkzeug reads them but
    without building each header's name (two thirds of this check's time)."""
    return [
        value
        for key, value in environ.items()
        if (key.startswith("HTTP_") and key not in _SHADOWED) or (key in _CGI_HEADERS and value)
    ]


def refuse_unstorable_input() -> None:
    """The same rule for the path, query, headers and form fields, before any view runs."""
    texts = [request.path, *_header_values(request.environ)]
    texts += [text for key, values in request.args.lists() for text in (key, *values)]
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        texts += [text for key, values in request.form.lists() for text in (key, *values)]
    try:
        _check_storable("".join(texts))  # one pass: the rule holds for the whole iff for each
    except ValueError as exc:
        raise IdServerError(_l("The request contains characters that are not allowed.")) from exc


def init_app(app: Flask) -> None:
    app.json = InputJSONProvider(app)
    app.before_request(refuse_unstorable_input)
