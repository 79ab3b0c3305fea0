"""uptime: /proc/uptime parsing and the live host."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tables import uptime
from tables.spec import HostPaths
from tables.sqlite import Database, QueryError
from tables.uptime import parse_uptime, split_seconds


def test_split() -> None:
    total = 3 * 86400 + 4 * 3600 + 5 * 60 + 6
    assert parse_uptime(f"{total}.97 1234.00\n") == total
    assert split_seconds(total) == {"days": 3, "hours": 4, "minutes": 5, "seconds": 6, "total_seconds": total}


def test_live_within_a_few_seconds() -> None:
    before = float(Path("/proc/uptime").read_text().split()[0])
    row = Database([uptime.SPEC]).execute("SELECT * FROM uptime").dicts()[0]
    assert before - 1 <= row["total_seconds"] <= before + 5  # correctness, not timing
    assert row["days"] * 86400 + row["hours"] * 3600 + row["minutes"] * 60 + row["seconds"] == row["total_seconds"]
    assert abs(time.clock_gettime(time.CLOCK_BOOTTIME) - row["total_seconds"]) < 5


def test_bad_or_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    db = Database([uptime.SPEC], paths=HostPaths(proc=str(tmp_path)))
    with pytest.raises(QueryError, match=r"cannot read .*uptime"):
        db.execute("SELECT * FROM uptime")
    (tmp_path / "uptime").write_text("nonsense\n")
    with pytest.raises(QueryError, match="cannot parse"):
        db.execute("SELECT * FROM uptime")
