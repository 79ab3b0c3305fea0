"""Records -> events, sans I/O: group by event, end on EOE, flush stragglers by timeout.

An event is identified as auditd identifies it: node (``node=`` of a log aggregated
from several hosts; None live), timestamp and serial.  Records of different events
interleave (several CPUs), and serials arrive out of order; gaps are not loss
(records for other consumers, other rules).  The caller supplies the clock (``now``)
so that tests and log replay drive time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .records import EOE, PROCTITLE, SYSCALL, Record

__all__ = ["AuditEvent", "EventKey", "Reassembler"]

#: (node, serial, timestamp): serials repeat across hosts and reboots, the triple does not
EventKey = tuple[str | None, int, float]


@dataclass(slots=True)
class AuditEvent:
    """All records of one event, in arrival order; ``complete`` when its end marker came."""

    serial: int
    ts: float
    records: list[Record] = field(default_factory=list)
    complete: bool = False
    node: str | None = None
    has_syscall: bool = False
    has_proctitle: bool = False

    def of_type(self, rtype: int) -> list[Record]:
        return [r for r in self.records if r.type == rtype]

    def first(self, rtype: int) -> Record | None:
        for r in self.records:
            if r.type == rtype:
                return r
        return None


class Reassembler:
    """Collects records per event until EOE (or, with ``end_on_proctitle``, SYSCALL + PROCTITLE).

    ``end_on_proctitle`` is for logs, which have no EOE: an event ends once it holds
    both its SYSCALL and its PROCTITLE record, in either order (the kernel writes
    PROCTITLE last; ausearch prints an event's records in reverse, SYSCALL last).
    ``push`` returns the event its record completed, if any; ``expire(now)`` hands
    over events older than ``timeout`` whose end never came (``complete=False``);
    more than ``max_pending`` open events evict the oldest the same way;
    ``boundary()`` ends every open event (ausearch's ``----`` between events).
    ``current`` is the open event the last pushed record joined (None once it ended):
    a caller whose next record belongs to it may append that record itself, until it
    calls anything else here (how the live source takes an exec's records in a row).
    """

    def __init__(self, *, timeout: float = 2.0, max_pending: int = 4096, end_on_proctitle: bool = False) -> None:
        self.timeout = timeout
        self.max_pending = max_pending
        self.end_on_proctitle = end_on_proctitle
        # serial -> (first seen, event), insertion-ordered; an event whose serial is already taken by another
        # node's or another time's event is keyed on (node, serial, timestamp) instead: the common case hashes an int
        self._pending: dict[int | EventKey, tuple[float, AuditEvent]] = {}
        self._full_keys = 0  # how many of _pending's keys are (node, serial, timestamp)
        self.completed = 0
        self.timed_out = 0
        self.evicted = 0
        self._evicted: list[AuditEvent] = []  # pushed out by max_pending, handed over by expire()
        self.current: AuditEvent | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def push(self, record: Record, now: float) -> AuditEvent | None:
        pending = self._pending
        key: int | EventKey = record.serial
        entry = pending.get(key)
        if entry is not None:
            event = entry[1]
            if event.ts != record.ts or event.node != record.node:  # the serial of another event
                key = (record.node, record.serial, record.ts)
                entry = pending.get(key)
        elif self._full_keys:
            key = (record.node, record.serial, record.ts)
            entry = pending.get(key)
        rtype = record.type
        if rtype == EOE:
            self.current = None
            if entry is None:
                return None  # an EOE alone: an event we did not keep (or already flushed)
            if key.__class__ is tuple:
                self._full_keys -= 1
            del pending[key]
            event = entry[1]
            event.complete = True
            self.completed += 1
            return event
        if entry is None:
            event = AuditEvent(record.serial, record.ts, [record], False, record.node)  # positional: cheaper
            pending[key] = (now, event)
            if key.__class__ is tuple:
                self._full_keys += 1
            if len(pending) > self.max_pending:
                self._evict_oldest()
        else:
            event = entry[1]
            event.records.append(record)
        self.current = event
        if self.end_on_proctitle:
            if rtype == SYSCALL:
                event.has_syscall = True
            elif rtype == PROCTITLE:
                event.has_proctitle = True
            else:
                return None
            if event.has_syscall and event.has_proctitle:
                return self._complete(key)
        return None

    def end(self, event: AuditEvent) -> AuditEvent:
        """End ``event``, which is open (``current``), as its EOE record would."""
        key: int | EventKey = event.serial
        entry = self._pending.get(key)
        if entry is None or entry[1] is not event:
            key = (event.node, event.serial, event.ts)
        return self._complete(key)

    def _complete(self, key: int | EventKey) -> AuditEvent:
        self.current = None
        event = self._pop(key)
        event.complete = True
        self.completed += 1
        return event

    def _pop(self, key: int | EventKey) -> AuditEvent:
        if key.__class__ is tuple:
            self._full_keys -= 1
        return self._pending.pop(key)[1]

    def expire(self, now: float) -> list[AuditEvent]:
        """Events first seen more than ``timeout`` ago (and any evicted), oldest first."""
        self.current = None
        out, self._evicted = self._evicted, []
        cutoff = now - self.timeout
        done: list[int | EventKey] = []
        for key, (seen, _event) in self._pending.items():
            if seen > cutoff:
                break  # insertion order = arrival order
            done.append(key)
        out.extend(self._pop(key) for key in done)
        self.timed_out += len(done)
        return out

    def boundary(self) -> list[AuditEvent]:
        """Every open event, ended (the input says no more records of them follow), oldest first."""
        self.current = None
        out, self._evicted = self._evicted, []
        for _, event in self._pending.values():
            event.complete = True
            out.append(event)
        self.completed += len(self._pending)
        self._pending.clear()
        self._full_keys = 0
        return out

    def flush(self) -> list[AuditEvent]:
        """Every open event (at shutdown or end of a log), oldest first."""
        self.current = None
        out, self._evicted = self._evicted, []
        out.extend(event for _, event in self._pending.values())
        self.timed_out += len(self._pending)
        self._pending.clear()
        self._full_keys = 0
        return out

    def _evict_oldest(self) -> None:
        event = self._pop(next(iter(self._pending)))
        if event is self.current:
            self.current = None
        self._evicted.append(event)
        self.evicted += 1
