"""What every request pays for: only the hooks that do something (``make bench`` measures them).

Flask-Limiter chooses the counters' storage, but every limit is taken by ``limits.reserve`` in
the views it guards; its own per-request hooks, which look for limits declared through it,
would find none and only cost time.
"""

from __future__ import annotations

import functools
from typing import Any

from flask import Flask
from flask.testing import FlaskClient


def _bound_to(hook: Any, owner: object) -> bool:
    return getattr(hook, "__self__", None) is owner or (
        isinstance(hook, functools.partial) and owner in hook.args
    )


def test_flask_limiter_runs_no_hook_on_requests(app: Flask) -> None:
    limiter = app.extensions["idserver.limiter"]
    registered = [
        hook
        for hooks in (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs)
        for funcs in hooks.values()
        for hook in funcs
    ]
    assert registered
    assert not [hook for hook in registered if _bound_to(hook, limiter)]


def test_a_session_cookie_is_still_read(app: Flask, client: FlaskClient) -> None:
    # The cookie session is opened without its signer when no cookie came; one that came is
    # checked and read as before.
    with client.session_transaction() as session:
        session["probe"] = "kept"
    with client.session_transaction() as session:
        assert session["probe"] == "kept"
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], "forged.value.sig")
    with client.session_transaction() as session:
        assert "probe" not in session
