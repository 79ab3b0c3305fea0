"""interface_details: link-level details and counters of network interfaces (rtnetlink).

One row per link, as osquery on Linux: ``type`` is the ARPHRD hardware type (1 ethernet,
772 loopback), ``flags`` the IFF_* flags (with IFF_LOWER_UP etc.), counters are the
kernel's 64-bit link statistics, ``metric`` is always 0 and ``last_change`` -1 on Linux.
``link_speed`` (Mb/s) and ``pci_slot`` come from the ETHTOOL ioctls osquery makes
(:mod:`tables._ethtool`): the speed is 0 when the driver does not know it; ``pci_slot`` is
the driver's bus address (the PCI parent's ``0000:00:03.0`` for a virtio NIC), "" for
virtual links whose driver names none, and ``-1`` when the driver does not answer (``lo``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ._ethtool import Ethtool
from ._netlink import attr, rtnl
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["SPEC", "generate", "link_row"]

_COUNTERS = {
    "ipackets": "rx_packets",
    "opackets": "tx_packets",
    "ibytes": "rx_bytes",
    "obytes": "tx_bytes",
    "ierrors": "rx_errors",
    "oerrors": "tx_errors",
    "idrops": "rx_dropped",
    "odrops": "tx_dropped",
    "collisions": "collisions",
}


def link_row(message: Any) -> Row:
    """One row from an RTM_NEWLINK message (sysfs columns are filled by generate())."""
    stats = attr(message, "IFLA_STATS64") or attr(message, "IFLA_STATS") or {}
    row: Row = {
        "interface": attr(message, "IFLA_IFNAME", ""),
        "mac": attr(message, "IFLA_ADDRESS") or "00:00:00:00:00:00",
        "type": message["ifi_type"],
        "mtu": attr(message, "IFLA_MTU", 0),
        "metric": 0,
        "flags": message["flags"],
        "last_change": -1,
    }
    for column, key in _COUNTERS.items():
        row[column] = stats.get(key)
    return row


def generate(context: QueryContext) -> Iterator[Row]:
    with rtnl("interface_details") as ipr:
        links = list(ipr.get_links())
    want_speed = context.is_column_used("link_speed")
    want_pci = context.is_column_used("pci_slot")
    with Ethtool() as ethtool:
        for message in links:
            row = link_row(message)
            name = row["interface"]
            if want_speed:
                row["link_speed"] = ethtool.speed(name) or 0  # osquery: 0 when unknown
            if want_pci:
                bus = ethtool.bus_info(name)
                row["pci_slot"] = "-1" if bus is None else bus  # osquery: -1 when the driver does not answer
            yield row


SPEC = TableSpec(
    name="interface_details",
    description="Detailed information and stats of network interfaces.",
    columns=(
        Column("interface", "TEXT", "Interface name"),
        Column("mac", "TEXT", "MAC of interface (optional)"),
        Column("type", "INTEGER", "Interface type (includes virtual)"),
        Column("mtu", "INTEGER", "Network MTU"),
        Column("metric", "INTEGER", "Metric based on the speed of the interface"),
        Column("flags", "INTEGER", "Flags (netdevice) for the device"),
        Column("ipackets", "BIGINT", "Input packets"),
        Column("opackets", "BIGINT", "Output packets"),
        Column("ibytes", "BIGINT", "Input bytes"),
        Column("obytes", "BIGINT", "Output bytes"),
        Column("ierrors", "BIGINT", "Input errors"),
        Column("oerrors", "BIGINT", "Output errors"),
        Column("idrops", "BIGINT", "Input drops"),
        Column("odrops", "BIGINT", "Output drops"),
        Column("collisions", "BIGINT", "Packet Collisions detected"),
        Column("last_change", "BIGINT", "Time of last device modification (optional)"),
        Column("link_speed", "BIGINT", "Interface speed in Mb/s"),
        Column("pci_slot", "TEXT", "PCI slot number"),
        Column(
            "friendly_name",
            "TEXT",
            "Display name of the interface (osquery: Windows only; always NULL on Linux)",
            hidden=True,
        ),
        Column(
            "description",
            "TEXT",
            "One-line description of the adapter (osquery: Windows only; always NULL on Linux)",
            hidden=True,
        ),
        Column(
            "manufacturer", "TEXT", "Adapter manufacturer (osquery: Windows only; always NULL on Linux)", hidden=True
        ),
        Column(
            "connection_id",
            "TEXT",
            "Connection name in the control panel (osquery: Windows only; always NULL on Linux)",
            hidden=True,
        ),
        Column(
            "connection_status",
            "TEXT",
            "Adapter connection state (osquery: Windows only; always NULL on Linux)",
            hidden=True,
        ),
        Column(
            "enabled",
            "INTEGER",
            "Whether the adapter is enabled (osquery: Windows only; always NULL on Linux)",
            hidden=True,
        ),
        Column(
            "physical_adapter",
            "INTEGER",
            "Whether the adapter is physical (osquery: Windows only; always NULL on Linux)",
            hidden=True,
        ),
        Column(
            "speed",
            "INTEGER",
            "Estimated bandwidth in bits per second (osquery: Windows only; always NULL on Linux)",
            hidden=True,
        ),
        Column(
            "service", "TEXT", "Service the adapter uses (osquery: Windows only; always NULL on Linux)", hidden=True
        ),
        Column(
            "dhcp_enabled",
            "INTEGER",
            "Whether DHCP assigns the address (osquery: Windows only; always NULL on Linux)",
            hidden=True,
        ),
        Column(
            "dhcp_lease_expires",
            "TEXT",
            "When the DHCP lease expires (osquery: Windows only; always NULL on Linux)",
            hidden=True,
        ),
        Column(
            "dhcp_lease_obtained",
            "TEXT",
            "When the DHCP lease was obtained (osquery: Windows only; always NULL on Linux)",
            hidden=True,
        ),
        Column(
            "dhcp_server",
            "TEXT",
            "Address of the DHCP server (osquery: Windows only; always NULL on Linux)",
            hidden=True,
        ),
        Column(
            "dns_domain", "TEXT", "DNS domain of the adapter (osquery: Windows only; always NULL on Linux)", hidden=True
        ),
        Column(
            "dns_domain_suffix_search_order",
            "TEXT",
            "DNS suffixes appended during name resolution (osquery: Windows only; always NULL on Linux)",
            hidden=True,
        ),
        Column(
            "dns_host_name",
            "TEXT",
            "DNS host name of the computer (osquery: Windows only; always NULL on Linux)",
            hidden=True,
        ),
        Column(
            "dns_server_search_order",
            "TEXT",
            "DNS servers queried in order (osquery: Windows only; always NULL on Linux)",
            hidden=True,
        ),
    ),
    generate=generate,
    examples=(
        "SELECT interface, mac, mtu, ibytes, obytes FROM interface_details",
        "SELECT interface, link_speed, pci_slot FROM interface_details WHERE type = 1",
    ),
)
