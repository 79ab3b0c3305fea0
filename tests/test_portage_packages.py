"""portage_packages: a fixture /var/db/pkg tree; no rows where it is absent."""

from __future__ import annotations

from pathlib import Path

from tables import portage_packages
from tables.portage_packages import split_package_version
from tables.spec import HostPaths
from tables.sqlite import Database


def test_split_package_version() -> None:
    assert split_package_version("openssl-3.0.13-r1") == ("openssl", "3.0.13-r1")
    assert split_package_version("gtk+-3.24.41") == ("gtk+", "3.24.41")
    assert split_package_version("font-adobe-100dpi-1.0.4") == ("font-adobe-100dpi", "1.0.4")
    assert split_package_version("noversion") == ("noversion", "")


def test_fixture(tmp_path: Path) -> None:
    pkg = tmp_path / "var/db/pkg/dev-libs/openssl-3.0.13-r1"
    pkg.mkdir(parents=True)
    for name, value in {
        "SLOT": "0/3\n",
        "BUILD_TIME": "1700000000\n",
        "repository": "gentoo\n",
        "EAPI": "8\n",
        "SIZE": "12345\n",
    }.items():
        (pkg / name).write_text(value)
    (tmp_path / "var/db/pkg/app-misc/tool-1.0").mkdir(parents=True)
    (tmp_path / "var/lib/portage").mkdir(parents=True)
    (tmp_path / "var/lib/portage/world").write_text("app-misc/tool\n")
    db = Database([portage_packages.SPEC], paths=HostPaths(root=str(tmp_path)))
    assert db.execute("SELECT * FROM portage_packages").rows == [
        ("app-misc/tool", "1.0", "", None, "", None, None, 1),
        ("dev-libs/openssl", "3.0.13-r1", "0/3", 1700000000, "gentoo", 8, 12345, 0),
    ]


def test_absent(tmp_path: Path) -> None:
    assert (
        Database([portage_packages.SPEC], paths=HostPaths(root=str(tmp_path)))
        .execute("SELECT * FROM portage_packages")
        .rows
        == []
    )
