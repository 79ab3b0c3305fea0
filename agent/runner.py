"""Run one scheduled query: SQL -> differential results -> result batches -> result log, exactly once.

Semantics follow osquery's Query::addNewResults / addNewEvents:

* first run (name not in state, or stored epoch != schedule_epoch): every row "added",
  counter 0; later runs log added/removed rows and bump the counter only on a change;
* ``snapshot: true``: the whole result in the snapshot form, no diff state;
* ``removed: false``: removals are not logged (state and counter still move);
* event-table queries read only events new to this query (``consumer=query.name``),
  log them as "added"; the counter restarts at 1 on a new epoch (not 0: not all records).

Rows stream: from generate() through SQLite (:meth:`Database.stream`) into the diff
(:class:`~agent.diff.StreamingDiff`, which holds only the previous rows' keys) and into
the state database's outbox in batches (:mod:`agent.outbox`), so a query over a full
event buffer never holds its result in memory; the log is written batch by batch.

Values stay typed as SQLite gave them (int, float, str, None): in the outbox, in the
stored previous results and on the way to the collector; only the result log prints
them as osquery's strings (:func:`~agent.results.stringify`).  The diff compares rows
as that text, as osquery does: a value whose type moved but prints the same (or previous
results an older agentd stored as text) is no change.

The uplink to the collector (:attr:`QueryRunner.uplink`, a hook) receives each run's
batches typed, inside the run's commit transaction: a run is queued for the collector
exactly when its new diff state is committed.

Exactly once across kill -9 (no duplicate line, no missed change):

1. :meth:`QueryRunner.run` queries, diffs and stages the run's batches in the state
   database, invisible to readers; a failed query discards them.
2. :meth:`QueryRunner.commit` writes, in ONE state transaction, the new previous-results,
   counter, epoch, the flag that makes the staged batches visible and (with an uplink)
   the run's rows in the uplink queue; then the event
   stores move the query's read position.  A kill before this leaves the old state (the
   staged batches are discarded when the state database opens; events are read again):
   the next run reports the same change.
3. :meth:`QueryRunner.deliver` records the log file and offset a batch's lines will go
   to (for the one-line forms: the run's line), appends and fsyncs them, then deletes the
   batch.  After a kill, it is delivered again: bytes already at the recorded offset are
   kept, a torn write is cut and rewritten.  Call :meth:`deliver` at start-up before running.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from operator import attrgetter
from typing import Any

import msgpack

from tables.sqlite import Database, QueryError, QueryTimeout

from .config import Decorators, ScheduledQuery
from .diff import StreamingDiff
from .options import Options
from .outbox import Action, LogForm, ResultBatch, ResultRun
from .results import ResultWriter, encode_batch_lines, encode_run_line, stringify
from .state import TEXT_ERRORS, QueryState, ResultsPacker, StateDB, iter_results, pack_rows

__all__ = [
    "BATCH_BYTES",
    "BATCH_ROWS",
    "DecorationRunner",
    "PendingCommit",
    "QueryRunner",
    "RunOutcome",
    "UplinkRun",
    "event_tables_in",
    "stringify",
    "uplink_runs",
]

log = logging.getLogger(__name__)

#: A batch is staged once it holds this many rows or about this many bytes of values.
BATCH_ROWS = 4096
BATCH_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class PendingCommit:
    """What :meth:`QueryRunner.commit` stores for a run."""

    snapshot: bool  # a snapshot query keeps no diff state
    sql: str
    epoch: int
    counter: int | None
    results: bytes | None  # the new previous results (packed); None keeps the stored ones
    last_run: float
    run_id: int | None  # the staged run in the outbox
    numeric_columns: frozenset[str] = frozenset()
    consumer: str | None = None  # whose event reads to commit


@dataclass(frozen=True, slots=True)
class UplinkRun:
    """A run's rows for the collector, of one column list: values typed as SQLite gave them, never stringified.

    ``rows`` are (action, values) in ``columns`` order: removed rows first, then added ones
    (or every row with "snapshot"), as the result log orders them.  They stream from the
    run's outbox batches: read them once, inside the hook (the commit transaction).  A run
    whose removed rows have other columns than its added ones (its SQL changed) comes as
    one UplinkRun per column list.
    """

    name: str
    columns: tuple[str, ...]
    rows: Iterable[tuple[str, tuple[Any, ...]]]
    counter: int
    epoch: int
    time: float


def uplink_runs(run: ResultRun, batches: Iterable[ResultBatch]) -> Iterator[UplinkRun]:
    """A committed run's batches as :class:`UplinkRun` parts, one per run of batches with the same columns."""
    for columns, group in groupby(batches, key=attrgetter("columns")):
        rows = ((batch.action.value, values) for batch in group for values in batch.rows)
        yield UplinkRun(run.name, columns, rows, run.counter, run.epoch, run.unix_time)


