"""Declarative table specs, osquery style: one ``TableSpec`` per table beside its generate().

A table module holds ``SPEC = TableSpec(...)`` and the ``generate(context)`` function it
names.  The SQLite adapter (:mod:`tables.sqlite`) turns every spec into an eponymous,
read-only virtual table; generate() never sees SQLite.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "COLUMN_TYPES",
    "Column",
    "HostPaths",
    "QueryContext",
    "QueryDeadline",
    "Row",
    "TableError",
    "TableSpec",
]

#: osquery's column type names (DATE/DATETIME are TEXT there too).
COLUMN_TYPES = ("INTEGER", "BIGINT", "UNSIGNED_BIGINT", "DOUBLE", "TEXT", "BLOB")

#: One result row: column name -> value (missing keys read as NULL).
Row = dict[str, Any]


class TableError(Exception):
    """A table cannot answer a query (raised with the table name in the message)."""


class QueryDeadline(TableError):
    """generate() noticed that the query's time limit has passed."""


@dataclass(frozen=True, slots=True)
class Column:
    """One typed column of a table, with osquery's column options."""

    name: str
    type: str
    description: str = ""
    index: bool = False  # = / IN constraints are pushed down to generate()
    required: bool = False  # the query must constrain it (osquery "tables with arguments")
    hidden: bool = False  # not part of SELECT *
    additional: bool = False  # constraint pushed down, but not a key (osquery's "additional")

    def __post_init__(self) -> None:
        if self.type not in COLUMN_TYPES:
            raise ValueError(f"column {self.name!r}: unknown type {self.type!r}, use one of {COLUMN_TYPES}")

    @property
    def pushdown(self) -> bool:
        """True when = / IN constraints on this column reach generate()."""
        return self.index or self.required or self.additional


@dataclass(frozen=True, slots=True)
class HostPaths:
    """Where the host's pseudo and config filesystems are; tests point these at fixture trees."""

    proc: str = "/proc"
    sys: str = "/sys"
    root: str = "/"  # prefix for ordinary files such as /etc/passwd or /var/lib/dpkg/status

    def host(self, path: str) -> str:
        """``path`` (absolute, e.g. ``/etc/passwd``) under the configured root."""
        if self.root in ("", "/"):
            return path
        return os.path.join(self.root, path.lstrip("/"))


@dataclass(slots=True)
class QueryContext:
    """What generate() learns about the query: pushed-down constraints and used columns.

    ``constraints`` maps a column to the set of values an ``=`` or ``IN`` constraint allows;
    generate() may return a superset (SQLite re-checks every constraint).
    """

    table: str
    constraints: Mapping[str, frozenset[Any]] = field(default_factory=dict)
    columns_used: frozenset[str] | None = None  # None: all columns
    paths: HostPaths = field(default_factory=HostPaths)
    consumer: str | None = None  # scheduled query name for event tables; None = ad hoc
    services: Mapping[str, Any] = field(default_factory=dict)  # runtime objects the composer provides
    likes: Mapping[str, frozenset[str]] = field(default_factory=dict)  # column -> LIKE patterns
    ranges: Mapping[str, list[tuple[str, Any]]] = field(default_factory=dict)  # column -> [(gt|ge|lt|le, v)]
    deadline: float = float("inf")  # time.monotonic() past which the query is interrupted

    def values(self, column: str) -> frozenset[Any] | None:
        """Values ``column`` is constrained to, or None when it is unconstrained."""
        return self.constraints.get(column)

    def is_column_used(self, column: str) -> bool:
        """True when the query reads ``column`` (compute costly columns only then)."""
        return self.columns_used is None or column in self.columns_used

    def any_used(self, *columns: str) -> bool:
        """True when the query reads any of ``columns``."""
        return self.columns_used is None or not self.columns_used.isdisjoint(columns)

    def check_deadline(self) -> None:
        """Raise :class:`QueryDeadline` once the query's time limit has passed.

        The adapter checks between rows; a generate() that works long on one row
        (hashing a large file, walking a tree) calls this now and then.
        """
        if time.monotonic() > self.deadline:
            raise QueryDeadline(f"table {self.table}: the query's time limit passed during generate()")


Generate = Callable[[QueryContext], Iterable[Row]]


@dataclass(frozen=True, slots=True)
class TableSpec:
    """One table: name, one-sentence description, typed columns, generate(), examples.

    ``event=True`` marks an event table (rows come from an event store, name ends
    in ``_events``); ``module`` is informational (where the table lives).
    """

    name: str
    description: str
    columns: tuple[Column, ...]
    generate: Generate
    examples: tuple[str, ...] = ()
    event: bool = False

    def __post_init__(self) -> None:
        if not self.description.endswith("."):
            raise ValueError(f"table {self.name}: description must be one sentence ending with a period")
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"table {self.name}: duplicate column names")
        if self.event and not self.name.endswith("_events"):
            raise ValueError(f"table {self.name}: event tables must be named *_events")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name} has no column {name!r}")

    @property
    def required_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.required)

    def create_sql(self) -> str:
        """The ``CREATE TABLE`` statement SQLite sees (and ``.schema`` prints)."""
        cols = ", ".join(f"`{c.name}` {c.type.replace('_', ' ')}{' HIDDEN' if c.hidden else ''}" for c in self.columns)
        return f"CREATE TABLE {self.name}({cols})"
