"""block_devices: a fixture /sys/class/block with a disk and a partition, and the live host."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid as uuidlib
from pathlib import Path

import pytest

from tables import block_devices
from tables._blkid import PROBE_SIZE, Probe, probe
from tables.block_devices import parse_udev_properties
from tables.spec import HostPaths
from tables.sqlite import Database


def test_parse_udev_properties() -> None:
    text = "S:disk/by-uuid/1234\nE:ID_FS_UUID=1234-abcd\nE:ID_FS_TYPE=ext4\nE:ID_FS_LABEL=root=fs\nG:systemd\n"
    assert parse_udev_properties(text) == {"ID_FS_UUID": "1234-abcd", "ID_FS_TYPE": "ext4", "ID_FS_LABEL": "root=fs"}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_fixture_tree(tmp_path: Path) -> None:
    sys_root = tmp_path / "sys"
    disk = sys_root / "devices/pci0000:00/0000:00:05.0/block/sda"
    _write(disk / "dev", "8:0\n")
    _write(disk / "size", "2097152\n")
    _write(disk / "queue/logical_block_size", "512\n")
    _write(disk / "device/vendor", "ATA     \n")
    _write(disk / "device/model", "FAKE DISK\n")
    _write(disk / "sda1/dev", "8:1\n")
    _write(disk / "sda1/size", "2095104\n")
    _write(disk / "sda1/partition", "1\n")
    (sys_root / "class/block").mkdir(parents=True)
    os.symlink(disk, sys_root / "class/block/sda")
    os.symlink(disk / "sda1", sys_root / "class/block/sda1")
    _write(tmp_path / "run/udev/data/b8:1", "E:ID_FS_UUID=0b7c-11aa\nE:ID_FS_TYPE=vfat\nE:ID_FS_LABEL=EFI\n")
    db = Database([block_devices.SPEC], paths=HostPaths(sys=str(sys_root), root=str(tmp_path)))
    rows = db.execute("SELECT * FROM block_devices").dicts()
    assert rows == [
        {
            "name": "/dev/sda",
            "parent": "",
            "vendor": "ATA",
            "model": "FAKE DISK",
            "serial": "",
            "size": 2097152,
            "block_size": 512,
            "uuid": "",
            "type": "",
            "label": "",
        },
        {
            "name": "/dev/sda1",
            "parent": "/dev/sda",
            "vendor": "ATA",
            "model": "FAKE DISK",
            "serial": "",
            "size": 2095104,
            "block_size": 512,
            "uuid": "0b7c-11aa",
            "type": "vfat",
            "label": "EFI",
        },
    ]
    assert db.execute("SELECT name FROM block_devices WHERE name = '/dev/sda1'").rows == [("/dev/sda1",)]


def test_live_sizes_match_sysfs() -> None:
    # loop devices come and go and change size as other tests attach them: compare the rest
    stable = {f"/dev/{n}" for n in os.listdir("/sys/class/block") if not n.startswith("loop")}
    rows = Database([block_devices.SPEC]).execute("SELECT name, size FROM block_devices").rows
    assert {r[0] for r in rows if not r[0].startswith("/dev/loop")} == stable
    for name, size in rows:
        if name in stable:
            assert size == int(Path(f"/sys/class/block/{name[5:]}/size").read_text())


# -- superblock probing (tables/_blkid.py) ------------------------------------------

UUID = uuidlib.UUID("0b7c11aa-2233-4455-8899-aabbccddeeff")


def _ext(incompat: int, compat: int = 0, ro_compat: int = 0) -> bytes:
    data = bytearray(PROBE_SIZE)
    sb = 1024
    data[sb + 56 : sb + 58] = (0xEF53).to_bytes(2, "little")
    data[sb + 92 : sb + 96] = compat.to_bytes(4, "little")
    data[sb + 96 : sb + 100] = incompat.to_bytes(4, "little")
    data[sb + 100 : sb + 104] = ro_compat.to_bytes(4, "little")
    data[sb + 104 : sb + 120] = UUID.bytes
    data[sb + 120 : sb + 127] = b"rootfs\0"
    return bytes(data)


def test_probe_canned_superblocks() -> None:
    assert probe(_ext(0x0002 | 0x0040)) == Probe("ext4", str(UUID), "rootfs")  # extents
    assert probe(_ext(0x0002, compat=0x0004)) == Probe("ext3", str(UUID), "rootfs")
    assert probe(_ext(0x0002)) == Probe("ext2", str(UUID), "rootfs")
    swap = bytearray(PROBE_SIZE)
    swap[4086:4096] = b"SWAPSPACE2"
    swap[1036:1052] = UUID.bytes
    swap[1052:1056] = b"swp\0"
    assert probe(bytes(swap)) == Probe("swap", str(UUID), "swp")
    xfs = bytearray(PROBE_SIZE)
    xfs[0:4], xfs[32:48], xfs[108:112] = b"XFSB", UUID.bytes, b"data"
    assert probe(bytes(xfs)) == Probe("xfs", str(UUID), "data")
    luks = bytearray(PROBE_SIZE)
    luks[0:6], luks[168:204] = b"LUKS\xba\xbe", str(UUID).encode()
    assert probe(bytes(luks)) == Probe("crypto_LUKS", str(UUID), "")
    assert probe(bytes(PROBE_SIZE)) is None


def _blkid(device: str) -> dict[str, str]:
    done = subprocess.run(["blkid", "-p", "-o", "export", device], capture_output=True, text=True)
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


@pytest.mark.parametrize("mkfs", [["mkfs.ext4", "-q", "-F", "-L", "agtest-ext4"], ["mkswap", "-L", "agtest-swap"]])
def test_live_loop_device_matches_blkid(tmp_path: Path, mkfs: list[str]) -> None:
    for tool in (mkfs[0], "losetup", "blkid"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    image = tmp_path / "fs.img"
    image.write_bytes(b"\0" * (8 << 20))
    subprocess.run([*mkfs, str(image)], check=True, capture_output=True)
    attach = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if attach.returncode != 0:
        pytest.skip(f"the kernel refuses a loop device: {attach.stderr.strip()}")
    device = attach.stdout.strip()
    try:
        expected = _blkid(device)
        rows = (
            Database([block_devices.SPEC])
            .execute("SELECT type, uuid, label, size FROM block_devices WHERE name = ?", (device,))
            .rows
        )
    finally:
        subprocess.run(["losetup", "-d", device], check=True)
    assert rows == [(expected["TYPE"], expected["UUID"], expected["LABEL"], (8 << 20) // 512)]
