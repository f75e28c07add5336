"""The ``idserver`` command: every sub-command prints JSON, so scripts can read it."""

from __future__ import annotations

import datetime as dt
import getpass
import glob
import json
import os
import shutil
import sys
import tempfile
from typing import Any

import click
from flask import Flask
from flask import current_app
from flask.cli import FlaskGroup
from flask.cli import with_appcontext

from .citizens.models import PROOFING_DOCUMENTS
from .config import ID_TOKEN_ALGORITHMS
from .errors import IdServerError


def _print(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _fail(exc: IdServerError) -> None:
    _print({"error": exc.error, "error_description": str(exc.description)})
    sys.exit(1)


def _create_app() -> Flask:
    """The application; with unusable settings, one line per problem and exit status 2."""
    from . import create_app
    from .config import ConfigError

    try:
        return create_app()
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        sys.exit(2)


class _Commands(FlaskGroup):
    """Flask's group without loading the application to list commands: every command is
    registered here, and ``idserver --help`` must work while the settings are broken."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return click.Group.list_commands(self, ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        # Only ours: not the ``flask.commands`` plugins of installed packages (Flask-Limiter's
        # ``limiter`` group, which would show the storage URI) nor Flask's own.
        return click.Group.get_command(self, ctx, cmd_name)


@click.group(
    cls=_Commands, create_app=_create_app, add_default_commands=False, add_version_option=False
)
def main() -> None:
    """Bürger-ID identity provider: serve it, and manage residents, clients and keys."""


# -- serve ------------------------------------------------------------------------------------
@main.command("serve", with_appcontext=False)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int)
@click.option(
    "--threads",
    default=1000,
    show_default=True,
    type=int,
    help="Threads per worker; waiting desktops each hold one during a long poll (a blocked "
    "thread costs no CPU and about 50 KB; threads are started only when needed).",
)
@click.option(
    "--server",
    "server_name",
    type=click.Choice(["gunicorn", "granian"]),
    default="gunicorn",
    show_default=True,
    help="The HTTP server: gunicorn (gthread workers) or granian (Rust, WSGI on a thread pool).",
)
@click.option(
    "--no-migrate",
    is_flag=True,
    help="Do not upgrade the schema (run `idserver db upgrade` as a separate step); refuse to "
    "start unless the database is at the newest revision.",
)
def serve(
    host: str, port: int, workers: int, threads: int, server_name: str, no_migrate: bool
) -> None:
    """Run the production server (gunicorn or granian, threaded workers); upgrades the schema
    first."""
    # Before the application exists: prometheus-client picks its storage when first imported.
    created = _prepare_metrics_directory()
    master = os.getpid()
    try:
        app = _prepare_served_app(no_migrate=no_migrate)
        run = _run_granian if server_name == "granian" else _run_gunicorn
        run(app, host=host, port=port, workers=workers, threads=threads)
    finally:
        # A worker leaves through here too (gunicorn's sys.exit after fork): only the master,
        # when the whole server stops, may remove the folder.
        if created and os.getpid() == master:
            shutil.rmtree(created, ignore_errors=True)


def _prepare_served_app(*, no_migrate: bool) -> Flask:
    """In the master, before any worker: upgrade (or check) the schema and prepare the keys."""
    from .db_migrate import revisions
    from .db_migrate import upgrade
    from .metrics import multiprocess_mode

    app = _create_app()
    if not multiprocess_mode():
        raise click.ClickException(
            "the metrics library was loaded before PROMETHEUS_MULTIPROC_DIR was set; start the "
            "server with `idserver serve`, or set PROMETHEUS_MULTIPROC_DIR yourself"
        )
    with app.app_context():
        if not no_migrate:
            upgrade(app)
        else:
            current, head = revisions(app)
            if current != head:
                click.echo(
                    f"the database is at revision {current or 'none (empty)'}, this version "
                    f"needs {head}: run `idserver db upgrade` first, or start without "
                    "--no-migrate",
                    err=True,
                )
                sys.exit(1)
        _prepare_keys()
    return app


def _worker_app() -> Flask:
    """The application in one worker, with its periodic tasks."""
    from .admin import start_periodic_purge
    from .oidc.logout import start_periodic_delivery

    app = _create_app()
    start_periodic_purge(app)  # in each worker; they take turns (admin.retention)
    start_periodic_delivery(app)  # logout retries; each delivery is claimed once
    return app


def _run_gunicorn(app: Flask, *, host: str, port: int, workers: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    from .logs import gunicorn_logconfig

    # One access log, written by the application (idserver/logs.py); gunicorn's is off.
    logconfig = gunicorn_logconfig(fmt=app.config["LOG_FORMAT"], level=app.config["LOG_LEVEL"])

    def child_exit(_server: Any, worker: Any) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # drop its live gauges (desktops, pool)

    class _Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", threads)
            self.cfg.set("worker_connections", 2 * threads)  # held polls + idle keep-alives
            self.cfg.set("timeout", 60)
            self.cfg.set("graceful_timeout", 5)
            self.cfg.set("logconfig_dict", logconfig)
            self.cfg.set("child_exit", child_exit)
            if "control_socket_disable" in self.cfg.settings:
                # gunicorn 25.1+ opens a control socket for ``gunicornc`` at one path per user
                # ($HOME/.gunicorn/gunicorn.ctl), which a second instance on the host takes over;
                # Bürger-ID is run with signals (docs/operations.md), so none is opened.
                self.cfg.set("control_socket_disable", True)

        def load(self) -> Flask:
            return _worker_app()

    _Server().run()


def _run_granian(app: Flask, *, host: str, port: int, workers: int, threads: int) -> None:
    """granian (Rust HTTP, the WSGI application on a pool of ``threads`` blocking threads per
    worker): about half gunicorn's CPU per short request (docs/sizing.md, "the HTTP server")."""
    try:
        from granian.constants import HTTPModes
        from granian.constants import Interfaces
        from granian.server import Server
    except ImportError:
        raise click.ClickException(
            "--server granian needs the granian package: pip install 'idserver[granian]'"
        ) from None

    from .logs import granian_logconfig

    server = Server(
        "idserver:create_app",  # named in granian's messages; each worker runs the loader
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=workers,
        blocking_threads=threads,  # a held long poll keeps one
        backpressure=2 * threads,  # held polls + idle keep-alive connections
        http=HTTPModes.http1,
        websockets=False,
        log_dictconfig=granian_logconfig(
            fmt=app.config["LOG_FORMAT"], level=app.config["LOG_LEVEL"]
        ),
        respawn_failed_workers=True,  # as gunicorn: a worker that dies is replaced
        workers_kill_timeout=5,  # as gunicorn's graceful_timeout
    )
    server.serve(target_loader=_granian_worker_app, wrap_loader=False)


def _granian_worker_app() -> Flask:
    """A granian worker's application (module-level: a spawned worker unpickles it by name)."""
    from .metrics import drop_dead_workers

    drop_dead_workers()  # granian has no child_exit hook: each new worker cleans up instead
    return _worker_app()


def _prepare_metrics_directory() -> str | None:
    """Give the workers' metrics files a private folder (prometheus-client multiprocess mode).

    ``PROMETHEUS_MULTIPROC_DIR`` as given is emptied of an earlier run's files (0700 if it is
    created); without it a fresh 0700 folder is made for this start and removed at the end,
    whose path is returned.
    """
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not given:
        created = tempfile.mkdtemp(prefix="idserver-metrics-")  # mode 0700
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = created
        return created
    os.makedirs(given, mode=0o700, exist_ok=True)
    for stale in glob.glob(os.path.join(given, "*.db")):
        os.remove(stale)
    return None


def _prepare_keys() -> None:
    """Import or create the keys once, before the workers start; refuse with one line."""
    from .config import ConfigError
    from .keys import KeyStoreError
    from .keys import key_store

    try:
        key_store().prepare()
    except (ConfigError, KeyStoreError) as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


# -- db ---------------------------------------------------------------------------------------
@main.group("db")
def db_group() -> None:
    """The database schema (Alembic migrations)."""


@db_group.command("upgrade")
@with_appcontext
def db_upgrade() -> None:
    """Create or upgrade the schema to the newest version."""
    from .db_migrate import upgrade

    revision = upgrade(current_app)
    _prepare_keys()  # the first keys, once, before instances start (compose's `migrate`)
    _print({"database": _safe_url(current_app.config["DATABASE_URL"]), "revision": revision})


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# -- config -----------------------------------------------------------------------------------
@main.group("config")
def config_group() -> None:
    """The settings (environment variables IDSERVER_*)."""


@config_group.command("check", with_appcontext=False)  # reads the settings only
def config_check() -> None:
    """Print every setting, its value and source (secrets as ***); exit 1 naming each problem."""
    from .config import effective_config

    instance_path = Flask("idserver", instance_relative_config=True).instance_path
    effective = effective_config(instance_path=instance_path)
    _print(
        {
            "ok": not effective.problems,
            "problems": effective.problems,
            "warnings": effective.warnings,
            "settings": effective.masked(),
        }
    )
    for line in effective.problems + effective.warnings:
        click.echo(line, err=True)
    if effective.problems:
        sys.exit(1)


# -- citizens ---------------------------------------------------------------------------------
@main.group("citizen")
def citizen_group() -> None:
    """Residents."""


@citizen_group.command("add")
@click.option("--given-name", required=True)
@click.option("--family-name", required=True)
@click.option("--birthdate", required=True, help="YYYY-MM-DD")
@click.option("--street", required=True)
@click.option("--postcode", required=True)
@click.option("--city", required=True)
@click.option("--email", default=None)
@click.option(
    "--proofing-document",
    type=click.Choice(PROOFING_DOCUMENTS),
    default=None,
    help="The identity document a clerk checked in person (with --proofed-on); raises the "
    "resident's assurance level as IDSERVER_ASSURANCE_IN_PERSON says.",
)
@click.option(
    "--proofed-on",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="YYYY-MM-DD: the day of that check.",
)
@click.option(
    "--proofing-office",
    default=None,
    help="Where it was checked (default: IDSERVER_OFFICE_NAME).",
)
@with_appcontext
def citizen_add(
    proofing_document: str | None,
    proofed_on: dt.datetime | None,
    proofing_office: str | None,
    **fields: Any,
) -> None:
    """Register a resident; with --proofing-document and --proofed-on if a clerk checked an
    identity document in person."""
    from .citizens.service import register_citizen

    proofing: dict[str, Any] = {}
    if proofing_document is not None or proofed_on is not None:
        proofing = {
            "proofing_document": proofing_document,
            "proofed_on": proofed_on.date() if proofed_on else None,
            "proofing_office": proofing_office or current_app.config["OFFICE_NAME"],
        }
    try:
        citizen = register_citizen(**fields, **proofing)
    except IdServerError as exc:
        _fail(exc)
    _print({"id": citizen.id, "given_name": citizen.given_name, "family_name": citizen.family_name})


@citizen_group.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@with_appcontext
def citizen_import(path: str) -> None:
    """Register residents from a JSON list or a CSV file with a header row (all or none)."""
    from .citizens.errors import InvalidImport
    from .citizens.service import import_citizens

    fmt = "json" if path.lower().endswith(".json") else "csv"
    with open(path, encoding="utf-8-sig") as handle:
        text = handle.read()
    try:
        citizens = import_citizens(text, fmt=fmt)
    except (IdServerError, ValueError) as exc:
        if isinstance(exc, IdServerError):
            _fail(exc)
        _fail(InvalidImport(str(exc)))
    _print({"imported": len(citizens), "ids": [c.id for c in citizens]})


# -- activation -------------------------------------------------------------------------------
@main.group("activation")
def activation_group() -> None:
    """Activation codes for enrolling a phone."""


@activation_group.command("issue")
@click.argument("citizen_id")
@with_appcontext
def activation_issue(citizen_id: str) -> None:
    """Issue a one-time activation code (shown once; only its hash is stored)."""
    from .admin.letter import activation_link
    from .citizens.service import activation_url
    from .citizens.service import issue_activation_code

    try:
        record, code = issue_activation_code(citizen_id)
    except IdServerError as exc:
        _fail(exc)
    _print(
        {
            "citizen_id": citizen_id,
            "activation_id": record.id,
            "code": code,
            "activation_url": activation_url(record),
            "activation_link": activation_link(activation_url(record), code),
            "expires_at": record.expires_at.isoformat(),
        }
    )


# -- clients ----------------------------------------------------------------------------------
@main.group("client")
def client_group() -> None:
    """Relying parties (the applications that use Bürger-ID for login)."""


def _operator() -> dict[str, str]:
    """Who ran the command, for the audit log: the operating-system user."""
    try:
        return {"os_user": getpass.getuser()}
    except (OSError, KeyError):  # no name for this uid (a container's random user)
        return {"os_user": str(os.getuid())}


def _client_json(client: Any, **extra: Any) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        **extra,
        "name": client.name,
        "status": client.status,
        "redirect_uris": client.redirect_uris,
        "post_logout_redirect_uris": client.post_logout_redirect_uris or [],
        "scope": client.scope,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "jwks_uri": client.jwks_uri,
        "id_token_signed_response_alg": client.id_token_signed_response_alg,
        "proximity_policy": client.proximity_policy,  # null: IDSERVER_PROXIMITY_POLICY
        "backchannel_logout_uri": client.backchannel_logout_uri,
        "frontchannel_logout_uri": client.frontchannel_logout_uri,
        "require_pushed_authorization_requests": client.require_pushed_authorization_requests,
        "created_at": client.created_at.isoformat(),
        "disabled_at": client.disabled_at.isoformat() if client.disabled_at else None,
        "deleted_at": client.deleted_at.isoformat() if client.deleted_at else None,
    }


