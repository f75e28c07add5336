"""Bürger-ID: an OpenID Connect provider where citizens log in with an enrolled smartphone."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from .config import ConfigError
from .config import effective_config

__all__ = ["create_app"]


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the application: config → extensions → blueprints.

    Raises ConfigError listing every problem with the settings (the CLI prints one per line).
    """
    from .web import Application

    app = Application(__name__, instance_relative_config=True)
    effective = effective_config(test_config, instance_path=app.instance_path)
    if effective.problems:  # with the unknown variables: a misspelling may explain a problem
        raise ConfigError(effective.problems + effective.warnings)
    config = effective.values
    app.config.update(config)
    app.config["SECRET_KEY"] = config["SECRET_KEY"]
    app.config["MAX_CONTENT_LENGTH"] = 256 * 1024
    app.config["PREFERRED_URL_SCHEME"] = config["ISSUER"].split(":", 1)[0]

    from . import csrf
    from . import errors
    from . import health
    from . import keys
    from . import limits
    from . import logs
    from . import metrics
    from . import models  # noqa: F401 -- every table on Base.metadata (the purge reads it)
    from . import pages
    from . import sessions
    from . import web
    from .account import devices as account_devices
    from .account import views as account_views
    from .admin import views as admin_views
    from .api import views as api_views
    from .audit.service import append_event
    from .citizens import views as citizen_views
    from .citizens.service import has_residents
    from .clerks import active_clerk
    from .crosslogin import views as crosslogin_views
    from .crosslogin.service import device_owner
    from .db import db
    from .oidc import logout as oidc_logout
    from .oidc import server as oidc_server
    from .oidc import views as oidc_views
    from .passkeys.models import usable_device
    from .saml import logout as saml_logout
    from .saml import views as saml_views

    logs.init_app(app)  # first: its request hooks time and number everything after them
    for warning in effective.warnings:
        logging.getLogger(__name__).warning("%s", warning)
    db.init_app(app)
    web.init_app(app)
    errors.init_app(app)
    keys.init_app(app, audit=append_event, has_residents=has_residents)
    sessions.init_app(
        app,
        usable_device=usable_device,
        privileged=lambda citizen_id: active_clerk(citizen_id) is not None,
        ended=(oidc_logout.sessions_ended, saml_logout.sessions_ended),
    )
    oidc_server.init_app(app)
    oidc_logout.init_app(app, channels={"saml": saml_logout.SAML_CHANNEL})
    account_devices.init_app(app)
    crosslogin_views.init_app(app, resume={"oidc": oidc_views.resume, "saml": saml_views.resume})
    health.init_app(app)

    app.register_blueprint(pages.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(oidc_views.bp)
    app.register_blueprint(saml_views.bp)
    app.register_blueprint(crosslogin_views.bp)
    app.register_blueprint(citizen_views.bp)
    app.register_blueprint(api_views.bp)
    app.register_blueprint(account_views.bp)
    app.register_blueprint(admin_views.bp)
    # After the blueprints: both wrap or guard views that are registered by now.
    limits.init_app(app, credential_owner=device_owner)
    csrf.init_app(app)
    metrics.init_app(app)

    from .cli import register_commands

    register_commands(app)
    return app
