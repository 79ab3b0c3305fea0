"""Run one scheduled query: SQL -> differential results -> result-log lines, exactly once.

Semantics follow osquery's Query::addNewResults / addNewEvents:

* first run (name not in state, or stored epoch != schedule_epoch): every row "added",
  counter 0; later runs log added/removed rows and bump the counter only on a change;
* ``snapshot: true``: the whole result in the snapshot form, no diff state;
* ``removed: false``: removals are not logged (state and counter still move);
* event-table queries read only events new to this query (``consumer=query.name``),
  log them as "added"; the counter restarts at 1 on a new epoch (not 0: not all records).

Exactly once across kill -9 (no duplicate line, no missed change):

1. :meth:`QueryRunner.run` queries and diffs; nothing is stored yet.
2. :meth:`QueryRunner.commit` writes, in ONE state transaction, the new previous-results,
   counter, epoch *and* the encoded lines into the state's outbox.  A kill before this
   leaves the old state: the next run diffs against it and reports the same change.
3. :meth:`QueryRunner.deliver` records the log file and offset an outbox entry will go to,
   appends and fsyncs it, then deletes the entry.  After a kill, the entry is delivered
   again: if its bytes are already at the recorded offset it is only deleted; a torn
   write is truncated and rewritten.  Call :meth:`deliver` at start-up before running.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tables.sqlite import Database, QueryError, QueryTimeout

from .config import Decorators, ScheduledQuery
from .diff import diff
from .options import Options
from .results import (
    ResultWriter,
    encode_lines,
    format_batch,
    format_event_lines,
    format_snapshot,
    format_snapshot_lines,
)
from .state import StateDB

__all__ = [
    "DecorationRunner",
    "PendingCommit",
    "QueryRunner",
    "RunOutcome",
    "UplinkRun",
    "event_tables_in",
    "stringify",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PendingCommit:
    """What :meth:`QueryRunner.commit` stores for one run (with its lines, as an outbox entry)."""

    sql: str
    epoch: int
    last_run: float
    snapshot: bool = False  # snapshot queries keep no diff state: only the outbox entry is stored
    counter: int | None = None
    rows: list[dict[str, Any]] | None = None  # the new previous results (typed); None keeps the stored ones


@dataclass(frozen=True, slots=True)
class UplinkRun:
    """A run's results for the collector: values typed as SQLite gave them, never stringified.

    Rows are (action, values) in ``columns`` order: removed rows first, then added ones (or
    every row with "snapshot"), as the result log orders them.
    """

    name: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[Any, ...]], ...]
    counter: int
    epoch: int
    time: float


@dataclass(slots=True)
class RunOutcome:
    """What one run produced; ``lines`` are not durable until :meth:`QueryRunner.commit`."""

    name: str
    lines: list[dict[str, Any]] = field(default_factory=list)
    rows: int = 0
    wall_time: float = 0.0
    error: str | None = None
    timed_out: bool = False
    added: int = 0
    removed: int = 0
    counter: int | None = None
    messages: list[str] = field(default_factory=list)  # e.g. "Scheduled query has been updated: x"
    committed: bool = False
    uplink: UplinkRun | None = None  # the run's rows for the collector, when there is an uplink
    _commit: PendingCommit | None = None


def stringify(value: Any) -> str:
    """A column value as osquery logs it: NULL -> "", numbers and text as strings."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else f"{value:.1f}"
    return str(value)


def event_tables_in(database: Database, sql: str) -> frozenset[str]:
    """The event tables ``sql`` reads, as SQLite resolves them (empty for bad SQL: the run reports it)."""
    try:
        read = database.tables_read(sql)
    except QueryError:
        return frozenset()
    return frozenset(t for t in read if (spec := database.specs.get(t)) is not None and spec.event)


def _numeric_columns(raw_rows: Sequence[Mapping[str, Any]]) -> set[str]:
    numeric: set[str] = set()
    for row in raw_rows:
        for key, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                numeric.add(key)
    return numeric


def _as_numbers(rows: Sequence[Mapping[str, str]], numeric: set[str]) -> list[dict[str, Any]]:
    """``--logger_numerics``: values of numeric columns as JSON numbers."""
    if not numeric:
        return [dict(r) for r in rows]
    out = []
    for row in rows:
        converted: dict[str, Any] = {}
        for key, value in row.items():
            if key in numeric and value != "":
                try:
                    converted[key] = int(value)
                except ValueError:
                    try:
                        converted[key] = float(value)
                    except ValueError:
                        converted[key] = value
            else:
                converted[key] = value
        out.append(converted)
    return out


