"""Addresses as the engine compares them: one text form per address, wildcards named.

Rows give addresses as the host's tables print them (``::ffff:10.0.0.1`` from a dual-stack
socket, ``fe80::1%eth0``, ``0.0.0.0``); Zeek gives ``10.0.0.1``.  :func:`normal` maps them
all to one form so that equal addresses compare equal as strings.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

__all__ = ["ANY4", "ANY6", "is_wildcard", "listen_score", "normal", "owned_network"]

#: A socket bound to every IPv4 address (0.0.0.0) / every address (::, IPv4 too unless V6ONLY).
ANY4 = "*4"
ANY6 = "*6"


@lru_cache(maxsize=65536)
def normal(value: object) -> str | None:
    """The comparable form of an address, ANY4/ANY6 for wildcards, None when there is none."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if address.is_unspecified:
        return ANY4 if address.version == 4 else ANY6
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def is_wildcard(address: str | None) -> bool:
    return address in (ANY4, ANY6)


def listen_score(bound: str | None, address: str) -> int:
    """How well a socket bound to ``bound`` receives for ``address`` (0: it does not).

    As the kernel prefers: the exact address (3) over the family's wildcard (2) over an
    IPv6 wildcard receiving IPv4 (1, dual-stack sockets).  Unknown binding counts as 1.
    """
    if bound is None:
        return 1
    if bound == address:
        return 3
    v6 = ":" in address
    if bound == ANY6:
        return 2 if v6 else 1
    if bound == ANY4:
        return 0 if v6 else 2
    return 0


def owned_network(address: str, mask: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The network a loopback address stands for (127.0.0.1/8 owns 127.0.0.0/8), else None.

    Only loopback ranges are owned whole: the kernel answers every 127.x address locally,
    while on other interfaces the mask names neighbours, not this host.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if not ip.is_loopback:
        return None
    prefix: object = mask if mask not in (None, "") else ip.max_prefixlen
    try:
        return ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
    except ValueError:
        return ipaddress.ip_network(f"{ip}/{ip.max_prefixlen}")
