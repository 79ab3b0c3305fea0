"""apt_sources: one-line and deb822 sources with fetched Release files in a fixture tree."""

from __future__ import annotations

from pathlib import Path

from tables import apt_sources
from tables.apt_sources import AptSource, parse_deb822, parse_release, parse_source_line
from tables.spec import HostPaths
from tables.sqlite import Database

RELEASE = """Origin: Debian
Label: Debian
Suite: stable
Version: 12.15
Codename: bookworm
Architectures: all amd64 arm64
Components: main contrib
Description: Debian 12.15 Released
MD5Sum:
 0ed6d4c8891eb86358b94bb35d9e4da4  1484322 contrib/Contents-all
-----BEGIN PGP SIGNATURE-----
Version: GnuPG
"""

DEB822 = """Types: deb deb-src
# a comment
URIs: http://deb.debian.org/debian/
Suites: bookworm bookworm-updates
Components: main

Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm

Types: deb
URIs: http://disabled.example.org/debian
Suites: bookworm
Enabled: no
"""


def test_parse_source_line() -> None:
    assert parse_source_line(
        "deb [arch=amd64 signed-by=/k.gpg] http://ppa.example.org/repo/ jammy main # x"
    ) == AptSource("ppa.example.org/repo jammy", "http://ppa.example.org/repo", "ppa.example.org_repo_dists_jammy")
    assert parse_source_line("deb https://example.org/flat ./") == AptSource(
        "example.org/flat ./", "https://example.org/flat", "example.org_flat_."
    )
    assert parse_source_line("deb-src http://x.org/debian bookworm main") is None
    assert parse_source_line("# deb http://x.org/debian bookworm main") is None
    assert parse_source_line("deb /local/path bookworm") is None


def test_parse_deb822() -> None:
    assert [s.name for s in parse_deb822(DEB822)] == [
        "deb.debian.org/debian bookworm",
        "deb.debian.org/debian bookworm-updates",
    ]


def test_parse_release() -> None:
    fields = parse_release(RELEASE)
    assert fields["Codename"] == "bookworm" and fields["Version"] == "12.15" and fields["Origin"] == "Debian"


def test_fixture_tree(tmp_path: Path) -> None:
    (tmp_path / "etc/apt/sources.list.d").mkdir(parents=True)
    (tmp_path / "var/lib/apt/lists").mkdir(parents=True)
    (tmp_path / "etc/apt/sources.list").write_text("deb http://mirror.example.org/debian bookworm main\n")
    (tmp_path / "etc/apt/sources.list.d/debian.sources").write_text(DEB822)
    (tmp_path / "etc/apt/sources.list.d/other.list").write_text("deb http://never-fetched.example.org/x y z\n")
    lists = tmp_path / "var/lib/apt/lists"
    (lists / "deb.debian.org_debian_dists_bookworm_InRelease").write_text(RELEASE)
    (lists / "mirror.example.org_debian_dists_bookworm_Release").write_text(RELEASE)
    db = Database([apt_sources.SPEC], paths=HostPaths(root=str(tmp_path)))
    rows = db.execute(
        "SELECT name, source, base_uri, release, version, maintainer, components, architectures FROM apt_sources"
    ).rows
    assert rows == [
        (
            "mirror.example.org/debian bookworm",
            "/etc/apt/sources.list",
            "http://mirror.example.org/debian",
            "bookworm",
            "12.15",
            "Debian",
            "main contrib",
            "all amd64 arm64",
        ),
        (
            "deb.debian.org/debian bookworm",
            "/etc/apt/sources.list.d/debian.sources",
            "http://deb.debian.org/debian",
            "bookworm",
            "12.15",
            "Debian",
            "main contrib",
            "all amd64 arm64",
        ),
    ]  # sources without a fetched Release file are not reported, as in osquery


def test_live_host() -> None:
    rows = Database([apt_sources.SPEC]).execute("SELECT source, base_uri FROM apt_sources").rows
    for source, base_uri in rows:
        assert Path(source).is_file() and "://" in base_uri
