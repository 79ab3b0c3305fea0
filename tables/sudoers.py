"""sudoers: rules of /etc/sudoers and the files it includes."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from ._files import list_files, read_text
from .spec import Column, HostPaths, QueryContext, Row, TableSpec

__all__ = ["SPEC", "generate", "parse_sudoers"]

_MAX_INCLUDE_DEPTH = 128  # sudo's own limit on nested includes
_INCLUDES = ("#include", "@include", "#includedir", "@includedir")
_BLANKS = " \t\v"  # what sudoers and osquery treat as blanks
_BLANK_RUN = re.compile("[ \t\v]+")


def parse_sudoers(text: str) -> list[tuple[str, str]]:
    """sudoers text -> [(header, rule_details)]: the first word and the rest of each rule, as osquery splits them.

    A rule ending in a backslash continues on the next line: the backslash is dropped and
    the next line (trimmed) appended as it is, so ``ALL=(ALL) \\`` + ``NOPASSWD: ALL``
    reads ``ALL=(ALL) NOPASSWD: ALL``.  Comments and blank lines are dropped, but
    ``#include``/``#includedir`` (and ``@`` forms) with a target are directives, kept as rows.
    """
    entries: list[tuple[str, str]] = []
    continued = False
    for raw in text.split("\n"):
        line = raw.strip().strip(_BLANKS)
        if not line:
            continue
        if continued:
            continued = line.endswith("\\")
            header, details = entries[-1]
            if details:
                entries[-1] = (header, details[:-1] + line)
            else:
                entries[-1] = (header[:-1], line)
            continue
        parts = re.split(_BLANK_RUN, line, maxsplit=1)
        header, details = parts[0], parts[1].strip(_BLANKS) if len(parts) > 1 else ""
        include = header in _INCLUDES
        if line.startswith("#") and not include:
            continue
        if include and not details:
            continue  # an include without a target reads as a comment
        continued = not include and line.endswith("\\")
        entries.append((header, details))
    return entries


def _include_target(source: str, target: str) -> str:
    target = target.strip().strip('"')
    return target if target.startswith("/") else os.path.join(os.path.dirname(source), target)


def _rules(paths: HostPaths, source: str, depth: int) -> Iterator[Row]:
    text = read_text(paths.host(source))
    if text is None:
        return
    for header, details in parse_sudoers(text):
        yield {"source": source, "header": header, "rule_details": details}
        if depth >= _MAX_INCLUDE_DEPTH or header not in _INCLUDES:
            continue
        target = _include_target(source, details)
        if header.endswith("dir"):
            prefix = paths.host(target)
            for path in list_files(prefix):
                name = os.path.basename(path)
                if name.endswith("~") or "." in name:
                    continue  # sudo skips editor backups and files with a dot
                yield from _rules(paths, target.rstrip("/") + "/" + name, depth + 1)
        else:
            yield from _rules(paths, target, depth + 1)


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per rule, following includes."""
    yield from _rules(context.paths, "/etc/sudoers", 0)


SPEC = TableSpec(
    name="sudoers",
    description="Rules for running commands as other users via sudo.",
    columns=(
        Column("source", "TEXT", "Source file containing the given rule"),
        Column("header", "TEXT", "Symbol for given rule"),
        Column("rule_details", "TEXT", "Rule definition"),
    ),
    generate=generate,
    examples=("SELECT source, header, rule_details FROM sudoers",),
)
