"""rpm_packages: header blobs in a real sqlite rpmdb written by the test, read read-only."""

from __future__ import annotations

import struct
from pathlib import Path

import apsw
import pytest

from tables import rpm_packages
from tables.rpm_packages import parse_header
from tables.spec import HostPaths
from tables.sqlite import Database

STRING, INT32, STRING_ARRAY, I18N = 6, 4, 8, 9


def header(entries: list[tuple[int, int, object]]) -> bytes:
    """An rpm header blob: (tag, type, value) entries; strings NUL-terminated, ints big-endian."""
    index, data = b"", b""
    for tag, kind, value in entries:
        if kind == INT32:
            data += b"\0" * (-len(data) % 4)  # rpm aligns INT32 data
            payload = struct.pack(">i", value)
        else:
            payload = str(value).encode() + b"\0"
        index += struct.pack(">iiii", tag, kind, len(data), 1)
        data += payload
    return struct.pack(">ii", len(entries), len(data)) + index + data


OPENSSL = header(
    [
        (1000, STRING, "openssl"),
        (1001, STRING, "3.0.7"),
        (1002, STRING, "25.el9"),
        (1003, INT32, 1),
        (1004, I18N, "Utilities from OpenSSL"),
        (1008, INT32, 1700000000),
        (1009, INT32, 1234567),
        (1011, STRING, "Red Hat, Inc."),
        (1016, I18N, "System/Libraries"),
        (1022, STRING, "x86_64"),
        (1044, STRING, "openssl-3.0.7-25.el9.src.rpm"),
        (269, STRING, "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
    ]
)
PUBKEY = header([(1000, STRING, "gpg-pubkey"), (1001, STRING, "fd431d51")])


def test_parse_header() -> None:
    values = parse_header(OPENSSL)
    assert values == {
        "name": "openssl",
        "version": "3.0.7",
        "release": "25.el9",
        "epoch": 1,
        "install_time": 1700000000,
        "size": 1234567,
        "vendor": "Red Hat, Inc.",
        "package_group": "System/Libraries",
        "arch": "x86_64",
        "source": "openssl-3.0.7-25.el9.src.rpm",
        "sha1": "da39a3ee5e6b4b0d3255bfef95601890afd80709",
    }
    with pytest.raises(ValueError):
        parse_header(OPENSSL[:20])


def _rpmdb(root: Path, blobs: list[bytes]) -> Path:
    path = root / "var/lib/rpm/rpmdb.sqlite"
    path.parent.mkdir(parents=True)
    con = apsw.Connection(str(path))
    con.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
    for blob in blobs:
        con.execute("INSERT INTO Packages (blob) VALUES (?)", (blob,))
    con.close()
    return path


def test_fixture_database(tmp_path: Path) -> None:
    path = _rpmdb(tmp_path, [OPENSSL, PUBKEY, b"\0\0\0\x05junk"])
    before = path.read_bytes()
    db = Database([rpm_packages.SPEC], paths=HostPaths(root=str(tmp_path)))
    rows = db.execute("SELECT name, version, release, epoch, arch, size, install_time FROM rpm_packages").rows
    assert rows == [("openssl", "3.0.7", "25.el9", 1, "x86_64", 1234567, 1700000000)]  # key and junk skipped
    assert path.read_bytes() == before  # opened read-only


def test_no_database_no_rows(tmp_path: Path) -> None:
    db = Database([rpm_packages.SPEC], paths=HostPaths(root=str(tmp_path)))
    assert db.execute("SELECT * FROM rpm_packages").rows == []


def test_not_sqlite_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "var/lib/rpm").mkdir(parents=True)
    (tmp_path / "var/lib/rpm/rpmdb.sqlite").write_bytes(b"this is not a database" * 100)
    from tables.sqlite import QueryError

    with pytest.raises(QueryError, match="rpm_packages"):
        Database([rpm_packages.SPEC], paths=HostPaths(root=str(tmp_path))).execute("SELECT * FROM rpm_packages")
