"""Clerks of the citizens' office: accounts with a role, signing in with their own passkey."""

from .models import ROLES
from .models import Clerk
from .service import PERMISSIONS
from .service import NewClerk
from .service import active_clerk
from .service import add_clerk
from .service import disable_clerk
from .service import list_clerks
from .service import may
from .service import set_clerk_role

__all__ = [
    "PERMISSIONS",
    "ROLES",
    "Clerk",
    "NewClerk",
    "active_clerk",
    "add_clerk",
    "disable_clerk",
    "list_clerks",
    "may",
    "set_clerk_role",
]
