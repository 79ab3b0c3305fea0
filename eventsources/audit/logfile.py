"""Replay auditd's text log (/var/log/audit/audit.log) into process_events/socket_events rows.

auditd does not write EOE records, so an event ends at its PROCTITLE record, or
when ``window`` further records have gone by without it (older kernels have no
PROCTITLE; events interleave a little), or at the end of the input.  A line that
is not a record is counted with its line number, never fatal.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .reassemble import AuditEvent, Reassembler
from .records import USED_TYPES, RecordError, parse_line
from .rows import RowBuilder

__all__ = ["ReplayStats", "replay"]

MAX_EXAMPLES = 10


@dataclass
class ReplayStats:
    """What a replay read, built and could not parse."""

    lines: int = 0
    records: int = 0  # lines that were audit records (of any type)
    events: int = 0  # events assembled from the record types we use
    rows: int = 0
    malformed: int = 0
    examples: list[tuple[int, str]] = field(default_factory=list)  # (line number, what was wrong)
    skipped: dict[str, int] = field(default_factory=dict)  # events that made no row, by reason

    def note_malformed(self, lineno: int, why: str) -> None:
        self.malformed += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append((lineno, why))


def replay(
    lines: Iterable[str | bytes],
    stats: ReplayStats,
    *,
    socket_events: bool = True,
    window: int = 256,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (table_name, row) for every exec/socket event in auditd log ``lines``."""
    reasm = Reassembler(timeout=window, max_pending=4 * window, end_on_proctitle=True)
    builder = RowBuilder(socket_events=socket_events)
    lineno = 0

    def rows_of(events: list[AuditEvent]) -> Iterator[tuple[str, dict[str, Any]]]:
        for event in events:
            stats.events += 1
            built = builder.build(event)
            if built is not None:
                stats.rows += 1
                yield built

    try:
        for lineno, line in enumerate(lines, 1):
            stats.lines += 1
            text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
            if not text.strip():
                continue
            try:
                record = parse_line(text)
            except RecordError as exc:
                stats.note_malformed(lineno, str(exc))
                continue
            stats.records += 1
            if record.type not in USED_TYPES:
                continue
            done = reasm.push(record, lineno)
            if done is not None:
                yield from rows_of([done])
            if lineno % 64 == 0:
                yield from rows_of(reasm.expire(lineno))
        yield from rows_of(reasm.flush())
    finally:
        for why, count in builder.skipped.items():
            stats.skipped[why] = stats.skipped.get(why, 0) + count
        if builder.malformed:
            stats.note_malformed(lineno, f"{builder.malformed} event(s) with unreadable SYSCALL fields")
            stats.malformed += builder.malformed - 1
