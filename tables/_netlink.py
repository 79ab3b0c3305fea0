"""rtnetlink access through pyroute2 for the network tables, plus small pure helpers.

Each network table opens one :class:`pyroute2.IPRoute` socket in the agent's network
namespace, dumps what it needs, closes it, and only then builds rows; netlink failures
become a TableError naming the table.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from .spec import TableError

__all__ = ["attr", "ifnames", "netmask_text", "rtnl"]


@contextmanager
def rtnl(table: str) -> Iterator[IPRoute]:
    """An open IPRoute socket; errors are raised as TableError naming ``table``."""
    try:
        ipr = IPRoute()
    except OSError as exc:
        raise TableError(f"table {table}: cannot open a netlink socket: {exc}") from exc
    try:
        yield ipr
    except (NetlinkError, OSError) as exc:
        raise TableError(f"table {table}: netlink request failed: {exc}") from exc
    finally:
        ipr.close()


def attr(message: Any, name: str, default: Any = None) -> Any:
    """A netlink attribute of ``message`` (pyroute2's ``get_attr``), or ``default``."""
    value = message.get_attr(name)
    return default if value is None else value


def ifnames(ipr: IPRoute) -> dict[int, str]:
    """Interface index -> name for every link in the namespace."""
    return {link["index"]: attr(link, "IFLA_IFNAME", "") for link in ipr.get_links()}


def netmask_text(family: int, prefixlen: int) -> str:
    """A prefix length as a mask address: 24 -> ``255.255.255.0``, 64 -> ``ffff:ffff:ffff:ffff::``."""
    if family == socket.AF_INET6:
        return str(ipaddress.IPv6Network(f"::/{prefixlen}").netmask)
    return str(ipaddress.IPv4Network(f"0.0.0.0/{prefixlen}").netmask)
