"""etc_hosts: the address -> names mappings of /etc/hosts, one row per line."""

from __future__ import annotations

from collections.abc import Iterator

from ._files import namespace_views, read_text
from .spec import Column, QueryContext, Row, TableSpec
from .text import fields as split_fields

__all__ = ["SPEC", "generate", "parse_hosts"]


def parse_hosts(text: str) -> list[tuple[str, list[str]]]:
    """(address, [names]) per line, as osquery splits it: a line whose first word starts with ``#`` is a
    comment, a word starting with ``#`` ends the names; an address without names has an empty list."""
    entries = []
    for line in text.split("\n"):
        fields = split_fields(line)
        if not fields or fields[0].startswith("#"):
            continue
        names: list[str] = []
        for word in fields[1:]:
            if word.startswith("#"):
                break
            names.append(word)
        entries.append((fields[0], names))
    return entries


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per mapping line of /etc/hosts."""
    for pid_ns, paths in namespace_views(context):
        for address, names in parse_hosts(read_text(paths.host("/etc/hosts")) or ""):
            yield {"address": address, "hostnames": " ".join(names), "pid_with_namespace": pid_ns}


SPEC = TableSpec(
    name="etc_hosts",
    description="Line-parsed /etc/hosts.",
    columns=(
        Column("address", "TEXT", "IP address mapping"),
        Column("hostnames", "TEXT", "Raw hosts mapping"),
        Column("pid_with_namespace", "INTEGER", "Pids that contain a namespace", hidden=True, additional=True),
    ),
    generate=generate,
    examples=("SELECT * FROM etc_hosts WHERE address = '127.0.0.1'",),
)
