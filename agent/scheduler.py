"""The query schedule, driven by time from outside (no sleeping here; tests step the clock).

Each query runs every *splayed* interval: its interval moved by up to ±``splay_percent``
(osquery's --schedule_splay_percent), chosen deterministically from ``seed`` and the query
name so a test can predict it, and kept across restarts through ``splayed``.  A query that
never ran is due at once (in startup_priority, name order); after a run it is due one
splayed interval after the time it was due (so runs do not drift), or after the run if the
agent fell behind.  Denylisted queries are skipped: their turn passes without a run.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass

from .config import ScheduledQuery

__all__ = ["Scheduler", "splayed_interval"]


def splayed_interval(name: str, interval: int, percent: int, seed: int | str = 0) -> int:
    """``interval`` moved by a deterministic amount in ±percent (at least 1 s)."""
    if percent <= 0 or interval <= 1:
        return max(1, interval)
    spread = interval * percent // 100
    if spread == 0:
        return interval
    rng = random.Random(f"{seed}:{name}:{interval}")
    return max(1, interval + rng.randint(-spread, spread))


@dataclass(slots=True)
class _Entry:
    query: ScheduledQuery
    splayed: int
    next_due: float
    last_run: float | None = None
    running: bool = False


def _priority(query: ScheduledQuery) -> tuple[int, str]:
    return (query.startup_priority if query.startup_priority is not None else 2**64, query.name)


class Scheduler:
    """When each scheduled query is due.

    Args:
        queries: the schedule (``AgentConfig.queries``).
        clock: seconds (e.g. time.time); read once at construction as the start time.
        splay_percent: osquery's schedule_splay_percent.
        seed: makes splay deterministic (the daemon passes its instance id).
        denylisted: names to skip, a set or ``f(name, now) -> bool``.
        last_runs: name -> time of the last run (restored state): due one interval later.
        splayed: name -> (interval, splayed interval) kept from before.
    """

    def __init__(
        self,
        queries: Iterable[ScheduledQuery],
        *,
        clock: Callable[[], float],
        splay_percent: int = 10,
        seed: int | str = 0,
        denylisted: Container[str] | Callable[[str, float], bool] = (),
        last_runs: Mapping[str, float] | None = None,
        splayed: Mapping[str, tuple[int, int]] | None = None,
    ) -> None:
        self.clock = clock
        self.splay_percent = splay_percent
        self.seed = seed
        self.denylisted = denylisted
        self.skipped: dict[str, int] = {}  # name -> turns skipped by the denylist
        self._entries: dict[str, _Entry] = {}
        self.set_queries(queries, last_runs=last_runs, splayed=splayed)

    def set_queries(
        self,
        queries: Iterable[ScheduledQuery],
        *,
        last_runs: Mapping[str, float] | None = None,
        splayed: Mapping[str, tuple[int, int]] | None = None,
    ) -> None:
        """Replace the schedule (config reload); queries that stay keep their timing."""
        now = self.clock()
        old = self._entries
        entries: dict[str, _Entry] = {}
        for query in sorted(queries, key=_priority):
            kept = (splayed or {}).get(query.name)
            if kept is not None and kept[0] == query.interval:
                interval = kept[1]
            else:
                interval = splayed_interval(query.name, query.interval, self.splay_percent, self.seed)
            previous = old.get(query.name)
            if previous is not None and previous.query.interval == query.interval:
                entries[query.name] = _Entry(
                    query, previous.splayed, previous.next_due, previous.last_run, previous.running
                )
                continue
            last = (last_runs or {}).get(query.name)
            next_due = now if last is None else max(now, last + interval)
            entries[query.name] = _Entry(query, interval, next_due, last)
        self._entries = entries

    @property
    def queries(self) -> list[ScheduledQuery]:
        return [e.query for e in self._entries.values()]

    def splayed(self) -> dict[str, tuple[int, int]]:
        """name -> (interval, splayed interval), to keep across restarts."""
        return {n: (e.query.interval, e.splayed) for n, e in self._entries.items()}

    def interval_of(self, name: str) -> int:
        return self._entries[name].splayed

    def last_run(self, name: str) -> float | None:
        return self._entries[name].last_run

    def is_running(self, name: str) -> bool:
        """True between :meth:`due` returning ``name`` and :meth:`mark_run`."""
        entry = self._entries.get(name)
        return entry is not None and entry.running

    def _is_denied(self, name: str, now: float) -> bool:
        denied = self.denylisted
        if callable(denied):
            return bool(denied(name, now))
        return name in denied

    def due(self, now: float) -> list[ScheduledQuery]:
        """Queries due at ``now``, in (startup_priority, name) order; each is then "running"
        and not returned again until :meth:`mark_run`."""
        result = []
        for name, entry in self._entries.items():
            if entry.running or entry.next_due > now:
                continue
            if self._is_denied(name, now):
                self.skipped[name] = self.skipped.get(name, 0) + 1
                entry.next_due = self._following(entry.next_due, entry.splayed, now)
                continue
            entry.running = True
            result.append(entry.query)
        return result

    def mark_run(self, name: str, now: float) -> None:
        """The run of ``name`` (started when it was due) finished at ``now``."""
        entry = self._entries.get(name)
        if entry is None:
            return  # removed by a reload while it ran
        entry.running = False
        entry.last_run = now
        entry.next_due = self._following(entry.next_due, entry.splayed, now)

    def expedite(self, name: str, when: float) -> bool:
        """Make ``name`` due at ``when`` at the latest (new event rows for a streaming query); False if unknown."""
        entry = self._entries.get(name)
        if entry is None:
            return False
        if when < entry.next_due:
            entry.next_due = when
        return True

    @staticmethod
    def _following(due: float, interval: int, now: float) -> float:
        following = due + interval
        return following if following > now else now + interval

    def next_due(self) -> float:
        """The earliest time a query is due (inf when none is waiting)."""
        return min((e.next_due for e in self._entries.values() if not e.running), default=float("inf"))
