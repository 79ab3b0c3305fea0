"""hardware_events: USB devices added and removed, from kernel uevents (osquery's columns)."""

from __future__ import annotations

from .events import event_table
from .spec import Column

__all__ = ["SPEC"]

SPEC = event_table(
    "hardware_events",
    "USB devices plugged in and removed, from kernel uevents.",
    (
        Column("action", "TEXT", "What happened: add or remove"),
        Column("path", "TEXT", "Device node, e.g. /dev/bus/usb/001/002 (when the kernel names one)"),
        Column("type", "TEXT", "Kernel device type, e.g. usb_device"),
        Column("driver", "TEXT", "Driver bound to the device (when the uevent names one)"),
        Column("vendor", "TEXT", "Manufacturer name from sysfs"),
        Column("vendor_id", "TEXT", "USB vendor id, 4 hex digits"),
        Column("model", "TEXT", "Product name from sysfs"),
        Column("model_id", "TEXT", "USB product id, 4 hex digits"),
        Column("serial", "TEXT", "Serial number from sysfs (when the device has one)"),
        Column("revision", "TEXT", "Device release (bcdDevice), 4 hex digits"),
        Column("time", "BIGINT", "When the event happened, UNIX seconds", additional=True),
        Column("eid", "TEXT", "Event id in the event store", hidden=True),
    ),
    examples=(
        "SELECT time, action, vendor_id, model_id, vendor, model, serial FROM hardware_events",
        "SELECT * FROM hardware_events WHERE action = 'add' AND type = 'usb_device'",
    ),
)
