"""os_version: os-release parsing on canned text, and the live host's /etc/os-release."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from tables import os_version
from tables.os_version import os_version_row, parse_os_release
from tables.spec import HostPaths
from tables.sqlite import Database

UBUNTU = """# comment
NAME="Ubuntu"
VERSION="22.04.3 LTS (Jammy Jellyfish)"
ID=ubuntu
ID_LIKE=debian
PRETTY_NAME="Ubuntu 22.04.3 LTS"
VERSION_ID="22.04"
VERSION_CODENAME=jammy

BROKEN LINE
"""


def test_ubuntu_patch_from_version() -> None:
    row = os_version_row(parse_os_release(UBUNTU), "x86_64")
    assert row == {
        "name": "Ubuntu",
        "version": "22.04.3 LTS (Jammy Jellyfish)",
        "major": 22,
        "minor": 4,
        "patch": 3,
        "build": "",
        "platform": "ubuntu",
        "platform_like": "debian",
        "codename": "jammy",
        "arch": "x86_64",
    }


def test_debian_and_rolling_and_escapes() -> None:
    debian = os_version_row(
        parse_os_release(
            'NAME="Debian GNU/Linux"\nVERSION_ID="12"\nVERSION="12 (bookworm)"\nID=debian\nVERSION_CODENAME=bookworm\n'
        ),
        "x86_64",
    )
    assert (debian["major"], debian["minor"], debian["patch"]) == (12, 0, 0)
    arch = os_version_row(parse_os_release('NAME="Arch Linux"\nID=arch\nBUILD_ID=rolling\n'), "x86_64")
    assert (arch["major"], arch["version"], arch["build"]) == (None, "", "rolling")
    assert parse_os_release('NAME="Quote \\"me\\""\nID=\'x\'\n') == {"NAME": 'Quote "me"', "ID": "x"}


def test_live_host_matches_os_release() -> None:
    release = platform.freedesktop_os_release()
    row = Database([os_version.SPEC]).execute("SELECT * FROM os_version").dicts()[0]
    assert row["name"] == release["NAME"]
    assert row["platform"] == release["ID"]
    assert row["codename"] == release.get("VERSION_CODENAME", "")
    assert row["arch"] == os.uname().machine
    if "VERSION_ID" in release:
        assert str(row["major"]) == release["VERSION_ID"].split(".")[0]


def test_fallback_to_usr_lib_and_namespace_columns(tmp_path: Path) -> None:
    (tmp_path / "usr/lib").mkdir(parents=True)
    (tmp_path / "usr/lib/os-release").write_text("NAME=Fedora\nID=fedora\nVERSION_ID=39\n")
    db = Database([os_version.SPEC], paths=HostPaths(root=str(tmp_path)))
    assert db.execute("SELECT name, major FROM os_version").rows == [("Fedora", 39)]
    live = Database([os_version.SPEC])
    rows = live.execute(
        "SELECT platform, pid_with_namespace, mount_namespace_id FROM os_version WHERE pid_with_namespace = ?",
        (os.getpid(),),
    ).rows
    link = os.readlink(f"/proc/{os.getpid()}/ns/mnt")
    assert rows == [(platform.freedesktop_os_release()["ID"], os.getpid(), link[link.index("[") + 1 : -1])]
