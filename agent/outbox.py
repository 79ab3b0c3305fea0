"""The result outbox's types: what scheduled runs produced, as batches of rows, in order.

A scheduled run streams its result rows into the state database as :class:`ResultBatch`\\ es
of one :class:`Action` while the query runs (staged: invisible until the run commits).
The run's header, :class:`ResultRun`, carries what every batch of the run shares: the
query name, the time, osquery's epoch and counter, the decorations.  The commit makes
the batches and the new diff state durable in one transaction; each sink then reads the
committed batches in order (:meth:`agent.state.StateDB.outbox`) and the batches are
deleted once delivered.  The result log is the sink that reads them this way
(:mod:`agent.results` prints a batch as osquery's lines); the uplink to the collector
gets the same batches inside the run's commit transaction and queues them for the
collector (:func:`agent.runner.uplink_runs`, :mod:`agent.uplink.queue`), so both see
every committed run exactly once.  Values are kept typed, as SQLite gave them.

Order: runs in commit order; within a run, its removed rows before its added rows (as
osquery serialises a diff), each in the order the query produced them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["Action", "LogForm", "ResultBatch", "ResultRun"]


class Action(StrEnum):
    """What the rows of a batch are: osquery's ``action`` of a result line."""

    ADDED = "added"
    REMOVED = "removed"
    SNAPSHOT = "snapshot"

    @property
    def phase(self) -> int:
        """Sort key within a run: removed rows come first."""
        return 0 if self is Action.REMOVED else 1


class LogForm(StrEnum):
    """How the result log writes a run (osquery's logger_event_type / logger_snapshot_event_type)."""

    EVENT = "event"  # one line per row, with "columns" and "action" (osquery's default)
    BATCH = "batch"  # one line per run, with "diffResults" (logger_event_type=false)
    SNAPSHOT = "snapshot"  # one line per run, with "snapshot" (snapshot queries)
    SNAPSHOT_EVENT = "snapshot_event"  # one line per row, action "snapshot" (logger_snapshot_event_type)

    @property
    def target(self) -> str:
        """The log file: ``results`` or ``snapshots``."""
        return "snapshots" if self in (LogForm.SNAPSHOT, LogForm.SNAPSHOT_EVENT) else "results"

    @property
    def line_per_row(self) -> bool:
        """True when every row is a line of its own (so every batch is whole lines)."""
        return self in (LogForm.EVENT, LogForm.SNAPSHOT_EVENT)


@dataclass(frozen=True, slots=True)
class ResultRun:
    """One committed run of a scheduled query: what all its batches share.

    ``file_id``/``file_offset`` are the result log's delivery marks for the one-line forms
    (where the run's line goes); None until the log starts writing it.
    """

    id: int
    name: str
    form: LogForm
    host_identifier: str
    unix_time: float
    epoch: int
    counter: int
    numerics: bool  # logger_numerics: numbers in numeric_columns are logged as JSON numbers
    numeric_columns: frozenset[str] = frozenset()
    decorations: Mapping[str, str] = field(default_factory=dict)
    decorations_top_level: bool = False
    file_id: int | None = None
    file_offset: int | None = None


@dataclass(frozen=True, slots=True)
class ResultBatch:
    """Rows of one action from one run; values typed as SQLite gave them (int, float, str, None, bytes).

    ``file_id``/``file_offset`` are the result log's delivery marks for the line-per-row
    forms (where this batch's lines go); None until the log starts writing it.
    """

    id: int
    run: ResultRun
    action: Action
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    file_id: int | None = None
    file_offset: int | None = None

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]
