"""usb_devices: a fake /sys/bus/usb/devices tree with sysfs's real attribute file names."""

from __future__ import annotations

from pathlib import Path

import pytest

from tables import usb_devices
from tables.spec import HostPaths
from tables.sqlite import Database
from tables.usb_devices import is_device_entry
from tests._table_checks import assert_column_types


def _device(root: Path, name: str, attrs: dict[str, str], interfaces: dict[str, dict[str, str]] | None = None) -> None:
    """Create a device dir under devices/ and its symlink in bus/usb/devices, as sysfs does."""
    if interfaces is None:
        interfaces = {}
    real = root / "devices" / "pci0000:00" / name
    real.mkdir(parents=True)
    for key, value in attrs.items():
        (real / key).write_text(value + "\n")
    for iname, iattrs in interfaces.items():
        (real / iname).mkdir()
        for key, value in iattrs.items():
            (real / iname / key).write_text(value + "\n")
        (root / "bus" / "usb" / "devices" / iname).symlink_to(real / iname)
    (root / "bus" / "usb" / "devices" / name).symlink_to(real)


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    (tmp_path / "bus" / "usb" / "devices").mkdir(parents=True)
    # the host controller's root hub and its interface: not devices someone plugged in
    _device(
        tmp_path,
        "usb1",
        {
            "busnum": "1",
            "devnum": "1",
            "idVendor": "1d6b",
            "idProduct": "0002",
            "manufacturer": "Linux 6.1.0 xhci-hcd",
            "product": "xHCI Host Controller",
            "bDeviceClass": "09",
            "bDeviceSubClass": "00",
            "bDeviceProtocol": "01",
            "removable": "unknown",
        },
        {"1-0:1.0": {"bInterfaceClass": "09", "bInterfaceSubClass": "00", "bInterfaceProtocol": "00"}},
    )
    # a mass-storage stick: class 00 at device level, 08/06/50 on its interface
    _device(
        tmp_path,
        "1-1",
        {
            "busnum": "1",
            "devnum": "3",
            "idVendor": "0781",
            "idProduct": "5581",
            "manufacturer": "SanDisk",
            "product": "Ultra",
            "serial": "4C530001",
            "bcdDevice": "0100",
            "bDeviceClass": "00",
            "bDeviceSubClass": "00",
            "bDeviceProtocol": "00",
            "removable": "removable",
        },
        {"1-1:1.0": {"bInterfaceClass": "08", "bInterfaceSubClass": "06", "bInterfaceProtocol": "50"}},
    )
    # a fixed hub with its own device class, behind which nothing is plugged
    _device(
        tmp_path,
        "1-2",
        {
            "busnum": "1",
            "devnum": "4",
            "idVendor": "05e3",
            "idProduct": "0610",
            "product": "USB2.1 Hub",
            "bcdDevice": "6063",
            "bDeviceClass": "09",
            "bDeviceSubClass": "00",
            "bDeviceProtocol": "02",
            "removable": "fixed",
        },
        {"1-2:1.0": {"bInterfaceClass": "09", "bInterfaceSubClass": "00", "bInterfaceProtocol": "00"}},
    )
    # a device with most attributes missing (no strings, no class, no removable)
    _device(tmp_path, "2-1.4", {"busnum": "2", "devnum": "7", "idVendor": "abcd", "idProduct": "1234"})
    # a half-gone device: no busnum/devnum (osquery skips these)
    _device(tmp_path, "2-2", {"idVendor": "dead"})
    return tmp_path


def test_rows_from_fake_sysfs(sysfs: Path) -> None:
    db = Database([usb_devices.SPEC], paths=HostPaths(sys=str(sysfs)))
    rows = db.execute("SELECT * FROM usb_devices ORDER BY usb_address, usb_port").dicts()
    assert rows == [
        {
            "usb_address": 1,
            "usb_port": 3,
            "vendor": "SanDisk",
            "vendor_id": "0781",
            "version": "0100",
            "model": "Ultra",
            "model_id": "5581",
            "serial": "4C530001",
            "class": "08",
            "subclass": "06",
            "protocol": "50",
            "removable": 1,
        },
        {
            "usb_address": 1,
            "usb_port": 4,
            "vendor": None,
            "vendor_id": "05e3",
            "version": "6063",
            "model": "USB2.1 Hub",
            "model_id": "0610",
            "serial": None,
            "class": "09",
            "subclass": "00",
            "protocol": "02",
            "removable": 0,
        },
        {
            "usb_address": 2,
            "usb_port": 7,
            "vendor": None,
            "vendor_id": "abcd",
            "version": None,
            "model": None,
            "model_id": "1234",
            "serial": None,
            "class": None,
            "subclass": None,
            "protocol": None,
            "removable": -1,
        },
    ]
    assert_column_types(usb_devices.SPEC, rows)


def test_entry_names() -> None:
    assert is_device_entry("1-1") and is_device_entry("3-1.2.4")
    assert not is_device_entry("1-1:1.0") and not is_device_entry("usb2")


def test_no_usb_bus(tmp_path: Path) -> None:
    db = Database([usb_devices.SPEC], paths=HostPaths(sys=str(tmp_path)))
    assert db.execute("SELECT * FROM usb_devices").rows == []


def test_live_host() -> None:
    base = Path("/sys/bus/usb/devices")
    if not base.is_dir():
        pytest.skip("this host has no USB bus (/sys/bus/usb/devices is absent)")
    rows = Database([usb_devices.SPEC]).execute("SELECT * FROM usb_devices").dicts()
    expected = {
        (int((base / n / "busnum").read_text()), int((base / n / "devnum").read_text()))
        for n in (p.name for p in base.iterdir())
        if is_device_entry(n) and (base / n / "busnum").exists()
    }
    assert {(r["usb_address"], r["usb_port"]) for r in rows} == expected
    assert_column_types(usb_devices.SPEC, rows)