#: The uplink hook: called on the query thread, inside the run's commit transaction.
UplinkHook = Callable[[sqlite3.Connection, UplinkRun], None]


@dataclass(slots=True)
class RunOutcome:
    """What one run produced; its batches are not visible until :meth:`QueryRunner.commit`."""

    name: str
    rows: int = 0
    wall_time: float = 0.0
    error: str | None = None
    timed_out: bool = False
    added: int = 0
    removed: int = 0
    counter: int | None = None
    line_count: int = 0  # result-log lines the run writes
    output_bytes: int = 0  # bytes the run wrote to the result log (once delivered)
    messages: list[str] = field(default_factory=list)  # e.g. "Scheduled query has been updated: x"
    committed: bool = False
    pending: PendingCommit | None = None


def event_tables_in(database: Database, sql: str) -> frozenset[str]:
    """The event tables ``sql`` reads, as SQLite resolves them (empty for bad SQL: the run reports it)."""
    try:
        read = database.tables_read(sql)
    except QueryError:
        return frozenset()
    return frozenset(t for t in read if (spec := database.specs.get(t)) is not None and spec.event)


@dataclass(frozen=True, slots=True)
class _Plan:
    """One run before it starts: the query, whose event reads it makes, what the last run left."""

    query: ScheduledQuery
    consumer: str | None  # the query's name when it reads event tables
    previous: QueryState | None
    new_epoch: bool
    epoch: int
    form: LogForm
    run_id: int  # the staged run in the outbox


@dataclass(slots=True)
class _Streamed:
    """What streaming a run's rows found."""

    rows: int = 0
    added: int = 0
    removed: int = 0  # previous rows gone (state and counter move with them)
    removed_logged: int = 0  # of those, logged (not with ``removed: false``)
    changed: bool = False
    staged: int = 0  # rows in the run's batches
    numeric: set[str] = field(default_factory=set)  # columns with a number in some row
    results: bytes | None = None  # the rows, packed to be the next run's previous results


