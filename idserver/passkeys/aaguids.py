"""Which authenticator made a credential, by its AAGUID (WebAuthn L3 §6.5.2).

The AAGUID is what the authenticator claims; without verified attestation it proves nothing,
so the name is only a hint for the citizen's device list, never a security decision.
"""

from __future__ import annotations

import functools
import json
import os
import uuid

__all__ = ["authenticator_name"]

ZERO_AAGUID = "00000000-0000-0000-0000-000000000000"  # "not telling" (e.g. Safari, "none")


@functools.cache
def _known() -> dict[str, str]:
    path = os.path.join(os.path.dirname(__file__), "aaguids.json")
    with open(path, encoding="utf-8") as handle:
        names = json.load(handle)
    return {key: value for key, value in names.items() if not key.startswith("_")}


def authenticator_name(aaguid: str | None) -> str | None:
    """The product name for ``aaguid``, or None when it is unknown, zero or malformed."""
    if not aaguid:
        return None
    try:
        canonical = str(uuid.UUID(aaguid))
    except ValueError:
        return None
    if canonical == ZERO_AAGUID:
        return None
    return _known().get(canonical)
