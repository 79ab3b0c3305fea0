"""The interface every event source implements, and the status it reports.

A source owns one kernel facility (an audit netlink socket, a proc connector socket,
a uevent socket, a /proc poller).  ``start()`` opens it and may raise
:class:`SourceUnavailable` when the kernel refuses (the caller then falls back);
rows flow to the ``sink`` given at construction as ``sink(table_name, row)``;
``stop()`` is the one teardown path, idempotent, and restores any kernel state the
source changed.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EventSource", "Sink", "SourceMode", "SourceStatus", "SourceUnavailable"]

#: Where a source delivers rows: ``sink("process_events", {"pid": 1, ...})``.
Sink = Callable[[str, dict[str, Any]], None]


class SourceUnavailable(Exception):
    """The kernel refused this source (no permission, no support); the reason is the message."""


class SourceMode(enum.StrEnum):
    """Where a source stands; only :attr:`feeding` modes deliver rows.

    The values are what ``agent_events_status.mode`` shows.
    """

    INACTIVE = "inactive"  # not started yet
    OWNER = "owner"  # audit: registered as the audit daemon
    READ_ONLY = "read-only"  # audit: reading the multicast group next to another owner
    ACTIVE = "active"  # proc connector, /proc polling, uevents: running
    LOST = "lost"  # audit: ownership taken by another process; no rows arrive any more
    FAILED = "failed"  # refused or broken at start (the detail says why)
    STOPPED = "stopped"  # stop() ran after a start

    @property
    def feeding(self) -> bool:
        """True while the source delivers rows to its tables."""
        return self in _FEEDING


_FEEDING = frozenset({SourceMode.OWNER, SourceMode.READ_ONLY, SourceMode.ACTIVE})


@dataclass(slots=True)
class SourceStatus:
    """What ``agent_events_status`` shows for one source."""

    name: str  # e.g. "audit", "proc_connector", "proc_poll", "uevent"
    mode: SourceMode
    tables: tuple[str, ...] = ()  # event tables this source feeds
    events_seen: int = 0  # kernel events/records turned into rows
    kernel_lost: int = 0  # the kernel's own lost counter, where it has one
    parse_errors: int = 0  # malformed records counted and skipped
    detail: str = ""  # human-readable reason for the mode (e.g. "auditd (pid 812) owns audit")
    extra: dict[str, Any] = field(default_factory=dict)
    shed: int = 0  # events dropped unread to keep within a CPU budget (set_cpu_budget)
    degraded: int = 0  # rows made with less work (NULL columns) to keep within a CPU budget
    cpu_seconds: float = 0.0  # CPU time the source spent reading events and making rows (0: not measured)


class EventSource(abc.ABC):
    """One kernel event facility feeding one or more ``*_events`` tables."""

    name: str = "source"

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    @abc.abstractmethod
    async def start(self) -> None:
        """Open the facility; raise SourceUnavailable (with the reason) when refused."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Close everything and restore kernel state; safe to call twice or after a failed start."""

    @abc.abstractmethod
    def status(self) -> SourceStatus:
        """A snapshot of counters and mode, cheap to call."""

    def set_cpu_budget(self, budget: float | None) -> bool:
        """Keep within ``budget`` CPU seconds a second by doing less, counted (None: no budget).

        False when the source cannot (the default): its CPU is then not its own to shed.
        """
        return False
