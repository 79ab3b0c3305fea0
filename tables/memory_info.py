"""memory_info: main memory figures from /proc/meminfo, in bytes."""

from __future__ import annotations

from collections.abc import Iterator

from .procfs import GONE, read_file
from .spec import Column, QueryContext, Row, TableError, TableSpec

__all__ = ["SPEC", "generate", "parse_meminfo"]

#: column -> /proc/meminfo key.
_FIELDS = {
    "memory_total": "MemTotal",
    "memory_free": "MemFree",
    "memory_available": "MemAvailable",
    "buffers": "Buffers",
    "cached": "Cached",
    "swap_cached": "SwapCached",
    "active": "Active",
    "inactive": "Inactive",
    "swap_total": "SwapTotal",
    "swap_free": "SwapFree",
}


def parse_meminfo(data: bytes) -> dict[str, int]:
    """``Key:   123 kB`` lines -> {key: bytes}; values without a unit are kept as they are."""
    values: dict[str, int] = {}
    for line in data.decode("ascii", "replace").splitlines():
        key, sep, rest = line.partition(":")
        fields = rest.split()
        if not sep or not fields or not fields[0].isdigit():
            continue
        scale = 1024 if len(fields) > 1 and fields[1].lower() == "kb" else 1
        values[key.strip()] = int(fields[0]) * scale
    return values


def generate(context: QueryContext) -> Iterator[Row]:
    """The one row of memory figures."""
    try:
        info = parse_meminfo(read_file(f"{context.paths.proc}/meminfo"))
    except GONE as exc:
        raise TableError(f"table memory_info: cannot read {context.paths.proc}/meminfo: {exc}") from exc
    yield {column: info.get(key) for column, key in _FIELDS.items()}


SPEC = TableSpec(
    name="memory_info",
    description="Main memory information in bytes.",
    columns=(
        Column("memory_total", "BIGINT", "Total amount of physical RAM, in bytes"),
        Column("memory_free", "BIGINT", "The amount of physical RAM, in bytes, left unused by the system"),
        Column(
            "memory_available",
            "BIGINT",
            "The amount of physical RAM, in bytes, available for starting new applications, without swapping",
        ),
        Column("buffers", "BIGINT", "The amount of physical RAM, in bytes, used for file buffers"),
        Column("cached", "BIGINT", "The amount of physical RAM, in bytes, used as cache memory"),
        Column("swap_cached", "BIGINT", "The amount of swap, in bytes, used as cache memory"),
        Column("active", "BIGINT", "The total amount of buffer or page cache memory, in bytes, that is in active use"),
        Column(
            "inactive",
            "BIGINT",
            "The total amount of buffer or page cache memory, in bytes, that are free and available",
        ),
        Column("swap_total", "BIGINT", "The total amount of swap available, in bytes"),
        Column("swap_free", "BIGINT", "The total amount of swap free, in bytes"),
    ),
    generate=generate,
    examples=("SELECT memory_total, memory_available FROM memory_info",),
)
