"""interface_addresses: exact rows in a scratch network namespace, and lo on the host vs `ip -j addr`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from tables import interface_addresses
from tables._netlink import netmask_text
from tables.sqlite import Database
from tests._table_checks import Scratch, assert_column_types, ip_json, scratch_namespace


@pytest.fixture(scope="module")
def scratch() -> Iterator[Scratch]:
    with scratch_namespace() as ns:
        yield ns


@pytest.fixture(scope="module")
def rows(scratch: Scratch) -> list[dict]:
    return scratch.query("interface_addresses", "SELECT * FROM interface_addresses")


def _by_address(rows: list[dict]) -> dict[str, dict]:
    return {r["address"]: r for r in rows}


def test_configured_addresses(scratch: Scratch, rows: list[dict]) -> None:
    got = _by_address(rows)
    assert got[scratch.v4] == {
        "interface": "veth0",
        "address": scratch.v4,
        "mask": "255.255.255.0",
        "broadcast": "10.77.0.255",
        "point_to_point": None,
        "type": "unknown",
    }
    assert got[scratch.v6] == {
        "interface": "veth0",
        "address": scratch.v6,
        "mask": "ffff:ffff:ffff:ffff::",
        "broadcast": None,
        "point_to_point": None,
        "type": "unknown",
    }
    # lo has no IFF_BROADCAST: the peer is a point-to-point address (127.0.0.1 its own, as in osquery)
    assert got[scratch.ptp_local]["point_to_point"] == scratch.ptp_peer
    assert got[scratch.ptp_local]["mask"] == "255.255.255.255"
    assert got["127.0.0.1"] == {
        "interface": "lo",
        "address": "127.0.0.1",
        "mask": "255.0.0.0",
        "broadcast": None,
        "point_to_point": "127.0.0.1",
        "type": "unknown",
    }
    assert got["::1"]["interface"] == "lo"
    assert {r["type"] for r in rows} == {"unknown"}  # osquery on Linux: always unknown


def test_matches_ip_addr(scratch: Scratch, rows: list[dict]) -> None:
    expected = set()
    for link in ip_json(scratch.name, "addr"):
        for info in link.get("addr_info", []):
            family = 10 if info["family"] == "inet6" else 2
            name = info.get("label", link["ifname"]) if family == 2 else link["ifname"]
            expected.add((name, info["local"], netmask_text(family, info["prefixlen"])))
    assert {(r["interface"], r["address"], r["mask"]) for r in rows} == expected


def test_host_loopback_matches_ip_addr() -> None:
    out = json.loads(
        subprocess.run(["ip", "-j", "addr", "show", "dev", "lo"], capture_output=True, text=True, check=True).stdout
    )
    expected = {(i["local"], i["prefixlen"]) for link in out for i in link.get("addr_info", [])}
    rows = (
        Database([interface_addresses.SPEC])
        .execute("SELECT address, mask FROM interface_addresses WHERE interface = 'lo'")
        .rows
    )
    assert {(a, m) for a, m in rows} == {(a, netmask_text(10 if ":" in a else 2, p)) for a, p in expected}


def test_netmask_text() -> None:
    assert netmask_text(2, 0) == "0.0.0.0" and netmask_text(2, 20) == "255.255.240.0"
    assert netmask_text(10, 128) == "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"


def test_column_types(rows: list[dict]) -> None:
    assert rows
    assert_column_types(interface_addresses.SPEC, rows)