def _diff_as_text(
    before: Sequence[Mapping[str, Any]], now: Sequence[Mapping[str, Any]], columns: Sequence[str]
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """(added, removed) of typed rows, with osquery's rule that rows equal as text are no change.

    The rows are diffed typed (the common case, nothing changed, is one comparison); then an
    added and a removed row that print the same (a value whose type moved, or previous results
    an older agentd stored as text) cancel out.  The extra work is proportional to the changes.
    """
    added, removed = diff(before, now)
    if not (added and removed):
        return added, removed

    def text(row: Mapping[str, Any]) -> tuple[str, ...]:
        return tuple(stringify(row.get(c)) for c in columns)

    removed_text = [text(r) for r in removed]
    available = Counter(removed_text)
    cancelled: Counter[tuple[str, ...]] = Counter()
    kept_added = []
    for row in added:
        key = text(row)
        if available[key] > cancelled[key]:
            cancelled[key] += 1
        else:
            kept_added.append(row)
    kept_removed = []
    for row, key in zip(removed, removed_text, strict=True):
        if cancelled[key]:
            cancelled[key] -= 1
        else:
            kept_removed.append(row)
    return kept_added, kept_removed


class DecorationRunner:
    """Decorator queries (load / always / interval) merged into one ``decorations`` map.

    Each decorator contributes the columns of its first row; ``load`` ones run at
    :meth:`load`, ``always`` ones at every call, ``interval`` ones when ``now`` enters a
    new period.  A failing decorator is logged and contributes nothing.
    """

    def __init__(self, execute: Callable[[str], list[dict[str, Any]]], decorators: Decorators) -> None:
        self.execute = execute
        self.decorators = decorators
        self._load: dict[str, str] = {}
        self._interval: dict[int, dict[str, str]] = {}
        self._period_seen: dict[int, int] = {}
        self.errors: list[str] = []

    def _run(self, queries: Sequence[str]) -> dict[str, str]:
        merged: dict[str, str] = {}
        for sql in queries:
            try:
                rows = self.execute(sql)
            except Exception as exc:  # noqa: BLE001 - a decorator failure must not stop the schedule
                message = f"decorator query failed: {sql!r}: {exc}"
                self.errors.append(message)
                log.warning("%s", message)
                continue
            if rows:
                merged.update({k: stringify(v) for k, v in rows[0].items()})
        return merged

    def load(self) -> None:
        self._load = self._run(self.decorators.load)

    def __call__(self, now: float) -> dict[str, str]:
        for period, queries in self.decorators.interval.items():
            turn = int(now) // period
            if self._period_seen.get(period) != turn:
                self._period_seen[period] = turn
                self._interval[period] = self._run(queries)
        merged = dict(self._load)
        for period in sorted(self._interval):
            merged.update(self._interval[period])
        merged.update(self._run(self.decorators.always))
        return dict(sorted(merged.items()))


class QueryRunner:
    """Runs scheduled queries against ``database`` and keeps their state in ``state``."""

    def __init__(
        self,
        database: Database,
        state: StateDB,
        *,
        host_identifier: str,
        options: Options | None = None,
        decorations_provider: Callable[[float], Mapping[str, str]] | None = None,
        uplink: Callable[[Any, UplinkRun], None] | None = None,
    ) -> None:
        self.database = database
        self.state = state
        self.host_identifier = host_identifier
        self.options = options or Options()
        self.decorations_provider = decorations_provider
        #: Called in each run's commit transaction (with its connection) when the run has rows to send.
        self.uplink = uplink

    # -- running -----------------------------------------------------------

    def run(self, query: ScheduledQuery, now: float, writer: ResultWriter | None = None) -> RunOutcome:
        """Run ``query`` as due at ``now`` (unix seconds); with ``writer``, also commit and deliver."""
        outcome = RunOutcome(name=query.name)
        is_event_query = bool(event_tables_in(self.database, query.query))
        start = time.monotonic()
        try:
            result = self.database.execute(
                query.query,
                consumer=query.name if is_event_query else None,
                time_limit=self.options.schedule_timeout,
            )
        except QueryTimeout as exc:
            outcome.error, outcome.timed_out = str(exc), True
        except QueryError as exc:
            outcome.error = str(exc)
        outcome.wall_time = time.monotonic() - start
        if outcome.error is not None:
            return outcome
        columns = tuple(result.columns)
        raw = result.dicts()  # typed: stored as previous results, sent to the collector
        rows = [{k: stringify(v) for k, v in r.items()} for r in raw]  # osquery's strings: the result log
        outcome.rows = len(rows)
        numeric = _numeric_columns(raw) if self.options.logger_numerics else set()
        decorations = dict(self.decorations_provider(now)) if self.decorations_provider else {}
        common: dict[str, Any] = {
            "numerics": self.options.logger_numerics,
            "decorations": decorations,
            "decorations_top_level": self.options.decorations_top_level,
        }
        epoch = self.options.schedule_epoch

        if query.snapshot:
            if raw and self.uplink is not None:
                outcome.uplink = UplinkRun(
                    query.name, columns, tuple(("snapshot", tuple(r.values())) for r in raw), 0, epoch, now
                )
            if rows:
                shown = _as_numbers(rows, numeric) if numeric else rows
                if self.options.logger_snapshot_event_type:
                    outcome.lines = format_snapshot_lines(
                        query.name, self.host_identifier, now, rows=shown, epoch=epoch, counter=0, **common
                    )
                else:
                    outcome.lines = [
                        format_snapshot(
                            query.name, self.host_identifier, now, rows=shown, epoch=epoch, counter=0, **common
                        )
                    ]
            outcome._commit = PendingCommit(sql=query.query, epoch=epoch, last_run=now, snapshot=True)
            return self._finish(outcome, writer)

        previous = self.state.get_query(query.name)
        new_epoch = previous is None or previous.epoch != epoch
        if previous is not None and not new_epoch and previous.sql != query.query:
            outcome.messages.append(f"Scheduled query has been updated: {query.name}")

        added: Sequence[Mapping[str, Any]]
        removed: Sequence[Mapping[str, Any]]
        typed_added: Sequence[Mapping[str, Any]] = raw
        typed_removed: Sequence[Mapping[str, Any]] = ()
        if is_event_query:
            added, removed = rows, []
            store_rows: list[dict[str, Any]] | None = [] if new_epoch else None
            counter = previous.counter if previous is not None and not new_epoch else None
            if added:  # osquery: 1 after a reset, else stored + 1 (0 when none was stored)
                counter = 1 if new_epoch else (counter + 1 if counter is not None else 0)
        elif new_epoch:
            added, removed = rows, []
            store_rows, counter = raw, 0
        else:
            assert previous is not None
            typed_added, typed_removed = _diff_as_text(previous.rows, raw, columns)
            text = {id(t): s for t, s in zip(raw, rows, strict=True)}
            added = [text[id(r)] for r in typed_added]
            removed = [{k: stringify(v) for k, v in r.items()} for r in typed_removed]
            changed = bool(added or removed)
            store_rows = raw if changed else None
            counter = (previous.counter or 0) + 1 if changed else previous.counter
        if not query.removed:
            removed, typed_removed = [], ()
        if (typed_added or typed_removed) and self.uplink is not None and (added or removed):
            outcome.uplink = UplinkRun(
                query.name,
                columns,
                tuple(("removed", tuple(r.get(c) for c in columns)) for r in typed_removed)
                + tuple(("added", tuple(r.values())) for r in typed_added),
                counter or 0,
                epoch,
                now,
            )
        outcome.added, outcome.removed, outcome.counter = len(added), len(removed), counter
        if added or removed:
            if numeric:
                added, removed = _as_numbers(added, numeric), _as_numbers(removed, numeric)
            if self.options.logger_event_type:
                outcome.lines = format_event_lines(
                    query.name,
                    self.host_identifier,
                    now,
                    epoch=epoch,
                    counter=counter or 0,
                    added=added,
                    removed=removed,
                    **common,
                )
            else:
                outcome.lines = [
                    format_batch(
                        query.name,
                        self.host_identifier,
                        now,
                        epoch=epoch,
                        counter=counter or 0,
                        added=added,
                        removed=removed,
                        **common,
                    )
                ]
        outcome._commit = PendingCommit(sql=query.query, epoch=epoch, last_run=now, counter=counter, rows=store_rows)
        return self._finish(outcome, writer)

    def _finish(self, outcome: RunOutcome, writer: ResultWriter | None) -> RunOutcome:
        for message in outcome.messages:
            log.info("%s", message)
        if writer is not None:
            self.commit(outcome)
            self.deliver(writer)
        return outcome

    # -- persistence (see the module docstring) ------------------------------

    def commit(self, outcome: RunOutcome) -> None:
        """Store the run's state and its lines (as an outbox entry) in one transaction."""
        pending = outcome._commit
        if pending is None or outcome.committed:
            return
        target = "snapshots" if pending.snapshot else "results"
        uplink, run = self.uplink, outcome.uplink
        self.state.commit_run(
            outcome.name,
            sql=pending.sql,
            epoch=pending.epoch,
            counter=None if pending.snapshot else pending.counter,
            rows=None if pending.snapshot else pending.rows,
            last_run=pending.last_run,
            outbox=[(target, encode_lines(outcome.lines))],
            update_query=not pending.snapshot,
            extra=(lambda db: uplink(db, run)) if uplink is not None and run is not None else None,
        )
        outcome.committed = True

    def deliver(self, writer: ResultWriter) -> int:
        """Write every committed-but-unwritten outbox entry to its log; returns entries written."""
        written = 0
        for entry in self.state.pending():
            log_file = writer.log_for(entry.target)
            if entry.file_id is None or entry.file_offset is None:
                file_id, offset = log_file.prepare(len(entry.data))
                self.state.outbox_started(entry.id, file_id, offset)
            else:
                file_id, offset = entry.file_id, entry.file_offset
            if log_file.write_at(entry.data, file_id, offset):
                written += 1
            self.state.outbox_done(entry.id)
        return written