AUTH_METHOD_CHOICE = click.Choice(["client_secret_basic", "client_secret_post", "private_key_jwt"])
ID_TOKEN_ALG_HELP = "How its ID tokens are signed (id_token_signed_response_alg)."  # noqa: S105
REQUIRE_PAR_HELP = (
    "Take its authorization requests only through /par (RFC 9126, "
    "require_pushed_authorization_requests)."
)


@client_group.command("add")
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True)
@click.option("--post-logout-redirect-uri", "logout_uris", multiple=True)
@click.option("--scope", default="openid profile", show_default=True)
@click.option(
    "--auth-method", type=AUTH_METHOD_CHOICE, default="client_secret_basic", show_default=True
)
@click.option("--jwks-uri", default=None)
@click.option("--jwks-file", default=None, type=click.Path(exists=True, dir_okay=False))
@click.option("--client-id", default=None, help="Choose the client_id (default: random).")
@click.option(
    "--id-token-alg",
    type=click.Choice(ID_TOKEN_ALGORITHMS),
    default=ID_TOKEN_ALGORITHMS[0],
    show_default=True,
    help=ID_TOKEN_ALG_HELP,
)
@click.option(
    "--proximity-policy",
    type=click.Choice(["warn", "deny"]),
    default=None,
    help="When phone and computer are in different networks: warn the citizen or refuse the "
    "login (default: IDSERVER_PROXIMITY_POLICY).",
)
@click.option(
    "--grant-type",
    "grant_types",
    type=click.Choice(["authorization_code", "refresh_token"]),
    multiple=True,
    help="Grant types beyond authorization_code; refresh_token lets the client ask for "
    "offline_access (repeatable).",
)
@click.option(
    "--backchannel-logout-uri",
    default=None,
    help="Where logout tokens are POSTed when a session that logged in to it ends "
    "(OIDC Back-Channel Logout).",
)
@click.option(
    "--frontchannel-logout-uri",
    default=None,
    help="Loaded in an iframe of the logged-out page, with iss and sid (OIDC Front-Channel "
    "Logout; used when there is no back-channel URI).",
)
@click.option("--require-par", is_flag=True, help=REQUIRE_PAR_HELP)
@with_appcontext
def client_add(
    name: str,
    redirect_uris: tuple[str, ...],
    logout_uris: tuple[str, ...],
    scope: str,
    auth_method: str,
    jwks_uri: str | None,
    jwks_file: str | None,
    client_id: str | None,
    id_token_alg: str,
    proximity_policy: str | None,
    grant_types: tuple[str, ...],
    backchannel_logout_uri: str | None,
    frontchannel_logout_uri: str | None,
    require_par: bool,
) -> None:
    """Register a relying party; the client secret is printed once."""
    from .oidc.clients import register_client

    try:
        client, secret = register_client(
            name=name,
            redirect_uris=list(redirect_uris),
            scope=scope,
            auth_method=auth_method,
            jwks_uri=jwks_uri,
            jwks_file=jwks_file,
            post_logout_redirect_uris=list(logout_uris),
            client_id=client_id,
            id_token_alg=id_token_alg,
            proximity_policy=proximity_policy,
            grant_types=list(grant_types),
            backchannel_logout_uri=backchannel_logout_uri,
            frontchannel_logout_uri=frontchannel_logout_uri,
            require_par=require_par,
            actor="operator",
            **_operator(),
        )
    except IdServerError as exc:
        _fail(exc)
    issuer = current_app.config["ISSUER"]
    _print(
        {
            "client_id": client.client_id,
            "client_secret": secret,
            "name": client.name,
            "redirect_uris": client.redirect_uris,
            "scope": client.scope,
            "token_endpoint_auth_method": client.token_endpoint_auth_method,
            "id_token_signed_response_alg": client.id_token_signed_response_alg,
            "proximity_policy": client.proximity_policy,  # null: IDSERVER_PROXIMITY_POLICY
            "grant_types": client.grant_types,
            "backchannel_logout_uri": client.backchannel_logout_uri,
            "frontchannel_logout_uri": client.frontchannel_logout_uri,
            "require_pushed_authorization_requests": client.require_pushed_authorization_requests,
            "discovery_url": f"{issuer}/.well-known/openid-configuration",
        }
    )


