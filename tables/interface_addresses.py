"""interface_addresses: IPv4/IPv6 addresses of the network interfaces (rtnetlink).

Read like getifaddrs(3), which osquery uses: the address is IFA_LOCAL (else IFA_ADDRESS),
the interface name is the IPv4 label (``eth0:1``) or the link name; a broadcast address
is reported on links with IFF_BROADCAST, otherwise the peer / destination address is
``point_to_point`` (so 127.0.0.1 on ``lo`` has point_to_point 127.0.0.1, as in osquery).
``type`` is ``unknown``, as osquery gives it on Linux (getifaddrs(3) does not say how an
address was configured).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

from ._netlink import attr, netmask_text, rtnl
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["SPEC", "address_row", "generate"]

IFF_BROADCAST = 0x2


def address_row(message: Any, link_name: str, link_flags: int) -> Row | None:
    """One row from an RTM_NEWADDR message (None for families other than IPv4/IPv6)."""
    family = message["family"]
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    local = attr(message, "IFA_LOCAL")
    address = attr(message, "IFA_ADDRESS")
    broadcast = attr(message, "IFA_BROADCAST")
    destination = broadcast if broadcast is not None else (address if local is not None else None)
    row: Row = {
        "interface": (attr(message, "IFA_LABEL") if family == socket.AF_INET else None) or link_name,
        "address": local if local is not None else address,
        "mask": netmask_text(family, message["prefixlen"]),
        "broadcast": None,
        "point_to_point": None,
        "type": "unknown",
    }
    if destination is not None:
        row["broadcast" if link_flags & IFF_BROADCAST else "point_to_point"] = destination
    return row


def generate(context: QueryContext) -> Iterator[Row]:
    with rtnl("interface_addresses") as ipr:
        links = {link["index"]: (attr(link, "IFLA_IFNAME", ""), link["flags"]) for link in ipr.get_links()}
        addresses = list(ipr.get_addr())
    for message in addresses:
        name, flags = links.get(message["index"], ("", 0))
        row = address_row(message, name, flags)
        if row is not None:
            yield row


SPEC = TableSpec(
    name="interface_addresses",
    description="Network interfaces and relevant metadata.",
    columns=(
        Column("interface", "TEXT", "Interface name"),
        Column("address", "TEXT", "Specific address for interface"),
        Column("mask", "TEXT", "Interface netmask"),
        Column("broadcast", "TEXT", "Broadcast address for the interface"),
        Column("point_to_point", "TEXT", "PtP address for the interface"),
        Column("type", "TEXT", "Type of address. One of dhcp, manual, auto, other, unknown"),
        Column(
            "friendly_name",
            "TEXT",
            "Display name of the interface (osquery: Windows only; always NULL on Linux)",
            hidden=True,
        ),
    ),
    generate=generate,
    examples=(
        "SELECT interface, address, mask FROM interface_addresses",
        "SELECT ia.address, id.mac FROM interface_addresses ia JOIN interface_details id USING (interface)",
    ),
)
