"""The table reference (docs/tables.md), generated from the specs so it cannot drift.

python -m tables.catalog > docs/tables.md
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from .registry import all_specs
from .spec import TableSpec

__all__ = ["markdown"]


def _options(spec: TableSpec, name: str) -> str:
    column = spec.column(name)
    return ", ".join(o for o in ("index", "required", "hidden", "additional") if getattr(column, o))


def markdown(specs: Iterable[TableSpec]) -> str:
    """One section per table: description, kind, columns with types and options, examples."""
    specs = list(specs)
    out = [
        "# Tables",
        "",
        "Generated from the table specs by `python -m tables.catalog > docs/tables.md`; do not edit by hand.",
        "Column names and types follow osquery's schema where osquery has the table.",
        "",
        "## Text from the host",
        "",
        "Names on Linux are bytes: a file, an executable, a working directory, a mount point, a command",
        "line or an environment variable may hold any byte but NUL. Every TEXT column of every table",
        "shows them by one rule (`tables/text.py`), so no name can make a query fail:",
        "",
        "- text that is valid UTF-8 is returned as it is (newlines, tabs and quotes included);",
        "- a byte that is not part of valid UTF-8 is written `\\xHH`, two upper-case hex digits, as",
        "  osquery writes such bytes in its result logs: the file `bad<0xff>name` is `bad\\xFFname`;",
        "- a backslash that would read as such an escape (`\\x` followed by `5C`, or by `8`-`F` and a",
        "  hex digit) is written `\\x5C`, so the rule loses nothing: a file named `a\\xFF` (four",
        "  characters) is `a\\x5CxFF`.",
        "",
        "The rule is one-to-one and applies in both directions: a value read from one table constrains",
        "another (`SELECT * FROM file WHERE path = (SELECT path FROM processes WHERE pid = 42)`, JOINs),",
        "and the exact bytes can be recovered from any result. Values stay TEXT and valid UTF-8, so",
        "`||`, `upper()`, JSON result logs and Zeek see well-formed text. Likewise an integer beyond",
        "SQLite's 64-bit range (an inode of an overlay filesystem) is given exactly, as decimal text.",
        "The event tables follow the same rule: an executable, argument, working directory or socket",
        "path that kernel audit reports in hex is decoded to its bytes and shown as above (as are the",
        "rows `agent-cli watch` prints).",
        "",
        "## Tables",
        "",
        "| table | kind | description |",
        "|---|---|---|",
    ]
    out += [f"| [{s.name}](#{s.name}) | {'event' if s.event else 'snapshot'} | {s.description} |" for s in specs]
    for spec in specs:
        out += ["", f"## {spec.name}", "", spec.description, ""]
        if spec.required_columns:
            names = " or ".join(f"`{c.name}`" for c in spec.required_columns)
            out += [f"Queries must constrain {names} (with `=`, `IN` or `LIKE`).", ""]
        out += ["| column | type | options | description |", "|---|---|---|---|"]
        out += [
            f"| {c.name} | {c.type} | {_options(spec, c.name)} | {c.description.replace('|', '/')} |"
            for c in spec.columns
        ]
        if spec.examples:
            out += ["", "```sql", *spec.examples, "```"]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown(all_specs()))
