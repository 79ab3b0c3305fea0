"""A small libblkid stand-in: filesystem type, UUID and label from a device's superblock.

Used by block_devices when udev has recorded nothing (no /run/udev/data, e.g. in
containers).  Knows ext2/3/4, swap, xfs, btrfs and LUKS; anything else is "unknown".
:func:`probe` is pure (bytes in); :func:`probe_device` reads the device.
"""

from __future__ import annotations

import os
import uuid as uuidlib
from dataclasses import dataclass

from .text import decode

__all__ = ["PROBE_SIZE", "Probe", "probe", "probe_device"]

PROBE_SIZE = 69632  # enough for the btrfs superblock at 64 KiB

_EXT_SB = 1024
_EXT3_INCOMPAT = 0x0002 | 0x0004 | 0x0010  # FILETYPE, RECOVER, META_BG
_EXT3_RO_COMPAT = 0x0001 | 0x0002 | 0x0004  # SPARSE_SUPER, LARGE_FILE, BTREE_DIR
_EXT_HAS_JOURNAL = 0x0004
_EXT_JOURNAL_DEV = 0x0008


@dataclass(frozen=True, slots=True)
class Probe:
    type: str
    uuid: str
    label: str


def _cstr(raw: bytes) -> str:
    return decode(raw.split(b"\0", 1)[0]).strip()


def _uuid(raw: bytes) -> str:
    return "" if raw == b"\0" * 16 else str(uuidlib.UUID(bytes=raw))


def _le(data: bytes, offset: int, size: int) -> int:
    return int.from_bytes(data[offset : offset + size], "little")


def probe(data: bytes) -> Probe | None:
    """The filesystem in the first :data:`PROBE_SIZE` bytes of a device, or None if not recognised."""
    if data[:6] == b"LUKS\xba\xbe":
        return Probe("crypto_LUKS", _cstr(data[168:208]), "")
    if data[:4] == b"XFSB":
        return Probe("xfs", _uuid(data[32:48]), _cstr(data[108:120]))
    if data[65536 + 64 : 65536 + 72] == b"_BHRfS_M":
        base = 65536
        return Probe("btrfs", _uuid(data[base + 32 : base + 48]), _cstr(data[base + 299 : base + 555]))
    for page in (4096, 8192, 16384, 65536):
        if data[page - 10 : page] in (b"SWAPSPACE2", b"SWAP-SPACE"):
            return Probe("swap", _uuid(data[1036:1052]), _cstr(data[1052:1068]))
    if len(data) >= _EXT_SB + 136 and _le(data, _EXT_SB + 56, 2) == 0xEF53:
        compat = _le(data, _EXT_SB + 92, 4)
        incompat = _le(data, _EXT_SB + 96, 4)
        ro_compat = _le(data, _EXT_SB + 100, 4)
        if incompat & _EXT_JOURNAL_DEV:
            kind = "jbd"
        elif incompat & ~_EXT3_INCOMPAT or ro_compat & ~_EXT3_RO_COMPAT:
            kind = "ext4"
        elif compat & _EXT_HAS_JOURNAL:
            kind = "ext3"
        else:
            kind = "ext2"
        return Probe(kind, _uuid(data[_EXT_SB + 104 : _EXT_SB + 120]), _cstr(data[_EXT_SB + 120 : _EXT_SB + 136]))
    return None


def probe_device(path: str) -> Probe | None:
    """Probe the device node at ``path``; None when it cannot be read or is not recognised."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None  # missing node, EPERM (sandboxed devices), ENOMEDIUM (empty drive)
    try:
        data = os.pread(fd, PROBE_SIZE, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
    return probe(data)
