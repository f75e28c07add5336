"""Which resident parking zone an ``address`` claim lies in."""

from __future__ import annotations

import pytest

from demo_portal.parking.zones import find_zone
from demo_portal.parking.zones import load_zones
from demo_portal.parking.zones import street_name


def _address(street: str, city: str = "Dortmund") -> dict[str, str]:
    return {"street_address": street, "postal_code": "44139", "locality": city}


@pytest.mark.parametrize(
    ("street", "zone"),
    [
        ("Kreuzstraße 5", "KV"),
        ("Kreuzstrasse 5", "KV"),
        ("KREUZSTR. 5a", "KV"),
        ("Kreuzstr 12-14", "KV"),
        ("Große Heimstraße 3 b", "KV"),
        ("Von der Tann Str. 3", "SL"),
        ("Von-der-Tann-Straße 17/2", "SL"),
        ("Kaiserstraße 101", "KS"),
    ],
)
def test_finds_the_zone_whatever_the_spelling(street, zone):
    found = find_zone(_address(street))
    assert found is not None and found.id == zone


@pytest.mark.parametrize(
    "address",
    [
        _address("Benninghofer Straße 20"),
        _address("Kampstraße 12"),
        _address("Kreuzstraße 5", city="Bochum"),
        {"street_address": "Kreuzstraße 5"},
        {"locality": "Dortmund"},
        "Kreuzstraße 5, 44139 Dortmund",
        None,
        {"street_address": ["Kreuzstraße 5"], "locality": "Dortmund"},
    ],
)
def test_finds_no_zone_outside_or_for_odd_claims(address):
    assert find_zone(address) is None


def test_street_name_drops_the_house_number():
    assert street_name("Kreuzstraße 5a") == "Kreuzstraße"
    assert street_name("Straße des 17. Juni 12") == "Straße des 17. Juni"


def test_zone_file_is_well_formed():
    plan = load_zones()
    assert plan.city == "Dortmund" and len(plan.zones) >= 2
    streets = [s for zone in plan.zones for s in zone.streets]
    assert len(streets) == len(set(streets)), "a street belongs to one zone only"
