"""What makes one demo portal: its name, the scope it asks for, its views and its tables.

``protocol`` is how it speaks to Bürger-ID: "oidc" (``scope`` is the OIDC scope) or "saml"
(``scope`` names the attributes it asks for, as the about page shows them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint
from flask import Flask
from sqlalchemy import MetaData

__all__ = ["Portal"]


@dataclass(frozen=True)
class Portal:
    kind: str
    name: Any  # a lazy translated string
    tagline: Any
    scope: str
    blueprint: Blueprint
    metadata: MetaData
    init_app: Callable[[Flask], None] | None = None
    protocol: str = "oidc"
    display_name: str = ""  # SAML: the AKDB OrganizationDisplayName the phone shows
