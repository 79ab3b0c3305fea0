"""time (tables/clock.py): the row for a known instant, and the live clock."""

from __future__ import annotations

import time

from tables import clock
from tables.clock import time_row
from tables.sqlite import Database


def test_known_instant() -> None:
    row = time_row(1700000000, "CET")  # 2023-11-14 22:13:20 UTC, a Tuesday
    assert row == {
        "weekday": "Tuesday",
        "year": 2023,
        "month": 11,
        "day": 14,
        "hour": 22,
        "minutes": 13,
        "seconds": 20,
        "timezone": "UTC",
        "local_timezone": "CET",
        "unix_time": 1700000000,
        "timestamp": "Tue Nov 14 22:13:20 2023 UTC",
        "datetime": "2023-11-14T22:13:20Z",
        "iso_8601": "2023-11-14T22:13:20Z",
        "win_timestamp": 133444736000000000,
    }
    assert time_row(1704067200, "UTC")["timestamp"] == "Mon Jan  1 00:00:00 2024 UTC"


def test_live_clock_and_table_name() -> None:
    assert clock.SPEC.name == "time"
    before = int(time.time())
    row = Database([clock.SPEC]).execute("SELECT * FROM time").dicts()[0]
    after = int(time.time())
    assert before <= row["unix_time"] <= after
    assert row["datetime"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["unix_time"]))
