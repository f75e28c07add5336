"""Whether the phone and the computer of one login sit in the same network.

RFC 10027 *Establish Proximity*: in the QR-relay attack the attacker's computer shows the QR
code and the victim's phone scans it, so the two are almost always in different networks. A
login whose phone and computer reach the server from different networks is therefore told to
the citizen (policy ``warn``) or refused (``deny``).

"Same network" means the same IPv4 /24 or the same IPv6 /56 (``PROXIMITY_IPV4_PREFIX``,
``PROXIMITY_IPV6_PREFIX``):

- IPv4: a home or office network shows the internet one NAT address, and larger NATs
  (companies, carrier-grade NAT) hand out neighbouring addresses from one pool; /24 is the
  customary block for both, and the usual truncation for pseudonymising addresses.
- IPv6: every device picks its own, changing interface ID (RFC 8981 privacy addresses), and a
  home gets a whole prefix from its provider, /56 being the common delegation (RIPE-690), with
  one /64 per subnet (guest Wi-Fi, a second router). /56 keeps one home together and, with
  /56 delegations, neighbours apart.

A phone on mobile data while the computer is on the home Wi-Fi, or one device speaking IPv4 and
the other IPv6, counts as "another network": the signal is a hint, hence ``warn`` by default.
Addresses that cannot be parsed never count as the same network. No Flask here: callers pass
the addresses and the prefix lengths.
"""

from __future__ import annotations

import functools
import ipaddress

from ..config import PROXIMITY_POLICIES as POLICIES

__all__ = ["POLICIES", "network_of", "same_network"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# A login asks about the same two addresses at its scan, its phone's reads, the desktop's status
# and its approval (18 parses per login); a parse is pure and its network immutable. Bounded,
# so a flood of addresses only evicts.
@functools.lru_cache(maxsize=4096)
def network_of(address: str | None, *, ipv4_prefix: int, ipv6_prefix: int) -> Network | None:
    """The network ``address`` belongs to, or None if it is no IP address.

    An IPv4-mapped IPv6 address (``::ffff:192.0.2.7``, from dual-stack sockets) is IPv4.
    """
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ipaddress.IPv6Address(ip.packed)  # drop a zone ID (fe80::1%eth0)
        return ipaddress.IPv6Network((ip, ipv6_prefix), strict=False)
    return ipaddress.IPv4Network((ip, ipv4_prefix), strict=False)


def same_network(
    first: str | None, second: str | None, *, ipv4_prefix: int, ipv6_prefix: int
) -> bool:
    """True only if both addresses parse and fall in one network (see the module docstring)."""
    a = network_of(first, ipv4_prefix=ipv4_prefix, ipv6_prefix=ipv6_prefix)
    b = network_of(second, ipv4_prefix=ipv4_prefix, ipv6_prefix=ipv6_prefix)
    return a is not None and a == b