@client_group.command("list")
@click.option("--deleted", is_flag=True, help="Include deleted clients.")
@with_appcontext
def client_list(deleted: bool) -> None:
    """Every relying party with its status (active, disabled; deleted with --deleted)."""
    from .oidc.clients import list_clients

    _print([_client_json(client) for client in list_clients(include_deleted=deleted)])


@client_group.command("show")
@click.argument("client_id")
@with_appcontext
def client_show(client_id: str) -> None:
    """One relying party's registration (never its secret)."""
    from .oidc.clients import find_client

    try:
        client = find_client(client_id)
    except IdServerError as exc:
        _fail(exc)
    _print(_client_json(client))


@client_group.command("update")
@click.argument("client_id")
@click.option("--name", default=None)
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    help="Replaces every registered redirect URI (repeat for several).",
)
@click.option(
    "--post-logout-redirect-uri",
    "logout_uris",
    multiple=True,
    help="Replaces every registered post-logout redirect URI (repeat for several).",
)
@click.option(
    "--no-post-logout-redirect-uris", "no_logout_uris", is_flag=True, help="Remove them all."
)
@click.option("--scope", default=None)
@click.option("--auth-method", type=AUTH_METHOD_CHOICE, default=None)
@click.option("--jwks-uri", default=None)
@click.option("--jwks-file", default=None, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--id-token-alg", type=click.Choice(ID_TOKEN_ALGORITHMS), default=None, help=ID_TOKEN_ALG_HELP
)
@click.option(
    "--proximity-policy",
    type=click.Choice(["warn", "deny", "default"]),
    default=None,
    help="default: follow IDSERVER_PROXIMITY_POLICY again.",
)
@click.option(
    "--backchannel-logout-uri",
    default=None,
    help="Where logout tokens are POSTed when a session that logged in to it ends "
    "(OIDC Back-Channel Logout); "
    " removes it.",
)
@click.option(
    "--frontchannel-logout-uri",
    default=None,
    help="Loaded in an iframe of the logged-out page, with iss and sid (OIDC Front-Channel "
    "Logout; used when there is no back-channel URI); "
    " removes it.",
)
@click.option("--require-par/--no-require-par", default=None, help=REQUIRE_PAR_HELP)
@with_appcontext
def client_update(
    client_id: str,
    name: str | None,
    redirect_uris: tuple[str, ...],
    logout_uris: tuple[str, ...],
    no_logout_uris: bool,
    scope: str | None,
    auth_method: str | None,
    jwks_uri: str | None,
    jwks_file: str | None,
    id_token_alg: str | None,
    proximity_policy: str | None,
    backchannel_logout_uri: str | None,
    frontchannel_logout_uri: str | None,
    require_par: bool | None,
) -> None:
    """Change a relying party's registration, checked as by `client add`; only the options
    given change. A new secret (moving away from private_key_jwt) is printed once."""
    from .oidc.clients import KEEP
    from .oidc.clients import update_client

    if logout_uris and no_logout_uris:
        _fail(
            IdServerError(
                "--post-logout-redirect-uri and --no-post-logout-redirect-uris exclude each other"
            )
        )
    changes: dict[str, Any] = {
        "name": KEEP if name is None else name,
        "redirect_uris": list(redirect_uris) if redirect_uris else KEEP,
        "post_logout_redirect_uris": (
            [] if no_logout_uris else list(logout_uris) if logout_uris else KEEP
        ),
        "scope": KEEP if scope is None else scope,
        "auth_method": KEEP if auth_method is None else auth_method,
        "id_token_alg": KEEP if id_token_alg is None else id_token_alg,
        "proximity_policy": (
            KEEP
            if proximity_policy is None
            else None
            if proximity_policy == "default"
            else proximity_policy
        ),
        "backchannel_logout_uri": KEEP
        if backchannel_logout_uri is None
        else backchannel_logout_uri,
        "frontchannel_logout_uri": (
            KEEP if frontchannel_logout_uri is None else frontchannel_logout_uri
        ),
        "require_par": KEEP if require_par is None else require_par,
    }
    try:
        client, secret = update_client(
            client_id, jwks_uri=jwks_uri, jwks_file=jwks_file, **changes, **_operator()
        )
    except IdServerError as exc:
        _fail(exc)
    extra = {"client_secret": secret} if secret else {}
    _print(_client_json(client, **extra))


