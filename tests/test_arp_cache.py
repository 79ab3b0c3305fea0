"""arp_cache: permanent neighbours of a scratch namespace, the host's cache vs `ip -j neigh`, canned /proc/net/arp."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tables import arp_cache
from tests._table_checks import Scratch, assert_column_types, ip_json, scratch_namespace


@pytest.fixture(scope="module")
def scratch() -> Iterator[Scratch]:
    with scratch_namespace() as ns:
        yield ns


def test_permanent_neighbours(scratch: Scratch) -> None:
    rows = scratch.query("arp_cache", "SELECT * FROM arp_cache")
    assert {"address": scratch.v4_peer, "mac": scratch.neighbour_mac, "interface": "veth0", "permanent": "1"} in rows
    # osquery reads /proc/net/arp: IPv4 (ARP) only, no IPv6 (NDP) neighbours
    assert not any(r["address"] == scratch.v6_peer for r in rows)
    expected = {
        (n["dst"], n.get("lladdr", "00:00:00:00:00:00"), n["dev"])
        for n in ip_json(scratch.name, "-4", "neigh", "show")
        if "NOARP" not in n.get("state", [])
    }
    assert {(r["address"], r["mac"], r["interface"]) for r in rows} == expected
    assert_column_types(arp_cache.SPEC, rows)


def test_dynamic_entry_is_not_permanent(scratch: Scratch) -> None:
    ip_args = ("neigh", "add", "10.77.0.3", "lladdr", "02:00:00:00:77:04", "dev", "veth0", "nud", "reachable")
    from tests._table_checks import ip

    ip("-n", scratch.name, *ip_args)
    rows = scratch.query("arp_cache", "SELECT permanent, mac FROM arp_cache WHERE address = '10.77.0.3'")
    assert rows == [{"permanent": "0", "mac": "02:00:00:00:77:04"}]


def test_host_cache_matches_ip_neigh() -> None:
    from tables.sqlite import Database

    def listed() -> set[tuple[str, str]]:
        import json
        import subprocess

        out = subprocess.run(["ip", "-4", "-j", "neigh", "show"], capture_output=True, text=True, check=True).stdout
        return {(n["dst"], n["dev"]) for n in json.loads(out or "[]") if "NOARP" not in n.get("state", [])}

    before = listed()
    rows = Database([arp_cache.SPEC]).execute("SELECT address, interface FROM arp_cache").rows
    after = listed()
    # entries may come and go while the test runs: bracket the table between the two reads
    assert before & after <= set(rows) <= before | after


def test_parse_arp_canned() -> None:
    text = (
        "IP address       HW type     Flags       HW address            Mask     Device\n"
        "10.0.2.2         0x1         0x2         52:55:0a:00:02:02     *        eth0\n"
        "10.0.2.9         0x1         0x6         02:00:00:00:00:09     *        eth0\n"
        "10.0.2.7         0x1         0x0         00:00:00:00:00:00     *        eth0\n"
        "garbage\n"
    )
    assert arp_cache.parse_arp(text) == [
        {"address": "10.0.2.2", "mac": "52:55:0a:00:02:02", "interface": "eth0", "permanent": "0"},
        {"address": "10.0.2.9", "mac": "02:00:00:00:00:09", "interface": "eth0", "permanent": "1"},
        {"address": "10.0.2.7", "mac": "00:00:00:00:00:00", "interface": "eth0", "permanent": "0"},
    ]
