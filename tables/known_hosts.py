"""known_hosts: per-user ~/.ssh/known_hosts lines."""

from __future__ import annotations

from collections.abc import Iterator

from ._files import read_text
from ._homes import user_homes
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["SPEC", "generate", "parse_known_hosts"]


def parse_known_hosts(text: str) -> list[str]:
    """Entry lines of a known_hosts file (comments and blank lines dropped)."""
    return [line.strip() for line in text.split("\n") if line.strip() and not line.lstrip().startswith("#")]


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per known host line of every user."""
    for uid, home in user_homes(context):
        path = f"{home.rstrip('/')}/.ssh/known_hosts"
        text = read_text(context.paths.host(path))
        if text is None:
            continue
        for line in parse_known_hosts(text):
            yield {"uid": uid, "key": line, "key_file": path}


SPEC = TableSpec(
    name="known_hosts",
    description="A line-delimited known_hosts table.",
    columns=(
        Column("uid", "BIGINT", "The local user that owns the known_hosts file", index=True),
        Column("key", "TEXT", "parsed authorized keys line"),
        Column("key_file", "TEXT", "Path to known_hosts file"),
    ),
    generate=generate,
    examples=("SELECT * FROM users JOIN known_hosts USING (uid)",),
)
