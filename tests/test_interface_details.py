"""interface_details: links of a scratch network namespace, counters bracketed by `ip -s -j link`."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tables import interface_details
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
    assert lo["link_speed"] == 0  # loopback has no speed: osquery's 0
    for name, row in rows.items():
        for column, (direction, key) in COUNTERS.items():
            low, high = before[name]["stats64"][direction][key], after[name]["stats64"][direction][key]
            assert low <= row[column] <= high, (name, column)
    # osquery's ETHTOOL_GDRVINFO bus_info: veth names no bus, lo has no driver info at all
    assert (veth0["pci_slot"], rows["veth1"]["pci_slot"], lo["pci_slot"]) == ("", "", "-1")
    assert_column_types(interface_details.SPEC, list(rows.values()))


def test_host_links_match_ip_link() -> None:
    out = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout)
    rows = Database([interface_details.SPEC]).execute("SELECT interface, mac, mtu FROM interface_details").rows
    assert {(r[0], r[2]) for r in rows} == {(l["ifname"], l["mtu"]) for l in out}
    macs = {l["ifname"]: l.get("address") for l in out}
    for name, mac, _ in rows:
        assert mac == macs[name], name


def _pci_parent(interface: str) -> str | None:
    """The PCI address of the nearest PCI device above an interface's device in sysfs (independent of ethtool)."""
    try:
        device = os.path.realpath(f"/sys/class/net/{interface}/device", strict=True)
    except OSError:
        return None
    while device.startswith("/sys/devices/"):
        try:
            uevent = Path(device, "uevent").read_text()
        except OSError:
            uevent = ""
        for line in uevent.splitlines():
            if line.startswith("PCI_SLOT_NAME="):
                return line.split("=", 1)[1]
        device = os.path.dirname(device)
    return None


def test_pci_slot_is_the_pci_parent_on_the_host() -> None:
    """A virtio NIC's net device hangs below virtioN below the PCI device: pci_slot is the PCI address."""
    expected = {name: _pci_parent(name) for name in os.listdir("/sys/class/net")}
    pci = {name: slot for name, slot in expected.items() if slot}
    if not pci:
        pytest.skip("no network interface of this host sits on a PCI device")
    rows = Database([interface_details.SPEC]).execute("SELECT interface, pci_slot, link_speed FROM interface_details")
    got = {name: slot for name, slot, _speed in rows.rows}
    for name, slot in pci.items():
        assert got[name] == slot, name
    for name, _slot, speed in rows.rows:
        assert isinstance(speed, int) and speed >= 0, name  # unknown speed is 0 (osquery)
