"""arp_cache: permanent neighbours of a scratch namespace, and the host's cache vs `ip -j neigh`."""

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
    assert {"address": scratch.v6_peer, "mac": scratch.neighbour6_mac, "interface": "veth0", "permanent": "1"} in rows
    expected = {
        (n["dst"], n.get("lladdr", "00:00:00:00:00:00"), n["dev"])
        for n in ip_json(scratch.name, "neigh", "show")
        if "NOARP" not in n.get("state", [])
    }
    assert {(r["address"], r["mac"], r["interface"]) for r in rows} >= expected
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

        out = subprocess.run(["ip", "-j", "neigh", "show"], capture_output=True, text=True, check=True).stdout
        return {(n["dst"], n["dev"]) for n in json.loads(out or "[]") if "NOARP" not in n.get("state", [])}

    before = listed()
    rows = Database([arp_cache.SPEC]).execute("SELECT address, interface FROM arp_cache").rows
    after = listed()
    # entries may come and go while the test runs: bracket the table between the two reads
    assert before & after <= set(rows) <= before | after
