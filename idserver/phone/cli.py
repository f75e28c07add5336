"""``idserver-phone``: the reference soft phone on the command line.

Every command prints one JSON object on stdout; a refusal prints
``{"error", "error_description", "status"}`` instead and exits with status 1. The keys live in
``--key-file`` (``IDSERVER_PHONE_KEY_FILE``, default ``./.phone/phone.json``, mode 0600).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .client import PhoneClient
from .client import PhoneError

__all__ = ["main"]

DEFAULT_KEY_FILE = Path(".phone") / "phone.json"

origin_option = click.option(
    "--origin",
    default=None,
    help="WebAuthn origin to claim (default: the server's), e.g. android:apk-key-hash:…",
)


def _print(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


def _run(action: Callable[[], Any]) -> None:
    try:
        result = action()
    except PhoneError as exc:
        _print(exc.to_json())
        sys.exit(1)
    _print(result)


def _phone(ctx: click.Context, origin: str | None = None) -> PhoneClient:
    settings = ctx.obj
    return PhoneClient(settings["server"], settings["key_file"], origin=origin)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_KEY_FILE,
    show_default=True,
    envvar="IDSERVER_PHONE_KEY_FILE",
    help="The phone's key file (created on first enrolment, mode 0600).",
)
@click.option(
    "--server",
    default=None,
    envvar="IDSERVER_PHONE_SERVER",
    help="Pin the phone to this Bürger-ID; URLs of any other server are refused.",
)
@click.pass_context
def main(ctx: click.Context, key_file: Path, server: str | None) -> None:
    """A software phone for Bürger-ID: enrol with a letter's code, confirm QR-code logins."""
    ctx.obj = {"key_file": key_file, "server": server}


@main.command()
@click.argument("activation_url")
@click.option(
    "--code",
    default=None,
    help="The code from the letter, e.g. ABCD-EFGH-JKMN-PQRS (not needed with the QR link).",
)
@click.option("--name", default="Soft phone", show_default=True, help="Name for this device.")
@origin_option
@click.pass_context
def enrol(
    ctx: click.Context, activation_url: str, code: str | None, name: str, origin: str | None
) -> None:
    """Register this phone with the letter's QR link, or its activation URL and --code."""
    phone = _phone(ctx, origin)
    _run(lambda: {**phone.enrol(activation_url, code, name=name), "key_file": str(phone.key_file)})


@main.command()
@click.argument("phone_url")
@click.option("--number", required=True, help="The two-digit number shown on the computer.")
@click.option(
    "--accept-other-network",
    is_flag=True,
    help="Approve even though the computer is in another network than this phone (only if "
    "you sit at that computer yourself: a relayed QR code looks just like this).",
)
@origin_option
@click.pass_context
def approve(
    ctx: click.Context,
    phone_url: str,
    number: str,
    accept_other_network: bool,
    origin: str | None,
) -> None:
    """Confirm the login behind PHONE_URL (from the QR code) with the number on the screen."""
    phone = _phone(ctx, origin)
    _run(lambda: phone.approve(phone_url, number, accept_other_network=accept_other_network))


@main.command()
@click.argument("phone_url")
@click.pass_context
def deny(ctx: click.Context, phone_url: str) -> None:
    """Refuse the login behind PHONE_URL; the application is told."""
    phone = _phone(ctx)
    _run(lambda: phone.deny(phone_url))


@main.command()
@click.argument("phone_url")
@click.pass_context
def show(ctx: click.Context, phone_url: str) -> None:
    """Scan PHONE_URL and show who asks for what. This binds the login to this phone."""
    phone = _phone(ctx)

    def scan() -> dict[str, Any]:
        view = phone.scan(phone_url)
        for warning in view.warnings:
            click.echo(f"WARNING: {warning.get('message', warning.get('code'))}", err=True)
        click.echo(
            "This login is now bound to this phone: approve or deny it with the same URL.",
            err=True,
        )
        return {
            "login_id": view.login_id,
            "status": view.status,
            "context": view.context,
            "warnings": list(view.warnings),
        }

    _run(scan)


@main.command()
@click.pass_context
def info(ctx: click.Context) -> None:
    """The credentials this phone holds (never the private keys)."""
    phone = _phone(ctx)
    _run(lambda: {"key_file": str(phone.key_file), "credentials": phone.credentials()})
