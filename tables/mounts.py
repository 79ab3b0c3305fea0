"""mounts: mounted filesystems from ``/proc/self/mounts`` with statvfs() block/inode counts.

As osquery's mounts.cpp: device, mount point, type and option string from the mount
table; ``device_alias`` is the device path with symlinks resolved; block and inode
counts come from statvfs() of the mount point (NULL when it cannot be stat'ed, e.g. a
mount point hidden by a later mount or unreachable).  statvfs() runs only when one of
those columns is selected.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from .spec import Column, QueryContext, Row, TableError, TableSpec
from .text import decode

__all__ = ["SPEC", "MountEntry", "generate", "parse_mounts"]

log = logging.getLogger(__name__)

_STATVFS_COLUMNS = ("blocks_size", "blocks", "blocks_free", "blocks_available", "inodes", "inodes_free")
_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True, slots=True)
class MountEntry:
    """One line of /proc/<pid>/mounts (fstab format)."""

    device: str
    path: str
    type: str
    options: str


def _unescape(field: str) -> str:
    """The kernel escapes space, tab, newline and backslash as ``\\ooo`` (a byte; >= 0x80 kept as tables.text does)."""
    return _OCTAL.sub(lambda m: _byte(int(m.group(1), 8)), field)


def _byte(value: int) -> str:
    return chr(value) if value < 0x80 else chr(0xDC00 + value)


def parse_mounts(text: str) -> list[MountEntry]:
    """Parse the text of /proc/self/mounts; malformed lines are skipped.

    Fields are separated by single spaces and lines by newlines (the kernel escapes both
    inside a field); every other character, Unicode blanks included, belongs to the field.
    """
    entries: list[MountEntry] = []
    for line in text.split("\n"):
        fields = line.split(" ")
        if len(fields) < 4:
            continue
        entries.append(MountEntry(*(_unescape(f) for f in fields[:4])))
    return entries


def _device_alias(device: str, context: QueryContext) -> str:
    if not device.startswith("/"):
        return device
    try:
        real = os.path.realpath(context.paths.host(device), strict=True)
    except OSError:
        return device
    root = context.paths.root
    if root not in ("", "/") and real.startswith(root.rstrip("/") + "/"):
        real = real[len(root.rstrip("/")) :]
    return real


def generate(context: QueryContext) -> Iterator[Row]:
    source = os.path.join(context.paths.proc, "self", "mounts")
    try:
        with open(source, "rb") as handle:
            text = decode(handle.read())
    except OSError as exc:
        raise TableError(f"table mounts: cannot read {source}: {exc}") from exc
    want_statvfs = context.any_used(*_STATVFS_COLUMNS)
    want_alias = context.is_column_used("device_alias")
    for entry in parse_mounts(text):
        row: Row = {
            "device": entry.device,
            "device_alias": _device_alias(entry.device, context) if want_alias else None,
            "path": entry.path,
            "type": entry.type,
            "flags": entry.options,
        }
        if want_statvfs:
            try:
                st = os.statvfs(context.paths.host(entry.path))
            except OSError as exc:
                log.debug("mounts: statvfs(%s) failed: %s", entry.path, exc)
            else:
                row.update(
                    blocks_size=st.f_bsize,
                    blocks=st.f_blocks,
                    blocks_free=st.f_bfree,
                    blocks_available=st.f_bavail,
                    inodes=st.f_files,
                    inodes_free=st.f_ffree,
                )
        yield row


SPEC = TableSpec(
    name="mounts",
    description="System mounted devices and filesystems (not process specific).",
    columns=(
        Column("device", "TEXT", "Mounted device"),
        Column("device_alias", "TEXT", "Mounted device alias"),
        Column("path", "TEXT", "Mounted device path"),
        Column("type", "TEXT", "Mounted device type"),
        Column("blocks_size", "BIGINT", "Block size in bytes"),
        Column("blocks", "BIGINT", "Mounted device used blocks"),
        Column(
            "blocks_free", "BIGINT", "Mounted device blocks available to root users, a superset of blocks_available"
        ),
        Column("blocks_available", "BIGINT", "Mounted device blocks available to non-root users"),
        Column("inodes", "BIGINT", "Mounted device used inodes"),
        Column("inodes_free", "BIGINT", "Mounted device free inodes"),
        Column("flags", "TEXT", "Mounted device flags"),
    ),
    generate=generate,
    examples=(
        "SELECT device, path, type, flags FROM mounts",
        "SELECT path, blocks_available * blocks_size AS bytes_free FROM mounts WHERE type = 'ext4'",
    ),
)
