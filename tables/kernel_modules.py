"""kernel_modules: loaded Linux kernel modules, from /proc/modules."""

from __future__ import annotations

import os
from collections.abc import Iterator

from ._files import read_text
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["SPEC", "generate", "parse_modules"]


def parse_modules(text: str) -> list[Row]:
    """Rows of /proc/modules: ``name size refcount used_by status address``.

    ``used_by`` is the comma list without its trailing comma (``-`` when unused);
    lines with fewer than the six fields are skipped.
    """
    rows = []
    for line in text.split("\n"):
        fields = line.split()
        if len(fields) < 6:
            continue
        try:
            size = int(fields[1])
        except ValueError:
            continue
        used_by = fields[3]
        if used_by != "-":
            used_by = used_by.rstrip(",")
        rows.append({"name": fields[0], "size": size, "used_by": used_by, "status": fields[4], "address": fields[5]})
    return rows


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per loaded module."""
    yield from parse_modules(read_text(os.path.join(context.paths.proc, "modules")) or "")


SPEC = TableSpec(
    name="kernel_modules",
    description="Linux kernel modules loaded, from /proc/modules.",
    columns=(
        Column("name", "TEXT", "Module name"),
        Column("size", "BIGINT", "Size of module content"),
        Column("used_by", "TEXT", "Module reverse dependencies"),
        Column("status", "TEXT", "Kernel module status"),
        Column("address", "TEXT", "Kernel module address"),
    ),
    generate=generate,
    examples=("SELECT name, size, used_by FROM kernel_modules WHERE status = 'Live'",),
)
