"""arp_cache: the kernel's IPv4 neighbour (ARP) cache, from ``/proc/net/arp`` as osquery reads it.

One row per line: the kernel leaves out NOARP entries (loopback, multicast), an
incomplete entry has mac ``00:00:00:00:00:00``, and ``permanent`` is ``"1"`` when the
flags are ``0x6`` (ATF_COM | ATF_PERM, a static entry) and ``"0"`` otherwise (TEXT, as
osquery).  IPv6 neighbours (NDP) are not in this file and not in osquery's table either.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from ._files import read_text
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["SPEC", "generate", "parse_arp"]

_PERMANENT = "0x6"  # ATF_COM | ATF_PERM, as /proc/net/arp prints it


def parse_arp(text: str) -> list[Row]:
    """``/proc/net/arp`` text (a header, then address, HW type, flags, HW address, mask, device) -> rows."""
    rows: list[Row] = []
    for line in text.split("\n")[1:]:
        fields = line.split()
        if len(fields) != 6:
            continue
        address, _hw_type, flags, mac, _mask, device = fields
        rows.append(
            {"address": address, "mac": mac, "interface": device, "permanent": "1" if flags == _PERMANENT else "0"}
        )
    return rows


def generate(context: QueryContext) -> Iterator[Row]:
    yield from parse_arp(read_text(os.path.join(context.paths.proc, "net", "arp")) or "")


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
