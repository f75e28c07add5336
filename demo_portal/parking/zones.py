"""Resident-parking zones (``zones.json``) and which one, if any, an address lies in.

Addresses arrive as the OIDC ``address`` claim (OIDC Core §5.1.1). A street matches a zone's
street when both name the same street after normalising spelling: case, ß/ss, "Str."/"Straße",
spaces and hyphens ("Von der Tann Str. 3" is "Von-der-Tann-Straße").
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Zone", "find_zone", "load_zones", "street_name"]

ZONES_FILE = Path(__file__).with_name("zones.json")
HOUSE_NUMBER = re.compile(r"\s+\d+\s*[a-zA-Z]?(?:\s*[-/]\s*\d*\s*[a-zA-Z]?)?\s*$")


@dataclass(frozen=True)
class Zone:
    id: str
    name: str
    streets: tuple[str, ...]


@dataclass(frozen=True)
class ZonePlan:
    city: str
    zones: tuple[Zone, ...]


@functools.cache
def load_zones(path: Path = ZONES_FILE) -> ZonePlan:
    document = json.loads(path.read_text(encoding="utf-8"))
    zones = tuple(
        Zone(id=z["id"], name=z["name"], streets=tuple(z["streets"])) for z in document["zones"]
    )
    if len({z.id for z in zones}) != len(zones):
        raise ValueError(f"{path}: zone ids must be unique")
    return ZonePlan(city=document["city"], zones=zones)


def _key(text: str) -> str:
    """A spelling-insensitive key: casefold turns ß into ss, so "Straße" and "Strasse" meet."""
    key = re.sub(r"[\s\-]+", "", text.casefold())
    return re.sub(r"str\.?$", "strasse", key)


def street_name(street_address: str) -> str:
    """The street of "Kreuzstraße 5a" (the house number dropped)."""
    return HOUSE_NUMBER.sub("", street_address.strip()).strip()


def find_zone(address: Any, plan: ZonePlan | None = None) -> Zone | None:
    """The zone the ``address`` claim lies in, or None (also for a missing or odd claim)."""
    plan = plan or load_zones()
    if not isinstance(address, dict):
        return None
    street = address.get("street_address")
    locality = address.get("locality")
    if not isinstance(street, str) or not isinstance(locality, str):
        return None
    if _key(locality) != _key(plan.city):
        return None
    wanted = _key(street_name(street))
    for zone in plan.zones:
        if any(_key(candidate) == wanted for candidate in zone.streets):
            return zone
    return None