@client_group.command("disable")
@click.argument("client_id")
@with_appcontext
def client_disable(client_id: str) -> None:
    """Take a relying party out of service at once (logins, tokens, userinfo) until enabled."""
    from .oidc.clients import disable_client

    try:
        client = disable_client(client_id, **_operator())
    except IdServerError as exc:
        _fail(exc)
    _print(_client_json(client))


@client_group.command("enable")
@click.argument("client_id")
@with_appcontext
def client_enable(client_id: str) -> None:
    """Put a disabled relying party back in service."""
    from .oidc.clients import enable_client

    try:
        client = enable_client(client_id, **_operator())
    except IdServerError as exc:
        _fail(exc)
    _print(_client_json(client))


@client_group.command("rotate-secret")
@click.argument("client_id")
@with_appcontext
def client_rotate_secret(client_id: str) -> None:
    """Give the relying party a new client secret, printed once; the old one stops working."""
    from .oidc.clients import find_client
    from .oidc.clients import rotate_client_secret

    try:
        secret = rotate_client_secret(client_id, **_operator())
        client = find_client(client_id)
    except IdServerError as exc:
        _fail(exc)
    _print(_client_json(client, client_secret=secret))


@client_group.command("delete")
@click.argument("client_id")
@click.confirmation_option(prompt="Delete the client for good?")
@with_appcontext
def client_delete(client_id: str) -> None:
    """Take a relying party out of service for good; citizens' records and audit stay."""
    from .oidc.clients import delete_client

    try:
        client = delete_client(client_id, **_operator())
    except IdServerError as exc:
        _fail(exc)
    _print(_client_json(client))


