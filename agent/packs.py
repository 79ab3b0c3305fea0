"""Pack discovery: which packs run on this host, evaluated at start and every pack_refresh_interval.

A pack runs when its platform, version and shard admit this host and every discovery
query returns a row (osquery's rule).  :meth:`PackDiscovery.evaluate` runs the discovery
queries (on the query thread: it is given the executor's ``execute``) and returns the
config's queries minus those of inactive packs; ``rows`` are osquery_packs' rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from .config import AgentConfig, ScheduledQuery, pack_active

__all__ = ["PackDiscovery"]

log = logging.getLogger("agentd")


class PackDiscovery:
    """The config's packs, which of them are active, and when discovery runs again."""

    def __init__(self, config: AgentConfig, *, refresh_interval: float) -> None:
        self.config = config
        self.refresh_interval = refresh_interval
        self.rows: Sequence[dict[str, Any]] = ()  # osquery_packs
        self._runs: dict[str, int] = {}  # pack -> discovery evaluations
        self._discovers = any(pack.discovery and not pack.skipped for pack in config.packs)
        self.next_refresh = float("inf")  # when evaluate() is due again (inf: no discovery queries)

    def due(self, now: float) -> bool:
        return now >= self.next_refresh

    def evaluate(self, execute: Callable[[str], Sequence[Any]], now: float) -> list[ScheduledQuery]:
        """Query thread: evaluate every pack; the config's queries that may run now."""
        if self._discovers:
            self.next_refresh = now + self.refresh_interval
        inactive: set[str] = set()
        was_active = {row["name"]: row["active"] for row in self.rows}
        rows = []
        for pack in self.config.packs:
            active = pack.runs_here() and pack_active(pack, execute)
            if pack.discovery and not pack.skipped:
                self._runs[pack.name] = self._runs.get(pack.name, 0) + 1
            if not active:
                inactive.add(pack.name)
            if was_active.get(pack.name) != int(active):
                if active and pack.name in was_active:
                    log.info("pack %s is active now: its discovery queries return rows", pack.name)
                elif not active:
                    log.info("pack %s is inactive: %s", pack.name, pack.inactive_reason or pack.skipped)
            rows.append(
                {
                    "name": pack.name,
                    "platform": pack.platform,
                    "version": pack.version,
                    "shard": pack.shard,
                    "discovery_cache_hits": 0,
                    "discovery_executions": self._runs.get(pack.name, 0),
                    "active": int(active),
                }
            )
        self.rows = tuple(rows)
        return [q for q in self.config.queries if not q.pack or q.pack not in inactive]
