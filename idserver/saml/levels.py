"""STORK QAA levels, as BundID uses them for niedrig/substantiell/hoch.

Requested in ``RequestedAuthnContext`` (SAML 2.0 Core §3.3.2.2.1), answered in the assertion's
``AuthnContextClassRef``. Until the assurance model rates each citizen's identification and
device, a login here is claimed at no more than ``STORK-QAA-Level-1`` (niedrig): a formal
assessment is needed for more. A request that admits only higher levels is refused
(``NoAuthnContext``).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ACHIEVED", "STORK", "satisfies"]

STORK = ("STORK-QAA-Level-1", "STORK-QAA-Level-2", "STORK-QAA-Level-3", "STORK-QAA-Level-4")
ACHIEVED = "STORK-QAA-Level-1"
COMPARISONS = ("exact", "minimum", "maximum", "better")  # SAML 2.0 Core §3.3.2.2.1


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