# -- keys -------------------------------------------------------------------------------------
@main.group("keys")
def keys_group() -> None:
    """Signing keys (ES256; RS256 too for ID tokens) and the pairwise salt, kept in the
    database for every instance."""


@keys_group.command("list")
@with_appcontext
def keys_list() -> None:
    """Every key: purpose (id_token, audit, saml), alg, state (active, published, kept, retired)."""
    from .keys import key_store

    _print(key_store().describe())


@keys_group.command("rotate")
@click.option(
    "--purpose",
    type=click.Choice(["id_token", "audit", "saml"]),
    default="id_token",
    show_default=True,
    help="id_token: signs ID tokens, published in the JWKS; audit: signs audit checkpoints; "
    "saml: signs SAML messages, published in /saml/metadata.",
)
@click.option(
    "--alg",
    type=click.Choice(ID_TOKEN_ALGORITHMS),
    default=None,
    help="Rotate only this algorithm's key (default: every key of the purpose).",
)
@with_appcontext
def keys_rotate(purpose: str, alg: str | None) -> None:
    """Add a key and sign with it on every instance; the previous one stays until retired.

    Without --alg every active key of the purpose is rotated (for ID tokens: ES256 and RS256).
    """
    from .keys import ALGORITHMS
    from .keys import KeyStoreError
    from .keys import key_store
    from .keys.errors import InvalidKey

    store = key_store()
    try:
        # An --alg the purpose does not sign with is refused before anything changes.
        kids = [store.rotate(purpose, alg=a) for a in ([alg] if alg else ALGORITHMS[purpose])]
    except KeyStoreError as exc:
        _fail(InvalidKey(str(exc)))
    _print({"rotated": kids, "purpose": purpose, **store.describe()})


