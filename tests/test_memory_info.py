"""memory_info: meminfo parsing and the live row."""

from __future__ import annotations

from pathlib import Path

from tables import memory_info
from tables.memory_info import parse_meminfo
from tables.spec import HostPaths
from tables.sqlite import Database

MEMINFO = b"MemTotal:       16318480 kB\nMemFree:         1000000 kB\nHugePages_Total:       0\nbroken line\n"


def test_parse_meminfo() -> None:
    assert parse_meminfo(MEMINFO) == {"MemTotal": 16318480 * 1024, "MemFree": 1000000 * 1024, "HugePages_Total": 0}


def test_fixture(tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_bytes(MEMINFO)
    row = (
        Database([memory_info.SPEC], paths=HostPaths(proc=str(tmp_path)))
        .execute("SELECT * FROM memory_info")
        .dicts()[0]
    )
    assert row["memory_total"] == 16318480 * 1024 and row["memory_free"] == 1000000 * 1024
    assert row["swap_total"] is None  # missing key -> NULL


def test_live() -> None:
    row = Database([memory_info.SPEC]).execute("SELECT * FROM memory_info").dicts()[0]
    assert row["memory_total"] > 0 and 0 <= row["memory_free"] <= row["memory_total"]
    assert row["memory_available"] <= row["memory_total"]
