"""pci_devices: pci.ids parsing, a fixture sysfs tree, and the live bus."""

from __future__ import annotations

import os
from pathlib import Path

from tables import pci_devices
from tables.pci_devices import parse_pci_ids
from tables.spec import HostPaths
from tables.sqlite import Database

PCI_IDS = """# pci.ids
8086  Intel Corporation
\t100e  82540EM Gigabit Ethernet Controller
\t\t8086 001e  PRO/1000 MT Desktop Adapter
1af4  Red Hat, Inc.
C 02  Network controller
\t00  Ethernet controller
"""


def test_parse_pci_ids() -> None:
    ids = parse_pci_ids(PCI_IDS)
    assert ids.vendors == {"8086": "Intel Corporation", "1af4": "Red Hat, Inc."}
    assert ids.devices == {("8086", "100e"): "82540EM Gigabit Ethernet Controller"}
    assert ids.subsystems == {("8086", "100e", "8086", "001e"): "PRO/1000 MT Desktop Adapter"}
    assert ids.classes == {"02": "Network controller"} and ids.subclasses == {("02", "00"): "Ethernet controller"}


def test_fixture(tmp_path: Path) -> None:
    dev = tmp_path / "sys/bus/pci/devices/0000:00:03.0"
    dev.mkdir(parents=True)
    (dev / "uevent").write_text(
        "DRIVER=e1000\nPCI_CLASS=20000\nPCI_ID=8086:100E\nPCI_SUBSYS_ID=8086:001E\nPCI_SLOT_NAME=0000:00:03.0\n"
    )
    (tmp_path / "usr/share/misc").mkdir(parents=True)
    (tmp_path / "usr/share/misc/pci.ids").write_text(PCI_IDS)
    db = Database([pci_devices.SPEC], paths=HostPaths(sys=str(tmp_path / "sys"), root=str(tmp_path)))
    assert db.execute("SELECT * FROM pci_devices").dicts() == [
        {
            "pci_slot": "0000:00:03.0",
            "pci_class": "Network controller",
            "driver": "e1000",
            "vendor": "Intel Corporation",
            "vendor_id": "8086",
            "model": "82540EM Gigabit Ethernet Controller",
            "model_id": "100e",
            "pci_class_id": "02",
            "pci_subclass_id": "00",
            "pci_subclass": "Ethernet controller",
            "subsystem_vendor_id": "8086",
            "subsystem_vendor": "Intel Corporation",
            "subsystem_model_id": "001e",
            "subsystem_model": "PRO/1000 MT Desktop Adapter",
        }
    ]


def test_live_matches_sysfs() -> None:
    rows = Database([pci_devices.SPEC]).execute("SELECT pci_slot, vendor_id FROM pci_devices").rows
    base = Path("/sys/bus/pci/devices")
    slots = sorted(os.listdir(base)) if base.exists() else []
    assert [r[0] for r in rows] == slots
    for slot, vendor_id in rows:
        assert int((base / slot / "vendor").read_text(), 16) == int(vendor_id, 16)