@keys_group.command("retire")
@click.argument("kid")
@with_appcontext
def keys_retire(kid: str) -> None:
    """Stop publishing an old key (after its tokens have expired); it is kept to verify."""
    from .keys import KeyStoreError
    from .keys import key_store
    from .keys.errors import InvalidKey

    store = key_store()
    try:
        store.retire(kid)
    except KeyStoreError as exc:
        _fail(InvalidKey(str(exc)))
    _print(store.describe())


@keys_group.command("new-kek", with_appcontext=False)  # needs no settings and no database
def keys_new_kek() -> None:
    """Print a new random key-encryption key for IDSERVER_KEY_ENCRYPTION_KEY."""
    from .keys.sealing import new_kek

    click.echo(new_kek())


# -- audit ------------------------------------------------------------------------------------
@main.group("audit")
def audit_group() -> None:
    """The tamper-evident audit log."""


@audit_group.command("verify")
@with_appcontext
def audit_verify() -> None:
    """Walk the hash chain and the signed checkpoints; exit 1 naming the first broken entry."""
    from .audit import verify_chain

    problems = verify_chain()
    if problems:
        first = problems[0]
        _print(
            {
                "ok": False,
                "first_bad_entry": first.event_id,
                "reason": first.reason,
                "problems": [{"entry": p.event_id, "reason": p.reason} for p in problems],
            }
        )
        sys.exit(1)
    _print({"ok": True})


