"""acpi_tables: a fixture table directory and the live firmware tables."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tables import acpi_tables
from tables.spec import HostPaths
from tables.sqlite import Database


def test_fixture(tmp_path: Path) -> None:
    base = tmp_path / "firmware/acpi/tables"
    (base / "dynamic").mkdir(parents=True)
    (base / "DSDT").write_bytes(b"DSDT\x10\x00\x00\x00fake")
    (base / "APIC").write_bytes(b"APIC")
    db = Database([acpi_tables.SPEC], paths=HostPaths(sys=str(tmp_path)))
    assert db.execute("SELECT * FROM acpi_tables").rows == [
        ("APIC", 4, hashlib.md5(b"APIC").hexdigest()),
        ("DSDT", 12, hashlib.md5(b"DSDT\x10\x00\x00\x00fake").hexdigest()),
    ]


def test_live() -> None:
    rows = Database([acpi_tables.SPEC]).execute("SELECT name, size, md5 FROM acpi_tables").rows
    base = Path("/sys/firmware/acpi/tables")
    for name, size, md5 in rows:
        data = (base / name).read_bytes()
        assert size == len(data) and md5 == hashlib.md5(data).hexdigest()
    if base.exists() and os.geteuid() == 0:
        assert {r[0] for r in rows} == {p.name for p in base.iterdir() if p.is_file()}
