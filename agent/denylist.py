"""Denylisting: a scheduled query that ran too long or burned the CPU is switched off for a day.

osquery's rule: a query interrupted by its time limit (``schedule_timeout``) or by the
watchdog's CPU limit, or running when the watchdog stopped the agent, does not run again
for 24 hours.  A query with ``denylist: false`` is exempt, and so is a query on event
tables unless ``events_enforce_denylist`` is set (losing its events would lose data).
The record lives in the state database, so a restart keeps it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .config import ScheduledQuery
from .schedule import Schedule
from .state import StateDB
from .watchdog import DENYLIST_SECONDS, denylist_message

__all__ = ["Denylist"]

log = logging.getLogger("agentd")


class Denylist:
    """Decides whether a query may be denylisted, records it, and keeps the schedule's counters in step."""

    def __init__(
        self,
        statedb: StateDB,
        schedule: Schedule,
        *,
        clock: Callable[[], float],
        reads_events: Callable[[str], bool],
        enforce_on_events: bool = False,
    ) -> None:
        self.statedb = statedb
        self.schedule = schedule
        self.clock = clock
        self.reads_events = reads_events
        self.enforce_on_events = enforce_on_events

    def exempt(self, query: ScheduledQuery) -> str | None:
        """Why ``query`` may not be denylisted (``denylist: false``, an event query), or None."""
        if not query.denylist:
            return "denylist: false"
        if not self.enforce_on_events and self.reads_events(query.query):
            return "an event query, and events_enforce_denylist is off"
        return None

    def deny(self, query: ScheduledQuery, reason: str) -> float | None:
        """Denylist ``query`` for 24 h unless it is exempt, and log why; the time it runs again (None: exempt)."""
        exempt = self.exempt(query)
        if exempt is not None:
            log.warning("%s", denylist_message(query.name, reason, None, exempt))
            return None
        until = self.clock() + DENYLIST_SECONDS
        self.statedb.deny(query.name, until, reason)
        self.schedule.note_denied(query.name, until)
        log.warning("%s", denylist_message(query.name, reason, until))
        return until

    def deny_name(self, name: str, reason: str) -> float | None:
        """:meth:`deny` by name (the watchdog knows only what runs); None when the query left the schedule."""
        query = self.schedule.queries.get(name)
        return self.deny(query, reason) if query is not None else None

    def log_current(self) -> None:
        """At startup: one line per scheduled query that is still denylisted."""
        for name, (until, reason) in self.statedb.denylist(self.clock()).items():
            if name in self.schedule.queries:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(until))
                log.warning("query %s stays denylisted until %s (%s)", name, stamp, reason)
