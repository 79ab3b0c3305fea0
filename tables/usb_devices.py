"""usb_devices: USB devices plugged into the host, from sysfs ``/sys/bus/usb/devices``.

Each device directory there (``1-1``, ``2-1.4``) becomes a row from its attribute files
(busnum, devnum, idVendor, idProduct, manufacturer, product, serial, bcdDevice,
bDeviceClass/SubClass/Protocol, removable).  Interface entries (``1-1:1.0``) are not
devices, and neither are the host controllers' virtual root hubs (``usb1``); a device
whose class is ``00`` ("defined at interface level") reports its first interface's
class, subclass and protocol.  Missing attribute files read as NULL.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

from .procfs import read_attr
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["SPEC", "device_row", "generate", "is_device_entry"]

log = logging.getLogger(__name__)

_REMOVABLE = {"removable": 1, "fixed": 0}


def is_device_entry(name: str) -> bool:
    """True for a USB device entry: not an interface (``1-1:1.0``), not a root hub (``usb1``)."""
    return ":" not in name and not name.startswith("usb") and "-" in name


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _first_interface(directory: str, name: str) -> str | None:
    """The device's first interface directory (``<name>:<config>.<n>``), if any."""
    try:
        interfaces = sorted(e for e in os.listdir(directory) if e.startswith(f"{name}:"))
    except OSError:
        return None
    return os.path.join(directory, interfaces[0]) if interfaces else None


def device_row(directory: str, name: str) -> Row | None:
    """The row for one device directory; None if it vanished or is not a device."""
    busnum = _int(read_attr(directory, "busnum"))
    devnum = _int(read_attr(directory, "devnum"))
    if busnum is None or devnum is None:
        return None  # osquery: a device without address and port is not listed
    klass = read_attr(directory, "bDeviceClass")
    subclass = read_attr(directory, "bDeviceSubClass")
    protocol = read_attr(directory, "bDeviceProtocol")
    if klass in (None, "00"):
        interface = _first_interface(directory, name)
        if interface is not None:
            klass = read_attr(interface, "bInterfaceClass") or klass
            subclass = read_attr(interface, "bInterfaceSubClass") or subclass
            protocol = read_attr(interface, "bInterfaceProtocol") or protocol
    removable = read_attr(directory, "removable")
    return {
        "usb_address": busnum,
        "usb_port": devnum,
        "vendor": read_attr(directory, "manufacturer"),
        "vendor_id": read_attr(directory, "idVendor"),
        "version": read_attr(directory, "bcdDevice"),
        "model": read_attr(directory, "product"),
        "model_id": read_attr(directory, "idProduct"),
        "serial": read_attr(directory, "serial"),
        "class": klass,
        "subclass": subclass,
        "protocol": protocol,
        "removable": _REMOVABLE.get(removable or "", -1),
    }


def generate(context: QueryContext) -> Iterator[Row]:
    base = os.path.join(context.paths.sys, "bus", "usb", "devices")
    try:
        names = sorted(os.listdir(base))
    except FileNotFoundError:
        return  # no USB bus on this host
    except OSError as exc:
        log.debug("usb_devices: cannot list %s: %s", base, exc)
        return
    for name in names:
        if not is_device_entry(name):
            continue
        row = device_row(os.path.join(base, name), name)
        if row is not None:
            yield row


SPEC = TableSpec(
    name="usb_devices",
    description="USB devices that are actively plugged into the host system.",
    columns=(
        Column("usb_address", "INTEGER", "USB Device used address"),
        Column("usb_port", "INTEGER", "USB Device used port"),
        Column("vendor", "TEXT", "USB Device vendor string"),
        Column("vendor_id", "TEXT", "Hex encoded USB Device vendor identifier"),
        Column("version", "TEXT", "USB Device version number"),
        Column("model", "TEXT", "USB Device model string"),
        Column("model_id", "TEXT", "Hex encoded USB Device model identifier"),
        Column("serial", "TEXT", "USB Device serial connection"),
        Column("class", "TEXT", "USB Device class"),
        Column("subclass", "TEXT", "USB Device subclass"),
        Column("protocol", "TEXT", "USB Device protocol"),
        Column("removable", "INTEGER", "1 If USB device is removable else 0"),
    ),
    generate=generate,
    examples=(
        "SELECT vendor, model, vendor_id, model_id, serial FROM usb_devices",
        "SELECT * FROM usb_devices WHERE removable = 1",
    ),
)