@audit_group.command("export")
@click.option(
    "--output",
    "-o",
    type=click.File("w", encoding="utf-8"),
    default="-",
    help="File for the JSON Lines (default: standard output).",
)
@with_appcontext
def audit_export(output: Any) -> None:
    """Write every audit entry as JSON Lines."""
    from .audit import export_events

    for entry in export_events():
        output.write(json.dumps(entry, ensure_ascii=False) + "\n")


@audit_group.command("checkpoint")
@with_appcontext
def audit_checkpoint() -> None:
    """Sign the chain's current head now (run it from cron, e.g. hourly)."""
    from .audit import write_checkpoint

    checkpoint = write_checkpoint()
    _print({"event_id": checkpoint.event_id if checkpoint else None})


# -- clerks -----------------------------------------------------------------------------------
@main.group("clerk")
def clerk_group() -> None:
    """Staff of the citizens' office who use the clerk console at /admin."""


def _clerk_json(clerk: Any) -> dict[str, Any]:
    return {
        "id": clerk.id,
        "citizen_id": clerk.citizen_id,
        "display_name": clerk.display_name,
        "role": clerk.role,
        "created_at": clerk.created_at.isoformat(),
        "disabled_at": clerk.disabled_at.isoformat() if clerk.disabled_at else None,
    }


@clerk_group.command("add")
@click.option("--given-name", required=True)
@click.option("--family-name", required=True)
@click.option("--email", required=True)
@click.option("--role", type=click.Choice(["clerk", "supervisor", "admin"]), default="clerk")
@click.option(
    "--birthdate",
    default=None,
    help="YYYY-MM-DD (default: 1900-01-01, meaning not recorded).",
)
@with_appcontext
def clerk_add(
    given_name: str, family_name: str, email: str, role: str, birthdate: str | None
) -> None:
    """Add a clerk; they enrol a passkey with the printed activation code, like a resident."""
    from .citizens.service import activation_url
    from .clerks import add_clerk

    try:
        added = add_clerk(
            given_name=given_name,
            family_name=family_name,
            email=email,
            role=role,
            birthdate=birthdate,
        )
    except IdServerError as exc:
        _fail(exc)
    _print(
        {
            **_clerk_json(added.clerk),
            "activation_id": added.activation.id,
            "code": added.code,
            "activation_url": activation_url(added.activation),
            "expires_at": added.activation.expires_at.isoformat(),
        }
    )


@clerk_group.command("list")
@with_appcontext
def clerk_list() -> None:
    """Every clerk, enabled or not."""
    from .clerks import list_clerks

    _print([_clerk_json(clerk) for clerk in list_clerks()])


@clerk_group.command("disable")
@click.argument("clerk_id")
@with_appcontext
def clerk_disable(clerk_id: str) -> None:
    """Take a clerk's access to the console away at once."""
    from .clerks import disable_clerk

    try:
        clerk = disable_clerk(clerk_id)
    except IdServerError as exc:
        _fail(exc)
    _print(_clerk_json(clerk))


