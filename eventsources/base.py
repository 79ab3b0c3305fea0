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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EventSource", "Sink", "SourceStatus", "SourceUnavailable"]

#: Where a source delivers rows: ``sink("process_events", {"pid": 1, ...})``.
Sink = Callable[[str, dict[str, Any]], None]


class SourceUnavailable(Exception):
    """The kernel refused this source (no permission, no support); the reason is the message."""


@dataclass(slots=True)
class SourceStatus:
    """What ``agent_events_status`` shows for one source."""

    name: str  # e.g. "audit", "proc_connector", "proc_poll", "uevent"
    mode: str  # e.g. "owner", "read-only", "inactive", "failed"
    tables: tuple[str, ...] = ()  # event tables this source feeds
    events_seen: int = 0  # kernel events/records turned into rows
    kernel_lost: int = 0  # the kernel's own lost counter, where it has one
    parse_errors: int = 0  # malformed records counted and skipped
    detail: str = ""  # human-readable reason for the mode (e.g. "auditd (pid 812) owns audit")
    extra: dict[str, Any] = field(default_factory=dict)


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
