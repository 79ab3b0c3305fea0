"""kernel_info: /proc/version and /proc/cmdline parsing, and the live kernel."""

from __future__ import annotations

import os
from pathlib import Path

from tables import kernel_info
from tables.kernel_info import parse_cmdline, parse_proc_version
from tables.spec import HostPaths
from tables.sqlite import Database


def test_parsers() -> None:
    assert (
        parse_proc_version("Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org) (gcc-12) #1 SMP")
        == "6.1.0-18-amd64"
    )
    assert parse_proc_version("garbage") is None
    assert parse_cmdline("BOOT_IMAGE=/boot/vmlinuz-6.1.0-18-amd64 root=UUID=1234-abcd ro quiet\n") == {
        "path": "/boot/vmlinuz-6.1.0-18-amd64",
        "device": "UUID=1234-abcd",
        "arguments": "ro quiet",
    }
    assert parse_cmdline("") == {"path": "", "device": "", "arguments": ""}


def test_live_kernel() -> None:
    row = Database([kernel_info.SPEC]).execute("SELECT * FROM kernel_info").dicts()[0]
    assert row["version"] == os.uname().release
    cmdline = Path("/proc/cmdline").read_text().split()
    assert row["arguments"].split() == [a for a in cmdline if not a.startswith(("BOOT_IMAGE=", "root="))]


def test_fixture_proc(tmp_path: Path) -> None:
    (tmp_path / "version").write_text("Linux version 5.15.0-91-generic (buildd@lcy02) #101-Ubuntu SMP\n")
    (tmp_path / "cmdline").write_text("BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro\n")
    db = Database([kernel_info.SPEC], paths=HostPaths(proc=str(tmp_path)))
    assert db.execute("SELECT version, path, device, arguments FROM kernel_info").rows == [
        ("5.15.0-91-generic", "/vmlinuz", "/dev/sda1", "ro")
    ]
