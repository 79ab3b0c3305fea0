"""smbios_tables: the structure walker on a canned table (this VM exposes no DMI table)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tables import smbios_tables
from tables.smbios_tables import parse_smbios
from tables.spec import HostPaths
from tables.sqlite import Database


def structure(kind: int, handle: int, body: bytes, strings: list[bytes]) -> bytes:
    header = bytes([kind, 4 + len(body)]) + handle.to_bytes(2, "little") + body
    tail = b"".join(s + b"\0" for s in strings) + b"\0" if strings else b"\0\0"
    return header + tail


TABLE = (
    structure(0, 0x0000, b"\x01\x02", [b"Vendor Inc.", b"1.0"])
    + structure(1, 0x0100, b"\x01", [b"Product"])
    + structure(127, 0x7F00, b"", [])
)


def test_parse() -> None:
    rows = parse_smbios(TABLE)
    assert [(r["number"], r["type"], r["description"], r["handle"], r["header_size"]) for r in rows] == [
        (0, 0, "BIOS Information", 0x0000, 6),
        (1, 1, "System Information", 0x0100, 5),
        (2, 127, "End-of-Table", 0x7F00, 4),
    ]
    first = structure(0, 0, b"\x01\x02", [b"Vendor Inc.", b"1.0"])
    assert rows[0]["size"] == len(first) and rows[0]["md5"] == hashlib.md5(first).hexdigest()
    assert parse_smbios(TABLE[:10]) == []  # truncated structure: walk stops


def test_fixture_and_live(tmp_path: Path) -> None:
    (tmp_path / "firmware/dmi/tables").mkdir(parents=True)
    (tmp_path / "firmware/dmi/tables/DMI").write_bytes(TABLE)
    assert (
        len(
            Database([smbios_tables.SPEC], paths=HostPaths(sys=str(tmp_path)))
            .execute("SELECT * FROM smbios_tables")
            .rows
        )
        == 3
    )
    live = Database([smbios_tables.SPEC]).execute("SELECT type FROM smbios_tables").rows
    dmi = Path("/sys/firmware/dmi/tables/DMI")
    if not dmi.exists():
        assert live == []
    else:
        assert len(live) == len(parse_smbios(dmi.read_bytes()))
