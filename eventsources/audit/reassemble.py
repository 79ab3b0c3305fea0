"""Records -> events, sans I/O: group by serial, end on EOE, flush stragglers by timeout.

Records of different events interleave (several CPUs), and serials arrive out
of order; gaps are not loss (records for other consumers, other rules).  The
caller supplies the clock (``now``) so that tests and log replay drive time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .records import EOE, PROCTITLE, Record

__all__ = ["AuditEvent", "Reassembler"]


@dataclass(slots=True)
class AuditEvent:
    """All records of one serial, in arrival order; ``complete`` when its end marker came."""

    serial: int
    ts: float
    records: list[Record] = field(default_factory=list)
    complete: bool = False

    def of_type(self, rtype: int) -> list[Record]:
        return [r for r in self.records if r.type == rtype]

    def first(self, rtype: int) -> Record | None:
        for r in self.records:
            if r.type == rtype:
                return r
        return None


class Reassembler:
    """Collects records per serial until EOE (or PROCTITLE when ``end_on_proctitle``).

    ``push`` returns the event its record completed, if any; ``expire(now)`` hands
    over events older than ``timeout`` whose end never came (``complete=False``);
    more than ``max_pending`` open events evict the oldest the same way.
    """

    def __init__(self, *, timeout: float = 2.0, max_pending: int = 4096, end_on_proctitle: bool = False) -> None:
        self.timeout = timeout
        self.max_pending = max_pending
        self.end_on_proctitle = end_on_proctitle
        self._pending: dict[int, tuple[float, AuditEvent]] = {}  # serial -> (first seen, event); insertion-ordered
        self.completed = 0
        self.timed_out = 0
        self.evicted = 0
        self._evicted: list[AuditEvent] = []  # pushed out by max_pending, handed over by expire()

    def __len__(self) -> int:
        return len(self._pending)

    def push(self, record: Record, now: float) -> AuditEvent | None:
        serial = record.serial
        entry = self._pending.get(serial)
        if record.type == EOE:
            if entry is None:
                return None  # an EOE alone: an event we did not keep (or already flushed)
            del self._pending[serial]
            event = entry[1]
            event.complete = True
            self.completed += 1
            return event
        if entry is None:
            event = AuditEvent(serial, record.ts, [record])
            self._pending[serial] = (now, event)
            if len(self._pending) > self.max_pending:
                self._evict_oldest()
        else:
            event = entry[1]
            event.records.append(record)
        if self.end_on_proctitle and record.type == PROCTITLE:
            del self._pending[serial]
            event.complete = True
            self.completed += 1
            return event
        return None

    def expire(self, now: float) -> list[AuditEvent]:
        """Events first seen more than ``timeout`` ago (and any evicted), oldest first."""
        out, self._evicted = self._evicted, []
        cutoff = now - self.timeout
        expired = 0
        for serial, (seen, event) in list(self._pending.items()):
            if seen > cutoff:
                break  # insertion order = arrival order
            del self._pending[serial]
            out.append(event)
            expired += 1
        self.timed_out += expired
        return out

    def flush(self) -> list[AuditEvent]:
        """Every open event (at shutdown or end of a log), oldest first."""
        out, self._evicted = self._evicted, []
        out.extend(event for _, event in self._pending.values())
        self.timed_out += len(self._pending)
        self._pending.clear()
        return out

    def _evict_oldest(self) -> None:
        serial = next(iter(self._pending))
        self._evicted.append(self._pending.pop(serial)[1])
        self.evicted += 1
