"""Kernel uevents (NETLINK_KOBJECT_UEVENT, group 1) -> hardware_events rows for USB hotplug.

A kernel uevent datagram is ``ACTION@DEVPATH\\0KEY=VALUE\\0...``.  For USB devices
(``SUBSYSTEM=usb``, ``DEVTYPE=usb_device``) it carries ``PRODUCT=vid/pid/bcdDevice``
(hex, unpadded), ``DEVNAME=bus/usb/BBB/DDD``, ``TYPE``, ``BUSNUM``, ``DEVNUM``.  Names
(manufacturer, product, serial) are sysfs attributes, read at ``add`` time and
remembered for the matching ``remove`` (sysfs is gone by then).  No udev is needed;
udevd's re-broadcasts (group 2, ``libudev`` header) are not read.  Listening needs no
capability.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tables.procfs import read_attr
from tables.text import decode

from ._netlink import NetlinkReader, open_netlink
from .base import EventSource, Sink, SourceMode, SourceStatus, SourceUnavailable

__all__ = ["Uevent", "UeventError", "UeventSource", "hardware_row", "parse_uevent", "read_sysfs_attrs"]

log = logging.getLogger(__name__)

NETLINK_KOBJECT_UEVENT = 15
UEVENT_GROUP_KERNEL = 1
_REMEMBERED_MAX = 1024  # devices whose names we keep for their remove event

#: sysfs attribute files of a USB device and the row keys they fill.
SYSFS_ATTRS = {
    "manufacturer": "vendor",
    "product": "model",
    "serial": "serial",
    "idVendor": "vendor_id",
    "idProduct": "model_id",
    "bcdDevice": "revision",
}


class UeventError(ValueError):
    """A datagram that is not a kernel uevent."""


@dataclass(frozen=True, slots=True)
class Uevent:
    """One kernel uevent: the header's action and devpath, and its KEY=VALUE environment."""

    action: str
    devpath: str
    env: Mapping[str, str]

    @property
    def subsystem(self) -> str | None:
        return self.env.get("SUBSYSTEM")


def parse_uevent(data: bytes) -> Uevent:
    """Decode one kernel uevent datagram; raise :class:`UeventError` when it is not one."""
    if data.startswith(b"libudev\0"):
        raise UeventError("a udevd re-broadcast (libudev header), not a kernel uevent")
    parts = data.split(b"\0")
    header = decode(parts[0])
    action, sep, devpath = header.partition("@")
    if not sep or not action or not devpath.startswith("/"):
        raise UeventError(f"no ACTION@DEVPATH header: {header[:60]!r}")
    env: dict[str, str] = {}
    for part in parts[1:]:
        if not part:
            continue
        key, eq, value = part.partition(b"=")
        if not eq:
            raise UeventError(f"{header}: field without '=': {part[:60]!r}")
        env[decode(key)] = decode(value)
    return Uevent(action=env.get("ACTION", action), devpath=env.get("DEVPATH", devpath), env=env)


def _hex4(value: str | None) -> str | None:
    """'46d' -> '046d' (PRODUCT's fields are unpadded hex)."""
    if not value:
        return None
    try:
        return f"{int(value, 16):04x}"
    except ValueError:
        return value


