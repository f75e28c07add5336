"""Every table, imported in one place for Alembic and ``create_all``."""

from .account.models import ConsentWithdrawal
from .account.models import Pairing
from .admin.models import MaintenanceRun
from .audit.models import AuditCheckpoint
from .audit.models import AuditEvent
from .citizens.models import ActivationAttempt
from .citizens.models import ActivationCode
from .citizens.models import Citizen
from .citizens.models import RevocationCode
from .clerks.models import Clerk
from .crosslogin.models import LoginTransaction
from .keys.models import ServerSecret
from .keys.models import SigningKey
from .limits import RateLimitCounter
from .oidc.models import AuthorizationCode
from .oidc.models import Client
from .oidc.models import LogoutDelivery
from .oidc.models import PushedAuthorizationRequest
from .oidc.models import RefreshToken
from .oidc.models import SessionClient
from .oidc.models import Token
from .oidc.models import UsedAssertion
from .passkeys.models import Challenge
from .passkeys.models import Credential
from .saml.models import SamlRequest
from .saml.models import ServiceProvider
from .saml.models import SessionServiceProvider
from .sessions import BrowserSession

__all__ = [
    "ActivationAttempt",
    "ActivationCode",
    "AuditCheckpoint",
    "AuditEvent",
    "AuthorizationCode",
    "BrowserSession",
    "Challenge",
    "Citizen",
    "Clerk",
    "Client",
    "ConsentWithdrawal",
    "Credential",
    "LoginTransaction",
    "LogoutDelivery",
    "MaintenanceRun",
    "Pairing",
    "PushedAuthorizationRequest",
    "RateLimitCounter",
    "RefreshToken",
    "RevocationCode",
    "SamlRequest",
    "ServiceProvider",
    "ServerSecret",
    "SessionClient",
    "SessionServiceProvider",
    "SigningKey",
    "Token",
    "UsedAssertion",
]
