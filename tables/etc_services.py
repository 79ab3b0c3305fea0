"""etc_services: line-parsed /etc/services."""

from __future__ import annotations

from collections.abc import Iterator

from ._files import read_text
from .spec import Column, QueryContext, Row, TableSpec
from .text import fields as split_fields

__all__ = ["SPEC", "generate", "parse_services"]


def parse_services(text: str) -> list[Row]:
    """``name port/protocol [aliases...] [# comment]`` lines; malformed lines are skipped."""
    rows = []
    for raw in text.split("\n"):
        line, _, comment = raw.partition("#")
        fields = split_fields(line)
        if len(fields) < 2:
            continue
        port, sep, protocol = fields[1].partition("/")
        if not sep or not port.isdigit():
            continue
        rows.append(
            {
                "name": fields[0],
                "port": int(port),
                "protocol": protocol,
                "aliases": " ".join(fields[2:]),
                "comment": comment.strip(),
            }
        )
    return rows


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per service entry."""
    yield from parse_services(read_text(context.paths.host("/etc/services")) or "")


SPEC = TableSpec(
    name="etc_services",
    description="Line-parsed /etc/services.",
    columns=(
        Column("name", "TEXT", "Service name"),
        Column("port", "INTEGER", "Service port number"),
        Column("protocol", "TEXT", "Transport protocol (TCP/UDP)"),
        Column("aliases", "TEXT", "Optional space separated list of other names for a service"),
        Column("comment", "TEXT", "Optional comment for a service."),
    ),
    generate=generate,
    examples=("SELECT name, port, protocol FROM etc_services WHERE port = 22",),
)
