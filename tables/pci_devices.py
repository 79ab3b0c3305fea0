"""pci_devices: PCI devices from /sys/bus/pci/devices, named from pci.ids when installed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from ._files import read_text
from .spec import Column, HostPaths, QueryContext, Row, TableSpec

__all__ = ["PCI_IDS_PATHS", "SPEC", "PciIds", "generate", "parse_pci_ids", "parse_uevent"]

PCI_IDS_PATHS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids")


@dataclass(slots=True)
class PciIds:
    """Names from a pci.ids database; ids are lower-case hex without ``0x``."""

    vendors: dict[str, str] = field(default_factory=dict)
    devices: dict[tuple[str, str], str] = field(default_factory=dict)
    subsystems: dict[tuple[str, str, str, str], str] = field(default_factory=dict)
    classes: dict[str, str] = field(default_factory=dict)
    subclasses: dict[tuple[str, str], str] = field(default_factory=dict)


def parse_pci_ids(text: str) -> PciIds:
    """pci.ids: vendors (no indent), devices (one tab), subsystems (two tabs), and the ``C`` class list."""
    ids = PciIds()
    vendor = device = klass = None
    for line in text.split("\n"):
        if not line or line.startswith("#"):
            continue
        if line.startswith("C "):
            klass, _, name = line[2:].partition(" ")
            klass, vendor = klass.lower(), None
            ids.classes[klass] = name.strip()
        elif not line.startswith("\t"):
            vendor, _, name = line.partition(" ")
            vendor, klass = vendor.lower(), None
            ids.vendors[vendor] = name.strip()
        elif line.startswith("\t\t"):
            if vendor is not None and device is not None:
                sub = line.strip().split(None, 2)
                if len(sub) == 3:
                    ids.subsystems[(vendor, device, sub[0].lower(), sub[1].lower())] = sub[2]
        else:
            code, _, name = line.strip().partition(" ")
            if vendor is not None:
                device = code.lower()
                ids.devices[(vendor, device)] = name.strip()
            elif klass is not None:
                ids.subclasses[(klass, code.lower())] = name.strip()
    return ids


def parse_uevent(text: str) -> dict[str, str]:
    """``KEY=value`` lines of a sysfs uevent file."""
    return dict(line.split("=", 1) for line in text.split("\n") if "=" in line)


def _load_ids(paths: HostPaths) -> PciIds:
    for path in PCI_IDS_PATHS:
        text = read_text(paths.host(path))
        if text is not None:
            return parse_pci_ids(text)
    return PciIds()


def _device_row(base: str, slot: str, ids: PciIds) -> Row | None:
    uevent = read_text(f"{base}/{slot}/uevent")
    if uevent is None:
        return None  # the device was removed
    props = parse_uevent(uevent)
    vendor_id, _, model_id = props.get("PCI_ID", ":").lower().partition(":")
    sub_vendor, _, sub_model = props.get("PCI_SUBSYS_ID", ":").lower().partition(":")
    klass = props.get("PCI_CLASS", "").lower().rjust(6, "0")
    class_id, subclass_id = klass[:2], klass[2:4]
    return {
        "pci_slot": props.get("PCI_SLOT_NAME", slot),
        "pci_class": ids.classes.get(class_id, ""),
        "driver": props.get("DRIVER", ""),
        "vendor": ids.vendors.get(vendor_id, ""),
        "vendor_id": vendor_id,
        "model": ids.devices.get((vendor_id, model_id), ""),
        "model_id": model_id,
        "pci_class_id": class_id,
        "pci_subclass_id": subclass_id,
        "pci_subclass": ids.subclasses.get((class_id, subclass_id), ""),
        "subsystem_vendor_id": sub_vendor,
        "subsystem_vendor": ids.vendors.get(sub_vendor, ""),
        "subsystem_model_id": sub_model,
        "subsystem_model": ids.subsystems.get((vendor_id, model_id, sub_vendor, sub_model), ""),
    }


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per PCI function."""
    base = f"{context.paths.sys}/bus/pci/devices"
    try:
        slots = sorted(os.listdir(base))
    except FileNotFoundError:
        return
    ids = (
        _load_ids(context.paths)
        if context.any_used("pci_class", "vendor", "model", "pci_subclass", "subsystem_vendor", "subsystem_model")
        else PciIds()
    )
    for slot in slots:
        row = _device_row(base, slot, ids)
        if row is not None:
            yield row


SPEC = TableSpec(
    name="pci_devices",
    description="PCI devices active on the host system.",
    columns=(
        Column("pci_slot", "TEXT", "PCI Device used slot"),
        Column("pci_class", "TEXT", "PCI Device class"),
        Column("driver", "TEXT", "PCI Device used driver"),
        Column("vendor", "TEXT", "PCI Device vendor"),
        Column("vendor_id", "TEXT", "Hex encoded PCI Device vendor identifier"),
        Column("model", "TEXT", "PCI Device model"),
        Column("model_id", "TEXT", "Hex encoded PCI Device model identifier"),
        Column("pci_class_id", "TEXT", "PCI Device class ID in hex format"),
        Column("pci_subclass_id", "TEXT", "PCI Device  subclass in hex format"),
        Column("pci_subclass", "TEXT", "PCI Device subclass"),
        Column("subsystem_vendor_id", "TEXT", "Vendor ID of PCI device subsystem"),
        Column("subsystem_vendor", "TEXT", "Vendor of PCI device subsystem"),
        Column("subsystem_model_id", "TEXT", "Model ID of PCI device subsystem"),
        Column("subsystem_model", "TEXT", "Device description of PCI device subsystem"),
    ),
    generate=generate,
    examples=("SELECT pci_slot, driver, vendor_id, model_id FROM pci_devices",),
)
