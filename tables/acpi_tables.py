"""acpi_tables: firmware ACPI tables from /sys/firmware/acpi/tables, with size and MD5."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

from ._files import read_bytes
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["SPEC", "generate"]


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per table file (sub-directories such as ``dynamic`` and ``data`` are not tables)."""
    base = f"{context.paths.sys}/firmware/acpi/tables"
    try:
        entries = sorted((e for e in os.scandir(base) if e.is_file(follow_symlinks=False)), key=lambda e: e.name)
    except (FileNotFoundError, PermissionError):
        return
    for entry in entries:
        data = read_bytes(entry.path)
        if data is None:
            continue  # unreadable without root
        yield {"name": entry.name, "size": len(data), "md5": hashlib.md5(data).hexdigest()}


SPEC = TableSpec(
    name="acpi_tables",
    description="Firmware ACPI functional table common metadata and content.",
    columns=(
        Column("name", "TEXT", "ACPI table name"),
        Column("size", "INTEGER", "Size of compiled table data"),
        Column("md5", "TEXT", "MD5 hash of table content"),
    ),
    generate=generate,
    examples=("SELECT name, size, md5 FROM acpi_tables",),
)
