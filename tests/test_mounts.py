"""mounts: canned mount-table text, and the live table against /proc/self/mounts and statvfs."""

from __future__ import annotations

import os
from pathlib import Path

from tables import mounts
from tables.mounts import MountEntry, parse_mounts
from tables.spec import HostPaths
from tables.sqlite import Database
from tests._table_checks import assert_column_types

CANNED = """\
/dev/vda1 / ext4 rw,relatime,errors=remount-ro 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
/dev/sdb1 /media/usb\\040stick vfat rw,uid=1000 0 0
garbage
"""


def test_parse_mounts_unescapes_and_skips_garbage() -> None:
    assert parse_mounts(CANNED) == [
        MountEntry("/dev/vda1", "/", "ext4", "rw,relatime,errors=remount-ro"),
        MountEntry("proc", "/proc", "proc", "rw,nosuid,nodev,noexec,relatime"),
        MountEntry("/dev/sdb1", "/media/usb stick", "vfat", "rw,uid=1000"),
    ]


def test_live_rows_match_proc_mounts() -> None:
    def read() -> list[tuple[str, str, str, str]]:
        with open("/proc/self/mounts") as handle:
            return [(e.device, e.path, e.type, e.options) for e in parse_mounts(handle.read())]

    db = Database([mounts.SPEC])
    # other tests may mount (ip netns add does): compare against the table read around the query
    before = read()
    rows = db.execute("SELECT device, path, type, flags FROM mounts").rows
    after = read()
    assert rows in (before, after)
    assert "/" in {path for _, path, _, _ in rows}


def test_root_blocks_match_statvfs() -> None:
    db = Database([mounts.SPEC])
    rows = db.execute("SELECT blocks_size, blocks, inodes, type FROM mounts WHERE path = '/'").dicts()
    assert rows
    st = os.statvfs("/")
    # total sizes do not move while the test runs; free counts might, so they are not compared
    assert rows[-1]["blocks_size"] == st.f_bsize
    assert rows[-1]["blocks"] == st.f_blocks
    assert rows[-1]["inodes"] == st.f_files


def test_fixture_proc_root(tmp_path: Path) -> None:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mounts").write_text(f"tmpfs {tmp_path} tmpfs rw 0 0\nnone /no/such/dir tmpfs rw 0 0\n")
    db = Database([mounts.SPEC], paths=HostPaths(proc=str(tmp_path)))
    rows = {r["path"]: r for r in db.execute("SELECT * FROM mounts").dicts()}
    assert rows[str(tmp_path)]["blocks_size"] == os.statvfs(tmp_path).f_bsize
    assert rows["/no/such/dir"]["blocks"] is None  # statvfs failed: NULL, row kept
    assert rows["/no/such/dir"]["device_alias"] == "none"


def test_device_alias_resolves_symlinks(tmp_path: Path) -> None:
    (tmp_path / "self").mkdir()
    real = tmp_path / "realdev"
    real.write_text("")
    (tmp_path / "alias").symlink_to(real)
    (tmp_path / "self" / "mounts").write_text(f"{tmp_path}/alias /mnt ext4 rw 0 0\n")
    db = Database([mounts.SPEC], paths=HostPaths(proc=str(tmp_path)))
    assert db.execute("SELECT device, device_alias FROM mounts").rows == [(f"{tmp_path}/alias", str(real))]


def test_column_types() -> None:
    rows = Database([mounts.SPEC]).execute("SELECT * FROM mounts").dicts()
    assert rows
    assert_column_types(mounts.SPEC, rows)
