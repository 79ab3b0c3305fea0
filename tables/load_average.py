"""load_average: the 1, 5 and 15 minute system load averages from /proc/loadavg."""

from __future__ import annotations

from collections.abc import Iterator

from .procfs import GONE, read_file
from .spec import Column, QueryContext, Row, TableError, TableSpec

__all__ = ["SPEC", "generate", "parse_loadavg"]

_PERIODS = ("1m", "5m", "15m")


def parse_loadavg(data: bytes) -> list[tuple[str, str]]:
    """``0.52 0.58 0.59 2/789 12345`` -> [("1m", "0.520000"), ("5m", ...), ("15m", ...)]."""
    fields = data.split()
    if len(fields) < 3:
        raise ValueError(f"malformed loadavg: {data[:80]!r}")
    return [(period, f"{float(value):.6f}") for period, value in zip(_PERIODS, fields, strict=False)]


def generate(context: QueryContext) -> Iterator[Row]:
    """Three rows: period and average (osquery keeps both as text)."""
    path = f"{context.paths.proc}/loadavg"
    try:
        pairs = parse_loadavg(read_file(path))
    except (*GONE, ValueError) as exc:
        raise TableError(f"table load_average: cannot read {path}: {exc}") from exc
    for period, average in pairs:
        yield {"period": period, "average": average}


SPEC = TableSpec(
    name="load_average",
    description="Displays information about the system wide load averages.",
    columns=(
        Column("period", "TEXT", "Period over which the average is calculated."),
        Column("average", "TEXT", "Load average over the specified period."),
    ),
    generate=generate,
    examples=("SELECT period, average FROM load_average",),
)
