"""etc_protocols: line-parsed /etc/protocols."""

from __future__ import annotations

from collections.abc import Iterator

from ._files import read_text
from .spec import Column, QueryContext, Row, TableSpec
from .text import fields as split_fields

__all__ = ["SPEC", "generate", "parse_protocols"]


def parse_protocols(text: str) -> list[Row]:
    """``name number [alias] [# comment]`` lines; malformed lines are skipped."""
    rows = []
    for raw in text.split("\n"):
        line, _, comment = raw.partition("#")
        fields = split_fields(line)
        if len(fields) < 2 or not fields[1].isdigit():
            continue
        rows.append(
            {
                "name": fields[0],
                "number": int(fields[1]),
                "alias": fields[2] if len(fields) > 2 else "",
                "comment": comment.strip(),
            }
        )
    return rows


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per protocol entry."""
    yield from parse_protocols(read_text(context.paths.host("/etc/protocols")) or "")


SPEC = TableSpec(
    name="etc_protocols",
    description="Line-parsed /etc/protocols.",
    columns=(
        Column("name", "TEXT", "Protocol name"),
        Column("number", "INTEGER", "Protocol number"),
        Column("alias", "TEXT", "Protocol alias"),
        Column("comment", "TEXT", "Comment with protocol description"),
    ),
    generate=generate,
    examples=("SELECT name, number FROM etc_protocols",),
)
