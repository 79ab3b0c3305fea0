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