@clerk_group.command("set-role")
@click.argument("clerk_id")
@click.argument("role", type=click.Choice(["clerk", "supervisor", "admin"]))
@with_appcontext
def clerk_set_role(clerk_id: str, role: str) -> None:
    """Give a clerk another role: clerk, supervisor, or admin (the relying parties)."""
    from .clerks import set_clerk_role

    try:
        clerk = set_clerk_role(clerk_id, role)
    except IdServerError as exc:
        _fail(exc)
    _print(_clerk_json(clerk))


@citizen_group.command("purge")
@with_appcontext
def citizen_purge() -> None:
    """Erase residents deleted more than IDSERVER_RETENTION_DAYS ago (audit keeps ids only)."""
    from .admin import purge_deleted_residents

    _print(purge_deleted_residents())


# -- maintenance ------------------------------------------------------------------------------
@main.group("maintenance")
def maintenance_group() -> None:
    """Housekeeping (`idserver serve` also runs it every IDSERVER_PURGE_INTERVAL_SECONDS)."""


@maintenance_group.command("purge")
@with_appcontext
def maintenance_purge() -> None:
    """Delete ended logins, codes, tokens, challenges, pairings and sessions after
    IDSERVER_PURGE_AFTER_HOURS, residents after IDSERVER_RETENTION_DAYS; prints counts per table.

    While another purge runs this one does nothing and prints {"skipped": ...} (exit status 0).
    """
    from .admin import purge_expired_data

    _print(purge_expired_data())


@maintenance_group.command("deliver-logouts")
@with_appcontext
def maintenance_deliver_logouts() -> None:
    """Send the back-channel logout tokens that are due (retries; `idserver serve` also does it
    every IDSERVER_LOGOUT_RETRY_SECONDS); prints counts. Safe to run from cron beside it."""
    from .oidc.logout import deliver_due_logouts

    _print(deliver_due_logouts())


@main.group("saml-sp")
def saml_sp_group() -> None:
    """SAML 2.0 service providers (form servers), known by their metadata."""


def _saml_sp_json(sp: Any) -> dict[str, Any]:
    return {
        "id": sp.id,
        "entity_id": sp.entity_id,
        "name": sp.name,
        "source": sp.source,
        "created_at": sp.created_at,
    }


@saml_sp_group.command("add")
@click.option("--metadata", "source", required=True, help="The SP's metadata: a file or URL.")
@click.option("--name", default=None, help="Shown to citizens (default: from the metadata).")
@with_appcontext
def saml_sp_add(source: str, name: str | None) -> None:
    """Register an SP (or replace its metadata); audited. Prints the IdP's metadata URL."""
    import requests

    from .saml import add_service_provider

    try:
        if source.startswith(("https://", "http://")):
            fetched = requests.get(source, timeout=10)
            fetched.raise_for_status()
            metadata = fetched.text
        else:
            with open(source, encoding="utf-8") as file:
                metadata = file.read()
    except (OSError, requests.RequestException) as exc:
        raise click.ClickException(f"cannot read the metadata from {source}: {exc}") from exc
    try:
        sp = add_service_provider(
            metadata, source=source, name=name, actor="operator", **_operator()
        )
    except IdServerError as exc:
        _fail(exc)
    issuer = current_app.config["ISSUER"]
    _print({**_saml_sp_json(sp), "idp_metadata_url": f"{issuer}/saml/metadata"})


@saml_sp_group.command("list")
@with_appcontext
def saml_sp_list() -> None:
    """Every registered SP."""
    from .saml import service_providers

    _print([_saml_sp_json(sp) for sp in service_providers()])


@saml_sp_group.command("remove")
@click.argument("entity_id")
@with_appcontext
def saml_sp_remove(entity_id: str) -> None:
    """Remove an SP by its entityID or id; audited. Its requests are refused from now on."""
    from .saml import remove_service_provider

    try:
        sp = remove_service_provider(entity_id, actor="operator", **_operator())
    except IdServerError as exc:
        _fail(exc)
    _print({"removed": _saml_sp_json(sp)})


def register_commands(app: Flask) -> None:
    """Offer the same commands under ``flask --app idserver`` and the test CLI runner."""
    for command in main.commands.values():
        app.cli.add_command(command)
