"""``create_portal(kind)``: one small factory for both demo relying parties.

config → extensions → blueprints, as in ``idserver.create_app``; the portal's own views and
tables come from its package (``demo_portal.parking``, ``demo_portal.jobs``).
"""

from __future__ import annotations

import importlib
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from .config import derive_defaults
from .config import load_config
from .config import validate_config
from .portal import Portal
from .private_files import read_or_create

__all__ = ["create_portal"]


def load_portal(kind: str) -> Portal:
    portal: Portal = importlib.import_module(f"{__package__}.{kind}").PORTAL
    return portal


def create_portal(kind: str, config: Mapping[str, Any] | None = None) -> Flask:
    """Build portal ``kind`` ("parking", "jobs" or "dogtax"); ``config`` overrides
    ``PORTAL_<KIND>_*``."""
    values = load_config(kind)
    if config:
        values.update(config)
    app = Flask(__name__)
    derive_defaults(values, kind, app.instance_path)
    validate_config(values, kind)
    app.config.update(values)
    app.instance_path = values["INSTANCE_PATH"]
    os.makedirs(app.instance_path, mode=0o700, exist_ok=True)
    portal = load_portal(kind)
    app.config["KIND"] = kind
    app.config["PORTAL"] = portal
    if not values["SECRET_KEY"]:
        key_file = Path(app.instance_path) / "secret-key"
        app.config["SECRET_KEY"] = read_or_create(
            key_file, lambda: secrets.token_urlsafe(48).encode()
        ).decode()

    from . import account
    from . import backchannel
    from . import csrf
    from . import errors
    from . import i18n
    from . import oidc
    from . import web
    from .db import db

    i18n.init_app(app)
    web.init_app(app)
    errors.init_app(app)
    csrf.init_app(app)
    db.init_app(app, portal.metadata)
    if portal.protocol == "saml":
        from . import saml_account

        saml_account.init_app(app)
        app.register_blueprint(saml_account.bp)
    else:
        oidc.init_app(app, scope=portal.scope)
        app.register_blueprint(account.bp)
        app.register_blueprint(backchannel.bp)
    if portal.init_app is not None:
        portal.init_app(app)
    app.register_blueprint(portal.blueprint)
    return app
