"""STORK QAA levels, as BundID uses them for niedrig/substantiell/hoch.

Requested in ``RequestedAuthnContext`` (SAML 2.0 Core §3.3.2.2.1), answered in the assertion's
``AuthnContextClassRef``. The level itself is the assurance model's (``idserver.assurance``: the
lower of identity proofing and authenticator, each rated ``low`` unless the operator raises it),
named in STORK by ``assurance.stork_level``. A request that no login under this configuration
can meet is refused before any login starts (``NoAuthnContext``); the lowest level that meets it
is the one the approval must reach; the answer names the highest level that both meets the
request and does not exceed the login's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from ..assurance import LEVELS
from ..assurance import at_least
from ..assurance import issuable_levels
from ..assurance import stork_level

__all__ = ["STORK", "answerable", "claimed", "satisfies"]

STORK = ("STORK-QAA-Level-1", "STORK-QAA-Level-2", "STORK-QAA-Level-3", "STORK-QAA-Level-4")
COMPARISONS = ("exact", "minimum", "maximum", "better")  # SAML 2.0 Core §3.3.2.2.1


def _fits(level: str, requested: Sequence[str], comparison: str | None) -> bool:
    return satisfies(stork_level(level), requested=requested, comparison=comparison)


def answerable(
    requested: Sequence[str], comparison: str | None, config: Mapping[str, Any]
) -> tuple[str, ...]:
    """The assurance levels, lowest first, that some login under ``config`` reaches and whose
    STORK name meets the request: empty, the request cannot be met."""
    return tuple(level for level in issuable_levels(config) if _fits(level, requested, comparison))


def claimed(level: str, requested: Sequence[str], comparison: str | None) -> str | None:
    """The STORK name to answer for a login that reached ``level``: the highest that meets the
    request and is not above ``level`` (claiming less than reached is always honest); None if
    none does."""
    fitting = [
        name for name in LEVELS if at_least(level, name) and _fits(name, requested, comparison)
    ]
    return stork_level(fitting[-1]) if fitting else None


def _rank(level: str) -> int | None:
    return STORK.index(level) + 1 if level in STORK else None


def satisfies(achieved: str, *, requested: Sequence[str], comparison: str | None) -> bool:
    """Whether ``achieved`` meets a ``RequestedAuthnContext`` (no request: it does).

    Unknown class refs cannot be met; ``minimum`` (the default is ``exact``) is what BundID's
    service providers send.
    """
    if not requested:
        return True
    have = _rank(achieved)
    comparison = comparison or "exact"
    if have is None or comparison not in COMPARISONS:
        return False
    for level in requested:
        want = _rank(level)
        if want is None:
            continue
        if (
            (comparison == "exact" and have == want)
            or (comparison == "minimum" and have >= want)
            or (comparison == "maximum" and have <= want)
            or (comparison == "better" and have > want)
        ):
            return True
    return False
