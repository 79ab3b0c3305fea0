"""The two ETHTOOL ioctls osquery's interface_details makes: the driver's bus address and the link speed.

``SIOCETHTOOL`` on an ``AF_INET`` datagram socket, as osquery (interfaces.cpp) does:
``ETHTOOL_GDRVINFO`` gives ``bus_info`` (a PCI device's address such as ``0000:00:03.0``
for a virtio or PCI NIC, a driver-defined text or "" for virtual links), and
``ETHTOOL_GSET`` the speed in Mb/s (SPEED_UNKNOWN when the driver does not know it).
"""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct
from types import TracebackType

__all__ = ["Ethtool"]

SIOCETHTOOL = 0x8946
ETHTOOL_GSET = 0x1
ETHTOOL_GDRVINFO = 0x3
SPEED_UNKNOWN = 0xFFFFFFFF

_IFREQ = struct.Struct("16sP")  # ifr_name, ifr_data (the rest of the 40-byte union is unused)
_IFREQ_SIZE = 40
_DRVINFO_SIZE = 196  # struct ethtool_drvinfo
_BUS_INFO = slice(100, 132)  # after cmd, driver[32], version[32], fw_version[32]
_CMD_SIZE = 44  # struct ethtool_cmd
_SPEED, _SPEED_HI = struct.Struct("=H"), struct.Struct("=H")  # at offsets 12 and 28


class Ethtool:
    """One socket for the ioctls of a query; use as a context manager."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def __enter__(self) -> Ethtool:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._sock.close()

    def _call(self, name: str, command: int, size: int) -> bytes | None:
        buffer = ctypes.create_string_buffer(size)
        struct.pack_into("=I", buffer, 0, command)
        request = _IFREQ.pack(name.encode("utf-8", "surrogateescape")[:15], ctypes.addressof(buffer))
        try:
            fcntl.ioctl(self._sock.fileno(), SIOCETHTOOL, request.ljust(_IFREQ_SIZE, b"\0"))
        except OSError:  # EOPNOTSUPP (no ethtool ops, e.g. lo), ENODEV (gone meanwhile)
            return None
        return buffer.raw

    def bus_info(self, name: str) -> str | None:
        """The driver's ``bus_info`` for interface ``name``; None when the driver does not answer."""
        raw = self._call(name, ETHTOOL_GDRVINFO, _DRVINFO_SIZE)
        if raw is None:
            return None
        return raw[_BUS_INFO].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")

    def speed(self, name: str) -> int | None:
        """Link speed in Mb/s; None when unknown or not supported."""
        raw = self._call(name, ETHTOOL_GSET, _CMD_SIZE)
        if raw is None:
            return None
        speed = (_SPEED_HI.unpack_from(raw, 28)[0] << 16) | _SPEED.unpack_from(raw, 12)[0]
        return None if speed == SPEED_UNKNOWN else speed