class _Stager:
    """A run's rows into its outbox batches: one action and one column list per batch.

    Rows arrive packed (msgpack arrays of their typed values), so a row is packed once for
    both its batch and the stored previous results.
    """

    def __init__(self, state: StateDB, run_id: int, pack: Callable[[Any], bytes]) -> None:
        self.state = state
        self.run_id = run_id
        self.pack = pack
        self.staged = 0
        self._action: Action | None = None
        self._columns: tuple[str, ...] = ()
        self._body = bytearray()
        self._count = 0

    def add(self, action: Action, columns: tuple[str, ...], values: tuple[Any, ...]) -> None:
        self.add_packed(action, columns, self.pack(values))

    def add_packed(self, action: Action, columns: tuple[str, ...], data: bytes) -> None:
        if action is not self._action or (columns is not self._columns and columns != self._columns):
            self.flush()
            self._action, self._columns = action, columns
        self._body += data
        self._count += 1
        self.staged += 1
        if self._count >= BATCH_ROWS or len(self._body) >= BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._count and self._action is not None:
            self.state.stage_packed(self.run_id, self._action, self._columns, self._count, bytes(self._body))
        self._body, self._count = bytearray(), 0


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
        uplink: UplinkHook | None = None,
    ) -> None:
        self.database = database
        self.state = state
        self.host_identifier = host_identifier
        self.options = options or Options()
        self.decorations_provider = decorations_provider
        #: Called in each run's commit transaction, with its connection, when the run has rows to send.
        self.uplink = uplink

    # -- running -----------------------------------------------------------

    def run(self, query: ScheduledQuery, now: float, writer: ResultWriter | None = None) -> RunOutcome:
        """Run ``query`` as due at ``now`` (unix seconds); with ``writer``, also commit and deliver."""
        outcome = RunOutcome(name=query.name)
        plan = self._plan(query, now, outcome.messages)
        start = time.monotonic()
        try:
            streamed = self._stream(plan)
        except QueryError as exc:
            outcome.error, outcome.timed_out = str(exc), isinstance(exc, QueryTimeout)
            self._abandon(plan.run_id, plan.consumer)
            outcome.wall_time = time.monotonic() - start
            return outcome
        except BaseException:
            self._abandon(plan.run_id, plan.consumer)
            raise
        outcome.wall_time = time.monotonic() - start
        outcome.rows, outcome.added, outcome.removed = streamed.rows, streamed.added, streamed.removed_logged
        counter, results = self._next_state(plan, streamed)
        outcome.counter = counter
        if streamed.staged:
            outcome.line_count = streamed.staged if plan.form.line_per_row else 1
        outcome.pending = PendingCommit(
            snapshot=query.snapshot,
            sql=query.query,
            epoch=plan.epoch,
            counter=counter,
            results=results,
            last_run=now,
            run_id=plan.run_id,
            numeric_columns=frozenset(streamed.numeric),
            consumer=plan.consumer,
        )
        return self._finish(outcome, writer)

    def _plan(self, query: ScheduledQuery, now: float, messages: list[str]) -> _Plan:
        """What this run is (event, differential or snapshot; new epoch or not) and its staged outbox run."""
        options = self.options
        epoch = options.schedule_epoch
        previous = None if query.snapshot else self.state.get_query(query.name)
        new_epoch = previous is None or previous.epoch != epoch
        if previous is not None and not new_epoch and previous.sql != query.query:
            messages.append(f"Scheduled query has been updated: {query.name}")
        if query.snapshot:
            form = LogForm.SNAPSHOT_EVENT if options.logger_snapshot_event_type else LogForm.SNAPSHOT
        else:
            form = LogForm.EVENT if options.logger_event_type else LogForm.BATCH
        decorations = dict(self.decorations_provider(now)) if self.decorations_provider else {}
        run_id = self.state.begin_run(
            query.name,
            form=form,
            host_identifier=self.host_identifier,
            unix_time=now,
            epoch=epoch,
            numerics=options.logger_numerics,
            decorations=decorations,
            decorations_top_level=options.decorations_top_level,
        )
        consumer = query.name if event_tables_in(self.database, query.query) else None
        return _Plan(query, consumer, previous, new_epoch, epoch, form, run_id)

    def _stream(self, plan: _Plan) -> _Streamed:
        """Rows from SQLite, typed, through the diff into the run's batches (nothing held whole)."""
        query, previous = plan.query, plan.previous
        streamed = _Streamed()
        pack = msgpack.Packer(use_bin_type=True, unicode_errors=TEXT_ERRORS).pack
        stager = _Stager(self.state, plan.run_id, pack)
        differ: StreamingDiff | None = None
        packer: ResultsPacker | None = None
        check_numeric = self.options.logger_numerics
        numeric = streamed.numeric
        with self.database.stream(
            query.query, consumer=plan.consumer, time_limit=self.options.schedule_timeout
        ) as result:
            columns = tuple(result.columns)
            action = Action.SNAPSHOT if query.snapshot else Action.ADDED
            if not query.snapshot and plan.consumer is None:  # a differential query keeps its results
                packer = ResultsPacker(columns)
                if not plan.new_epoch and previous is not None:
                    stored = previous.results
                    differ = StreamingDiff(
                        columns, iter_results(stored)[0], lambda: iter_results(stored)[1], text=stringify
                    )
            count = 0
            for values in result:
                count += 1
                if check_numeric:
                    numeric.update(c for c, v in zip(columns, values, strict=True) if _is_number(v))
                data = pack(values)
                if packer is not None:
                    packer.add_packed(data)
                if differ is None:
                    stager.add_packed(action, columns, data)
                else:
                    for added in differ.push(values, data):  # in order; a row may wait for its text match
                        stager.add_packed(action, columns, added)
            if differ is not None:
                for added in differ.finish():
                    stager.add_packed(action, columns, added)
        streamed.rows = count
        streamed.added = count if differ is None else differ.added
        if differ is not None and differ.changed:
            streamed.changed = True
            for old_columns, values in differ.removed():
                streamed.removed += 1
                if query.removed:
                    stager.add(Action.REMOVED, old_columns, values)
                    streamed.removed_logged += 1
        stager.flush()
        streamed.staged = stager.staged
        streamed.results = packer.blob() if packer is not None else None
        return streamed

    @staticmethod
    def _next_state(plan: _Plan, streamed: _Streamed) -> tuple[int | None, bytes | None]:
        """(counter, results to store) after this run, as osquery moves them; results None keeps the stored."""
        previous = plan.previous
        if plan.query.snapshot:
            return 0, None
        if plan.consumer is not None:  # an event query: nothing kept for diffing
            counter = previous.counter if previous is not None and not plan.new_epoch else None
            if streamed.rows:  # osquery: 1 after a reset, else stored + 1 (0 when none was stored)
                counter = 1 if plan.new_epoch else (counter + 1 if counter is not None else 0)
            return counter, (pack_rows([]) if plan.new_epoch else None)
        if plan.new_epoch or previous is None:  # every row added
            return 0, streamed.results
        if streamed.changed:
            return (previous.counter or 0) + 1, streamed.results
        return previous.counter, None

    def _abandon(self, run_id: int, consumer: str | None) -> None:
        """A failed run: its staged batches go, its event reads will be read again."""
        try:
            self.state.discard_run(run_id)
        finally:
            if consumer is not None:
                self.database.discard_reads(consumer)

    def _finish(self, outcome: RunOutcome, writer: ResultWriter | None) -> RunOutcome:
        for message in outcome.messages:
            log.info("%s", message)
        if writer is not None:
            self.commit(outcome)
            written = self._deliver(writer)
            if outcome.pending is not None and outcome.pending.run_id is not None:
                outcome.output_bytes = written.get(outcome.pending.run_id, 0)
        return outcome

    # -- persistence (see the module docstring) ------------------------------

    def commit(self, outcome: RunOutcome) -> None:
        """Store the run's state, make its batches visible and queue them for the uplink, in one transaction."""
        pending = outcome.pending
        if pending is None or outcome.committed:
            return
        uplink = self.uplink
        extra: Callable[[sqlite3.Connection, ResultRun], None] | None = None
        if uplink is not None:

            def extra(db: sqlite3.Connection, run: ResultRun) -> None:
                for part in uplink_runs(run, self.state.batches(run)):
                    uplink(db, part)

        try:
            self.state.commit_run(
                outcome.name,
                sql=pending.sql,
                epoch=pending.epoch,
                counter=pending.counter,
                results=pending.results,
                last_run=pending.last_run,
                run_id=pending.run_id,
                numeric_columns=pending.numeric_columns,
                update_query=not pending.snapshot,
                extra=extra,
            )
        except BaseException:
            if pending.run_id is not None:
                self._abandon(pending.run_id, pending.consumer)
            raise
        if pending.consumer is not None:
            self.database.commit_reads(pending.consumer)
        outcome.committed = True

    def deliver(self, writer: ResultWriter) -> int:
        """Write every committed-but-unwritten run to its log; returns the number of runs written."""
        return len(self._deliver(writer))

    def _deliver(self, writer: ResultWriter) -> dict[int, int]:
        """Deliver the outbox in order; {run id: bytes written} (legacy entries under negative ids)."""
        written: dict[int, int] = {}
        for entry in self.state.legacy_pending():
            log_file = writer.log_for(entry.target)
            if entry.file_id is None or entry.file_offset is None:
                file_id, offset = log_file.prepare(len(entry.data))
                self.state.legacy_started(entry.id, file_id, offset)
            else:
                file_id, offset = entry.file_id, entry.file_offset
            log_file.write_at(entry.data, file_id, offset)
            self.state.legacy_done(entry.id)
            written[-entry.id] = len(entry.data)
        for run in self.state.runs():
            written[run.id] = self._deliver_run(writer, run)
        return written

    def _deliver_run(self, writer: ResultWriter, run: ResultRun) -> int:
        log_file = writer.log_for(run.form.target)
        size = 0
        if run.form.line_per_row:
            for batch in self.state.batches(run):
                data = encode_batch_lines(batch)
                if batch.file_id is None or batch.file_offset is None:
                    file_id, offset = log_file.prepare(len(data))
                    self.state.outbox_started(batch.id, file_id, offset)
                else:
                    file_id, offset = batch.file_id, batch.file_offset
                log_file.write_at(data, file_id, offset)
                self.state.outbox_done((batch.id,))
                size += len(data)
            self.state.drop_run(run.id)  # the run is gone with its last batch; this covers a run without any
            return size
        ids = self.state.batch_ids(run)
        first = next(self.state.batches(run), None)
        if first is None:
            self.state.drop_run(run.id)
            return 0
        size = sum(map(len, encode_run_line(run, self.state.batches(run))))  # one line: its size, then its bytes
        if first.file_id is None or first.file_offset is None:
            file_id, offset = log_file.prepare(size)
            self.state.outbox_started(first.id, file_id, offset)
        else:
            file_id, offset = first.file_id, first.file_offset
        log_file.write_chunks_at(encode_run_line(run, self.state.batches(run)), file_id, offset)
        self.state.outbox_done(ids)
        return size


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
