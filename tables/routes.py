"""routes: the kernel's routing tables (all tables, IPv4 and IPv6) over rtnetlink.

As osquery on Linux: ``destination`` is ``0.0.0.0`` / ``::`` for a default route,
``netmask`` the prefix length, ``type`` one of gateway (unicast), local, broadcast,
anycast, other; ``mtu`` and ``hopcount`` come from the route's metrics (0 when unset),
``metric`` is the route priority.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

from ._netlink import attr, ifnames, rtnl
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["SPEC", "generate", "route_row"]

#: rtm_type -> osquery's type name (RTN_UNICAST is reported as "gateway" by osquery).
ROUTE_TYPES = {1: "gateway", 2: "local", 3: "broadcast", 4: "anycast"}
_DEFAULT = {socket.AF_INET: "0.0.0.0", socket.AF_INET6: "::"}


def _metric(message: Any, name: str) -> int:
    metrics = message.get_attr("RTA_METRICS")
    if metrics is None:
        return 0
    value = metrics.get_attr(name)
    return int(value) if value is not None else 0


def route_row(message: Any, names: dict[int, str]) -> Row:
    """One row from an RTM_NEWROUTE message; ``names`` maps ifindex -> interface."""
    family = message["family"]
    gateway = attr(message, "RTA_GATEWAY")
    oif = attr(message, "RTA_OIF")
    multipath = attr(message, "RTA_MULTIPATH")
    if multipath and (gateway is None or oif is None):  # report the first next hop
        hop = multipath[0]
        gateway = gateway if gateway is not None else hop.get_attr("RTA_GATEWAY")
        oif = oif if oif is not None else hop.get("oif")
    return {
        "destination": attr(message, "RTA_DST", _DEFAULT.get(family, "")),
        "netmask": message["dst_len"],
        "gateway": gateway,
        "source": attr(message, "RTA_PREFSRC"),
        "flags": message["flags"],
        "interface": names.get(oif) if oif is not None else None,
        "mtu": _metric(message, "RTAX_MTU"),
        "metric": attr(message, "RTA_PRIORITY", 0),
        "type": ROUTE_TYPES.get(message["type"], "other"),
        "hopcount": _metric(message, "RTAX_HOPLIMIT"),
    }


def generate(context: QueryContext) -> Iterator[Row]:
    with rtnl("routes") as ipr:
        names = ifnames(ipr)
        messages = [
            m for family in (socket.AF_INET, socket.AF_INET6) for m in ipr.get_routes(family=family, table=None)
        ]
    for message in messages:
        yield route_row(message, names)


SPEC = TableSpec(
    name="routes",
    description="The active route table for the host system.",
    columns=(
        Column("destination", "TEXT", "Destination IP address"),
        Column("netmask", "INTEGER", "Netmask length"),
        Column("gateway", "TEXT", "Route gateway"),
        Column("source", "TEXT", "Route source"),
        Column("flags", "INTEGER", "Flags to describe route"),
        Column("interface", "TEXT", "Route local interface"),
        Column("mtu", "INTEGER", "Maximum Transmission Unit for the route"),
        Column("metric", "INTEGER", "Cost of route. Lowest is preferred"),
        Column("type", "TEXT", "Type of route", additional=True),
        Column("hopcount", "INTEGER", "Max hops expected"),
    ),
    generate=generate,
    examples=(
        "SELECT destination, netmask, gateway, interface FROM routes WHERE type = 'gateway'",
        "SELECT * FROM routes WHERE destination = '0.0.0.0'",
    ),
)
