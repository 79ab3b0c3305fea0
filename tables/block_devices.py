"""block_devices: disks and partitions from /sys/class/block; filesystem ids from udev or the superblock."""

from __future__ import annotations

import os
from collections.abc import Iterator

from ._blkid import probe_device
from ._files import read_text
from .procfs import read_attr
from .spec import Column, HostPaths, QueryContext, Row, TableSpec

__all__ = ["SPEC", "generate", "parse_udev_properties"]


def parse_udev_properties(text: str) -> dict[str, str]:
    """``E:KEY=value`` lines of a udev database file (/run/udev/data/b<major>:<minor>)."""
    props = {}
    for line in text.split("\n"):
        if line.startswith("E:"):
            key, _, value = line[2:].partition("=")
            props[key] = value
    return props


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def _device_row(paths: HostPaths, name: str, probe: bool) -> Row:
    node = f"{paths.sys}/class/block/{name}"
    is_partition = os.path.exists(f"{node}/partition")
    disk = os.path.basename(os.path.dirname(os.path.realpath(node))) if is_partition else None
    device_dir = f"{paths.sys}/class/block/{disk or name}/device"
    dev = read_attr(f"{node}/dev") or ""
    props = parse_udev_properties(read_text(paths.host(f"/run/udev/data/b{dev}")) or "") if dev else {}
    queue = f"{paths.sys}/class/block/{disk or name}/queue"
    size = _int(read_attr(f"{node}/size"))
    if probe and "ID_FS_TYPE" not in props and size:
        found = probe_device(paths.host(f"/dev/{name}"))  # no udev record: read the superblock
        if found is not None:
            props = {**props, "ID_FS_TYPE": found.type, "ID_FS_UUID": found.uuid, "ID_FS_LABEL": found.label}
    return {
        "name": f"/dev/{name}",
        "parent": f"/dev/{disk}" if disk else "",
        "vendor": props.get("ID_VENDOR") or read_attr(f"{device_dir}/vendor") or "",
        "model": props.get("ID_MODEL") or read_attr(f"{device_dir}/model") or "",
        "serial": props.get("ID_SERIAL_SHORT")
        or read_attr(f"{node}/serial")
        or read_attr(f"{device_dir}/serial")
        or "",
        "size": size,
        "block_size": _int(read_attr(f"{queue}/logical_block_size")),
        "uuid": props.get("ID_FS_UUID", ""),
        "type": props.get("ID_FS_TYPE", ""),
        "label": props.get("ID_FS_LABEL", ""),
    }


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per block device and partition; ``name`` (``/dev/sda``) limits the scan."""
    wanted = context.values("name")
    probe = context.any_used("uuid", "type", "label")
    try:
        names = sorted(os.listdir(f"{context.paths.sys}/class/block"))
    except FileNotFoundError:
        return
    for name in names:
        if wanted is not None and f"/dev/{name}" not in wanted:
            continue
        try:
            yield _device_row(context.paths, name, probe)
        except FileNotFoundError:
            continue  # the device was removed while we read it


SPEC = TableSpec(
    name="block_devices",
    description="Block (buffered access) device file nodes: disks, ramdisks, and DMG containers.",
    columns=(
        Column("name", "TEXT", "Block device name", index=True),
        Column("parent", "TEXT", "Block device parent name"),
        Column("vendor", "TEXT", "Block device vendor string"),
        Column("model", "TEXT", "Block device model string identifier"),
        Column("serial", "TEXT", "Disk serial number"),
        Column("size", "BIGINT", "Block device size in blocks"),
        Column("block_size", "INTEGER", "Block size in bytes"),
        Column("uuid", "TEXT", "Block device Universally Unique Identifier"),
        Column("type", "TEXT", "Block device type string"),
        Column("label", "TEXT", "Block device label string"),
    ),
    generate=generate,
    examples=("SELECT name, parent, size, block_size, type FROM block_devices",),
)
