"""python_packages: dist-info and egg-info metadata in system and user site directories."""

from __future__ import annotations

from pathlib import Path

from tables import python_packages
from tables.python_packages import parse_metadata
from tables.spec import HostPaths
from tables.sqlite import Database

METADATA = """Metadata-Version: 2.1
Name: requests
Version: 2.31.0
Summary: Python HTTP for Humans.
Author: Kenneth Reitz
License: Apache 2.0
Classifier: Foo
Name: not-this-one

Long description with Name: fake
"""


def test_parse_metadata() -> None:
    assert parse_metadata(METADATA) == {
        "name": "requests",
        "version": "2.31.0",
        "summary": "Python HTTP for Humans.",
        "author": "Kenneth Reitz",
        "license": "Apache 2.0",
    }


def test_fixture(tmp_path: Path) -> None:
    site = tmp_path / "usr/lib/python3/dist-packages"
    (site / "requests-2.31.0.dist-info").mkdir(parents=True)
    (site / "requests-2.31.0.dist-info/METADATA").write_text(METADATA)
    (site / "six-1.16.0.egg-info").write_text("Name: six\nVersion: 1.16.0\n")  # egg-info as a file
    (site / "notapackage").mkdir()
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\ncarol:x:1002:1002::/home/carol:/bin/sh\n")
    user_site = tmp_path / "home/carol/.local/lib/python3.11/site-packages/mylib-0.1.dist-info"
    user_site.mkdir(parents=True)
    (user_site / "METADATA").write_text("Name: mylib\nVersion: 0.1\n")
    db = Database([python_packages.SPEC], paths=HostPaths(root=str(tmp_path)))
    rows = db.execute("SELECT name, uid, version, path, directory FROM python_packages").rows
    assert rows == [
        (
            "requests",
            0,
            "2.31.0",
            "/usr/lib/python3/dist-packages/requests-2.31.0.dist-info",
            "/usr/lib/python3/dist-packages",
        ),
        ("six", 0, "1.16.0", "/usr/lib/python3/dist-packages/six-1.16.0.egg-info", "/usr/lib/python3/dist-packages"),
        (
            "mylib",
            1002,
            "0.1",
            "/home/carol/.local/lib/python3.11/site-packages/mylib-0.1.dist-info",
            "/home/carol/.local/lib/python3.11/site-packages",
        ),
    ]
    assert db.execute("SELECT name FROM python_packages WHERE uid = 1002").rows == [("mylib",)]


def test_live_directory_pushdown() -> None:
    import sysconfig

    purelib = sysconfig.get_paths()["purelib"]
    rows = (
        Database([python_packages.SPEC])
        .execute("SELECT name FROM python_packages WHERE directory = ?", (purelib,))
        .rows
    )
    assert ("apsw",) in rows or ("pytest",) in rows  # the venv running the tests has both
