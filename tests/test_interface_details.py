"""interface_details: links of a scratch network namespace, counters bracketed by `ip -s -j link`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from tables import interface_details
from tables.interface_details import parse_pci_slot
from tables.sqlite import Database
from tests._table_checks import Scratch, assert_column_types, ip_json, scratch_namespace

IFF_UP, IFF_BROADCAST, IFF_LOOPBACK = 0x1, 0x2, 0x8
COUNTERS = {
    "ipackets": ("rx", "packets"),
    "opackets": ("tx", "packets"),
    "ibytes": ("rx", "bytes"),
    "obytes": ("tx", "bytes"),
    "idrops": ("rx", "dropped"),
    "odrops": ("tx", "dropped"),
}


@pytest.fixture(scope="module")
def scratch() -> Iterator[Scratch]:
    with scratch_namespace() as ns:
        yield ns


def test_links_in_namespace(scratch: Scratch) -> None:
    before = {l["ifname"]: l for l in ip_json(scratch.name, "-s", "link")}
    rows = {r["interface"]: r for r in scratch.query("interface_details", "SELECT * FROM interface_details")}
    after = {l["ifname"]: l for l in ip_json(scratch.name, "-s", "link")}
    assert set(rows) == set(before) == {"lo", "veth0", "veth1"}
    veth0 = rows["veth0"]
    assert (veth0["mac"], veth0["mtu"], veth0["type"], veth0["metric"]) == (scratch.mac, scratch.mtu, 1, 0)
    assert veth0["flags"] & IFF_UP and veth0["flags"] & IFF_BROADCAST
    assert veth0["last_change"] == -1
    lo = rows["lo"]
    assert (lo["mac"], lo["type"], lo["mtu"]) == ("00:00:00:00:00:00", 772, 65536)
    assert lo["flags"] & IFF_LOOPBACK
    speed = subprocess.run(
        ["ip", "netns", "exec", scratch.name, "cat", "/sys/class/net/veth0/speed"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert veth0["link_speed"] == int(speed)  # the veth driver reports 10000 Mb/s
    assert lo["link_speed"] is None  # loopback has no speed (sysfs read fails)
    for name, row in rows.items():
        for column, (direction, key) in COUNTERS.items():
            low, high = before[name]["stats64"][direction][key], after[name]["stats64"][direction][key]
            assert low <= row[column] <= high, (name, column)
        assert row["pci_slot"] is None  # virtual links have no PCI device
    assert_column_types(interface_details.SPEC, list(rows.values()))


def test_host_links_match_ip_link() -> None:
    out = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout)
    rows = Database([interface_details.SPEC]).execute("SELECT interface, mac, mtu FROM interface_details").rows
    assert {(r[0], r[2]) for r in rows} == {(l["ifname"], l["mtu"]) for l in out}
    macs = {l["ifname"]: l.get("address") for l in out}
    for name, mac, _ in rows:
        assert mac == macs[name], name


def test_parse_pci_slot() -> None:
    text = "DRIVER=virtio_net\nPCI_CLASS=20000\nPCI_SLOT_NAME=0000:00:03.0\nMODALIAS=pci:v1AF4\n"
    assert parse_pci_slot(text) == "0000:00:03.0"
    assert parse_pci_slot("DRIVER=virtio_net\n") is None
