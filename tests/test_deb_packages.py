"""deb_packages: dpkg status parsing (continuation lines, odd stanzas) and dpkg-query on the live host."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tables import deb_packages
from tables.deb_packages import package_row, parse_status
from tables.spec import HostPaths
from tables.sqlite import Database

STATUS = """Package: libc6
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 12988
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: amd64
Multi-Arch: same
Source: glibc (2.36-9+deb12u4)
Version: 2.36-9+deb12u4
Conffiles:
 /etc/ld.so.conf.d/x86_64-linux-gnu.conf d4e7a7b88a71b5ffd9e2644e71a0cfab
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.
 .
 Second paragraph.

Package: removed-pkg
Status: deinstall ok config-files
Architecture: amd64
Version: 1:1.0-1

Package: gone
Status: purge ok not-installed
Architecture: amd64

Package: tzdata
Status: install ok installed
Installed-Size: not-a-number
Architecture: all
Version: 2024a-0+deb12u1
"""


def test_parse_status_continuations() -> None:
    stanzas = parse_status(STATUS)
    assert [s["Package"] for s in stanzas] == ["libc6", "removed-pkg", "gone", "tzdata"]
    assert stanzas[0]["Description"].splitlines() == [
        "GNU C Library: Shared libraries",
        "Contains the standard libraries that are used by nearly all programs on",
        "the system.",
        ".",
        "Second paragraph.",
    ]
    assert stanzas[0]["Conffiles"].strip().startswith("/etc/ld.so.conf.d/")


def test_rows() -> None:
    rows = [package_row(s, "/var/lib/dpkg") for s in parse_status(STATUS)]
    assert rows[0] == {
        "name": "libc6",
        "version": "2.36-9+deb12u4",
        "source": "glibc (2.36-9+deb12u4)",  # osquery keeps the source version
        "size": 12988,
        "arch": "amd64",
        "revision": "9+deb12u4",
        "status": "install ok installed",
        "maintainer": "GNU Libc Maintainers <debian-glibc@lists.debian.org>",
        "section": "libs",
        "priority": "optional",
        "admindir": "/var/lib/dpkg",
    }
    assert rows[1]["version"] == "1:1.0-1" and rows[1]["revision"] == "1"
    assert rows[2] is None  # not-installed
    assert rows[3]["size"] is None and rows[3]["source"] == ""


def test_fixture_admindir(tmp_path: Path) -> None:
    (tmp_path / "var/lib/dpkg").mkdir(parents=True)
    (tmp_path / "var/lib/dpkg/status").write_text(STATUS)
    (tmp_path / "alt").mkdir()
    (tmp_path / "alt/status").write_text("Package: only-alt\nStatus: install ok installed\nVersion: 1\n")
    db = Database([deb_packages.SPEC], paths=HostPaths(root=str(tmp_path)))
    assert [r[0] for r in db.execute("SELECT name FROM deb_packages").rows] == ["libc6", "removed-pkg", "tzdata"]
    assert db.execute("SELECT name, admindir FROM deb_packages WHERE admindir = '/alt'").rows == [("only-alt", "/alt")]


def test_live_matches_dpkg_query() -> None:
    if shutil.which("dpkg-query") is None or not Path("/var/lib/dpkg/status").exists():
        pytest.skip("not a dpkg-based system")
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${Source}\t${db:Status-Status}\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    expected = Counter(
        (n, v, src) for n, v, src, st in (line.split("\t") for line in out.splitlines()) if st != "not-installed"
    )
    rows = Database([deb_packages.SPEC]).execute("SELECT name, version, source FROM deb_packages").rows
    assert Counter(rows) == expected  # ${Source} is the raw field: "bash (5.2.15-2)" when versioned
