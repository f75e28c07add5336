"""What makes one demo portal: its name, the scope it asks for, its views and its tables."""

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
