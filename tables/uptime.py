"""uptime: time since boot, from /proc/uptime."""

from __future__ import annotations

import os
from collections.abc import Iterator

from ._files import read_text
from .spec import Column, QueryContext, Row, TableError, TableSpec

__all__ = ["SPEC", "generate", "parse_uptime", "split_seconds"]


def parse_uptime(text: str) -> int:
    """Whole seconds since boot from /proc/uptime (``12345.67 23456.78``)."""
    try:
        return int(float(text.split()[0]))
    except (IndexError, ValueError) as exc:
        raise TableError(f"table uptime: cannot parse /proc/uptime {text[:40]!r}") from exc


def split_seconds(total: int) -> Row:
    """The uptime row: days, hours, minutes, seconds and total_seconds."""
    return {
        "days": total // 86400,
        "hours": total % 86400 // 3600,
        "minutes": total % 3600 // 60,
        "seconds": total % 60,
        "total_seconds": total,
    }


def generate(context: QueryContext) -> Iterator[Row]:
    """The single uptime row."""
    path = os.path.join(context.paths.proc, "uptime")
    text = read_text(path)
    if text is None:
        raise TableError(f"table uptime: cannot read {path}")
    yield split_seconds(parse_uptime(text))


SPEC = TableSpec(
    name="uptime",
    description="Track time passed since last boot.",
    columns=(
        Column("days", "INTEGER", "Days of uptime"),
        Column("hours", "INTEGER", "Hours of uptime"),
        Column("minutes", "INTEGER", "Minutes of uptime"),
        Column("seconds", "INTEGER", "Seconds of uptime"),
        Column("total_seconds", "BIGINT", "Total uptime seconds"),
    ),
    generate=generate,
    examples=("SELECT days, hours, total_seconds FROM uptime",),
)
