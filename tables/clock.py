"""time: the current date and time in UTC (osquery's utility table ``time``).

The module is not named ``time`` so it cannot shadow the standard library.
"""

from __future__ import annotations

import time as _time
from collections.abc import Iterator
from datetime import UTC, datetime

from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["SPEC", "generate", "time_row"]

#: Seconds from 1601-01-01 (the Windows FILETIME epoch) to 1970-01-01.
_WINDOWS_EPOCH_OFFSET = 11_644_473_600


def time_row(unix_time: int, local_timezone: str) -> Row:
    """The time row for ``unix_time`` (whole seconds)."""
    now = datetime.fromtimestamp(unix_time, tz=UTC)
    iso = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "weekday": now.strftime("%A"),
        "year": now.year,
        "month": now.month,
        "day": now.day,
        "hour": now.hour,
        "minutes": now.minute,
        "seconds": now.second,
        "timezone": "UTC",
        "local_timezone": local_timezone,
        "unix_time": unix_time,
        "timestamp": f"{now.strftime('%a %b')} {now.day:2d} {now.strftime('%H:%M:%S %Y')} UTC",
        "datetime": iso,
        "iso_8601": iso,
        "win_timestamp": (unix_time + _WINDOWS_EPOCH_OFFSET) * 10_000_000,
    }


def generate(context: QueryContext) -> Iterator[Row]:
    """The single time row for now."""
    now = int(_time.time())
    yield time_row(now, _time.strftime("%Z", _time.localtime(now)))


SPEC = TableSpec(
    name="time",
    description="Track current date and time in UTC.",
    columns=(
        Column("weekday", "TEXT", "Current weekday in UTC"),
        Column("year", "INTEGER", "Current year in UTC"),
        Column("month", "INTEGER", "Current month in UTC"),
        Column("day", "INTEGER", "Current day in UTC"),
        Column("hour", "INTEGER", "Current hour in UTC"),
        Column("minutes", "INTEGER", "Current minutes in UTC"),
        Column("seconds", "INTEGER", "Current seconds in UTC"),
        Column("timezone", "TEXT", "Timezone for reported time (hardcoded to UTC)"),
        Column("local_timezone", "TEXT", "Current local timezone in of the system"),
        Column("unix_time", "INTEGER", "Current UNIX time in UTC"),
        Column("timestamp", "TEXT", "Current timestamp (log format) in UTC"),
        Column("datetime", "TEXT", "Current date and time (ISO format) in UTC"),
        Column("iso_8601", "TEXT", "Current time (ISO format) in UTC"),
        Column("win_timestamp", "BIGINT", "Timestamp value in 100 nanosecond units", hidden=True),
    ),
    generate=generate,
    examples=("SELECT unix_time, datetime FROM time",),
)
