"""The services a citizen has logged in to, what each received, and withdrawing that consent.

For OIDC the record is the ``tokens`` table: each token names its client and the claims it
released. SAML service providers are listed too (``saml.services_used``), but have nothing to
withdraw: an assertion is handed over once, at login, and Bürger-ID keeps no grant behind it.
Withdrawing consent revokes the client's access and refresh tokens for this citizen (its access
to userinfo ends at once, and it cannot get new tokens), burns authorization codes not yet
exchanged, and hides the earlier logins from the list; logging in to that service again is a
new consent and shows it again.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update

from ..audit import record_event
from ..db import db
from ..db import utcnow
from ..oidc.models import AuthorizationCode
from ..oidc.models import Client
from ..oidc.models import Token
from ..oidc.server import revoke_client_tokens
from ..saml import claims_for
from ..saml import services_used
from ..sessions import SELF_CLIENT_ID
from .errors import ServiceNotFound
from .models import ConsentWithdrawal

__all__ = ["Service", "find_service", "list_all_services", "list_services", "withdraw_consent"]


@dataclass(frozen=True)
class Service:
    client_id: str
    name: str
    claims: list[str]  # every claim released since consent was last withdrawn
    last_login: dt.datetime
    withdrawable: bool = True  # False: a SAML service, which holds no grant from Bürger-ID


def _withdrawn_at(citizen_id: str) -> dict[str, dt.datetime]:
    rows = db.session.execute(
        select(ConsentWithdrawal.client_id, func.max(ConsentWithdrawal.withdrawn_at))
        .where(ConsentWithdrawal.citizen_id == citizen_id)
        .group_by(ConsentWithdrawal.client_id)
    ).all()
    return {client_id: at for client_id, at in rows}


def list_services(citizen_id: str) -> list[Service]:
    """Relying parties with tokens for this citizen since the last withdrawal; latest first."""
    withdrawn = _withdrawn_at(citizen_id)
    rows = db.session.execute(
        select(Token.client_id, Client.name, Token.claims, Token.issued_at)
        .join(Client, Client.client_id == Token.client_id)
        .where(Token.citizen_id == citizen_id, Token.client_id != SELF_CLIENT_ID)
        .order_by(Token.issued_at)
    ).all()
    found: dict[str, Service] = {}
    for client_id, name, claims, issued_at in rows:
        since = withdrawn.get(client_id)
        if since is not None and issued_at <= since:
            continue
        earlier = found.get(client_id)
        names = list(earlier.claims) if earlier else []
        names.extend(c for c in claims or [] if c not in names)
        found[client_id] = Service(client_id, name, names, issued_at)
    return sorted(found.values(), key=lambda s: s.last_login, reverse=True)


def list_all_services(citizen_id: str) -> list[Service]:
    """``list_services`` and the SAML services logged in to, latest first; a SAML service's
    attributes are named by the OIDC claims they carry, for the same labels."""
    saml = [
        Service(used.sp_id, used.name, list(claims_for(used.attributes)), used.last_login, False)
        for used in services_used(citizen_id)
    ]
    return sorted([*list_services(citizen_id), *saml], key=lambda s: s.last_login, reverse=True)


def find_service(citizen_id: str, client_id: str) -> Service:
    """One of the services in ``list_services``, or 404 (never used, or consent withdrawn)."""
    for service in list_services(citizen_id):
        if service.client_id == client_id:
            return service
    raise ServiceNotFound()


def withdraw_consent(citizen_id: str, client_id: str) -> int:
    """Revoke the service's tokens and codes for this citizen; returns how many tokens."""
    find_service(citizen_id, client_id)
    session = db.session
    now = utcnow()
    tokens = session.execute(
        update(Token)
        .where(
            Token.citizen_id == citizen_id,
            Token.client_id == client_id,
            Token.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    session.execute(
        update(AuthorizationCode)
        .where(
            AuthorizationCode.citizen_id == citizen_id,
            AuthorizationCode.client_id == client_id,
            AuthorizationCode.used_at.is_(None),
        )
        .values(used_at=now)
    )
    revoke_client_tokens(citizen_id=citizen_id, client_id=client_id)
    count: int = tokens.rowcount  # type: ignore[attr-defined]
    session.add(
        ConsentWithdrawal(
            citizen_id=citizen_id, client_id=client_id, withdrawn_at=now, tokens_revoked=count
        )
    )
    record_event(
        "consent_withdrawn",
        actor=f"citizen:{citizen_id}",
        subject=citizen_id,
        client_id=client_id,
        tokens_revoked=count,
    )
    session.commit()
    return count
