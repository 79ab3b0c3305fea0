"""disk_encryption: dm-crypt detection from device-mapper uuids in a fixture sysfs tree.

This kernel has no device-mapper, so no live dm-crypt device can be made; the live test
checks that every real block device is listed as not encrypted unless it is a dm target.
"""

from __future__ import annotations

import os
from pathlib import Path

from tables import disk_encryption
from tables.disk_encryption import crypt_type
from tables.spec import HostPaths
from tables.sqlite import Database


def test_crypt_type() -> None:
    assert crypt_type("CRYPT-LUKS2-0123456789abcdef0123456789abcdef-luks-root") == "luks2"
    assert crypt_type("CRYPT-PLAIN-swap") == "plain"
    assert crypt_type("LVM-abc") is None and crypt_type("") is None


def test_fixture(tmp_path: Path) -> None:
    block = tmp_path / "class/block"
    (block / "sda").mkdir(parents=True)
    (block / "dm-0/dm").mkdir(parents=True)
    (block / "dm-0/dm/uuid").write_text("CRYPT-LUKS2-0123456789abcdef0123456789abcdef-luks-root\n")
    (block / "dm-1/dm").mkdir(parents=True)
    (block / "dm-1/dm/uuid").write_text("LVM-xyz\n")
    db = Database([disk_encryption.SPEC], paths=HostPaths(sys=str(tmp_path)))
    assert db.execute("SELECT * FROM disk_encryption").rows == [
        ("/dev/dm-0", "0123456789abcdef0123456789abcdef", 1, "luks2", "encrypted"),
        ("/dev/dm-1", "", 0, "", "not encrypted"),
        ("/dev/sda", "", 0, "", "not encrypted"),
    ]
    assert db.execute("SELECT name FROM disk_encryption WHERE encrypted = 1").rows == [("/dev/dm-0",)]


def test_live() -> None:
    rows = Database([disk_encryption.SPEC]).execute("SELECT name, encrypted FROM disk_encryption").rows
    stable = {f"/dev/{n}" for n in os.listdir("/sys/class/block") if not n.startswith("loop")}
    assert {r[0] for r in rows if not r[0].startswith("/dev/loop")} == stable  # loop devices come and go
    for name, encrypted in rows:
        uuid = Path(f"/sys/class/block/{name[5:]}/dm/uuid")
        assert encrypted == (1 if uuid.exists() and uuid.read_text().startswith("CRYPT-") else 0)