def hardware_row(event: Uevent, attrs: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A hardware_events row from a uevent and the device's sysfs attributes (if read)."""
    env = event.env
    vid = pid = rev = None
    product = env.get("PRODUCT")
    if product:
        fields = product.split("/")
        vid, pid = _hex4(fields[0]), _hex4(fields[1]) if len(fields) > 1 else None
        rev = _hex4(fields[2]) if len(fields) > 2 else None
    attrs = attrs or {}
    devname = env.get("DEVNAME")
    row: dict[str, Any] = {
        "action": event.action,
        "path": ("/dev/" + devname if not devname.startswith("/") else devname) if devname else None,
        "type": env.get("DEVTYPE"),
        "driver": env.get("DRIVER"),
        "vendor": attrs.get("vendor"),
        "vendor_id": attrs.get("vendor_id") or vid,
        "model": attrs.get("model"),
        "model_id": attrs.get("model_id") or pid,
        "serial": attrs.get("serial"),
        "revision": attrs.get("revision") or rev,
        "time": int(time.time()),
    }
    return row


def read_sysfs_attrs(sys_root: str, devpath: str) -> dict[str, str]:
    """The USB name/id attributes under ``{sys_root}{devpath}``; missing files are left out."""
    base = os.path.join(sys_root, devpath.lstrip("/"))
    out: dict[str, str] = {}
    for name, key in SYSFS_ATTRS.items():
        if value := read_attr(base, name):
            out[key] = value
    return out


class UeventSource(EventSource):
    """hardware_events rows for USB devices added and removed (kernel uevents)."""

    name = "uevent"

    def __init__(
        self,
        sink: Sink,
        *,
        sys_root: str = "/sys",
        subsystems: Iterable[str] = ("usb",),
        devtypes: Iterable[str] | None = ("usb_device",),
        actions: Iterable[str] = ("add", "remove"),
    ) -> None:
        super().__init__(sink)
        self.sys_root = sys_root
        self.subsystems = frozenset(subsystems)
        self.devtypes = frozenset(devtypes) if devtypes is not None else None
        self.actions = frozenset(actions)
        self._reader = NetlinkReader(self.handle, what="uevent")
        self._names: OrderedDict[str, dict[str, str]] = OrderedDict()
        self._mode = SourceMode.INACTIVE
        self._detail = "not started"
        self.uevents = 0
        self.rows = 0
        self.malformed = 0

    async def start(self) -> None:
        if self._reader.sock is not None:
            return
        try:
            # 1 MiB: hotplug rates are low; SO_RCVBUF's cap (rmem_max) is enough without root
            sock = open_netlink(
                NETLINK_KOBJECT_UEVENT, groups=UEVENT_GROUP_KERNEL, sock_type=socket.SOCK_DGRAM, rcvbuf=1 << 20
            )
        except OSError as exc:
            self._mode, self._detail = SourceMode.FAILED, f"cannot listen to kernel uevents: {exc}"
            raise SourceUnavailable(self._detail) from exc
        self._reader.attach(sock, asyncio.get_running_loop())
        self._mode = SourceMode.ACTIVE
        self._detail = f"kernel uevents for {', '.join(sorted(self.subsystems))} ({', '.join(sorted(self.actions))})"
        log.info("uevent: %s", self._detail)

    async def stop(self) -> None:
        sock = self._reader.detach()  # and read what is already queued
        if sock is None:
            return
        sock.close()
        self._mode, self._detail = SourceMode.STOPPED, "stopped"

    @property
    def overruns(self) -> int:
        """ENOBUFS: uevents the kernel dropped because the socket buffer was full."""
        return self._reader.overruns

    def status(self) -> SourceStatus:
        return SourceStatus(
            name=self.name,
            mode=self._mode,
            tables=("hardware_events",),
            events_seen=self.rows,
            kernel_lost=self.overruns,
            parse_errors=self.malformed,
            detail=self._detail,
            extra={"uevents": self.uevents, "overruns_enobufs": self.overruns},
        )

    def handle(self, data: bytes) -> dict[str, Any] | None:
        """Turn one datagram into a row (sent to the sink) or nothing; counts what it drops."""
        self.uevents += 1
        try:
            event = parse_uevent(data)
        except UeventError as exc:
            self.malformed += 1
            log.debug("uevent: %s", exc)
            return None
        if event.subsystem not in self.subsystems or event.action not in self.actions:
            return None
        if self.devtypes is not None and event.env.get("DEVTYPE") not in self.devtypes:
            return None
        attrs: dict[str, str] | None
        if event.action == "remove":
            attrs = self._names.pop(event.devpath, None)
        else:
            attrs = read_sysfs_attrs(self.sys_root, event.devpath)
            self._names[event.devpath] = attrs
            if len(self._names) > _REMEMBERED_MAX:
                self._names.popitem(last=False)
        row = hardware_row(event, attrs)
        self.rows += 1
        self.sink("hardware_events", row)
        return row
