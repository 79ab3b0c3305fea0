"""arp_cache: the kernel's neighbour cache (ARP for IPv4, NDP for IPv6) over rtnetlink.

Like /proc/net/arp, which osquery reads, entries in state NOARP (loopback, multicast)
are left out and an incomplete entry has mac ``00:00:00:00:00:00``; ``permanent`` is
``"1"`` for static (NUD_PERMANENT) entries and ``"0"`` otherwise (TEXT, as osquery).
IPv6 neighbours are listed too (osquery's description names NDP).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

from ._netlink import attr, ifnames, rtnl
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["SPEC", "generate", "neighbour_row"]

NUD_NOARP = 0x40
NUD_PERMANENT = 0x80


def neighbour_row(message: Any, names: dict[int, str]) -> Row | None:
    """One row from an RTM_NEWNEIGH message; None for NOARP entries and other families."""
    if message["family"] not in (socket.AF_INET, socket.AF_INET6) or message["state"] & NUD_NOARP:
        return None
    return {
        "address": attr(message, "NDA_DST"),
        "mac": attr(message, "NDA_LLADDR") or "00:00:00:00:00:00",
        "interface": names.get(message["ifindex"]),
        "permanent": "1" if message["state"] & NUD_PERMANENT else "0",
    }


def generate(context: QueryContext) -> Iterator[Row]:
    with rtnl("arp_cache") as ipr:
        names = ifnames(ipr)
        messages = [m for family in (socket.AF_INET, socket.AF_INET6) for m in ipr.get_neighbours(family=family)]
    for message in messages:
        row = neighbour_row(message, names)
        if row is not None:
            yield row


SPEC = TableSpec(
    name="arp_cache",
    description="Address resolution cache, both static and dynamic (from ARP, NDP).",
    columns=(
        Column("address", "TEXT", "IPv4 address target"),
        Column("mac", "TEXT", "MAC address of broadcasted address"),
        Column("interface", "TEXT", "Interface of the network for the MAC"),
        Column("permanent", "TEXT", "1 for true, 0 for false"),
    ),
    generate=generate,
    examples=(
        "SELECT address, mac, interface FROM arp_cache",
        "SELECT * FROM arp_cache WHERE permanent = '1'",
    ),
)
