"""The attribution sink: collectord's durable outbox into the engine, the engine onto disk.

A consumer of the outbox like the JSON-lines file and the Zeek link (collector/outbox.py):
it reads every ResultBatch of the attribution subscriptions (owner ``attribution``) and every
HostEvent (a host's hostname and addresses), feeds the engine, expires old history, and
saves the engine's state with the outbox position it reflects.  The cursor is committed
only after the state is on disk; after a crash the sink resumes after the later of the
two, so each batch is learned once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .engine import AttributionEngine
from .model import Action
from .persist import load_state, write_state
from .queries import subscription_for

__all__ = ["OWNER", "AttributionSink"]

log = logging.getLogger(__name__)

#: The owner of the attribution subscriptions in collectord's registry.
OWNER = "attribution"

_CONNECTED = frozenset({"enrolled", "connected"})


def batch_rows(columns: Iterable[str], rows: Iterable[tuple[Any, Any]]) -> list[tuple[Action, Mapping[str, Any]]]:
    """A result batch's (action, values) rows as (Action, {column: value})."""
    names = tuple(columns)
    return [
        (Action(str(getattr(action, "value", action))), dict(zip(names, values, strict=False)))
        for action, values in rows
    ]


class AttributionSink:
    """Feeds the engine from the outbox and keeps its state on disk."""

    name = "attribution"

    def __init__(
        self,
        engine: AttributionEngine,
        state_file: Path,
        *,
        save_interval: float = 5.0,
        expire_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.state_file = Path(state_file)
        self.save_interval = save_interval
        self.expire_interval = expire_interval
        self.clock = clock
        self.position: int | None = None  # of the last item learned
        self.saved_position: int | None = None
        self.batches = 0
        self.host_events = 0

    @classmethod
    def restore(
        cls, state_file: Path, engine_factory: Callable[[], AttributionEngine], **options: Any
    ) -> AttributionSink:
        """The sink with the engine collectord saved before (a fresh one when there is none)."""
        if Path(state_file).exists():
            engine, position = load_state(state_file, engine_factory().config)
        else:
            engine, position = engine_factory(), None
        sink = cls(engine, state_file, **options)
        sink.position = sink.saved_position = position
        return sink

    def learn(self, item: Any) -> None:
        """One outbox item: an attribution result batch, or a host's coming."""
        if hasattr(item, "columns"):
            if getattr(item, "owner", None) != OWNER:
                return
            sub = subscription_for(item.name)
            if sub is None:
                return
            self.engine.ingest(
                item.host_id, sub.table, batch_rows(item.columns, item.rows), item.host_time, hostname=item.hostname
            )
            self.batches += 1
        elif str(getattr(getattr(item, "event", None), "value", getattr(item, "event", ""))) in _CONNECTED:
            self.engine.set_host(item.host_id, hostname=item.hostname, addresses=item.addresses, now=item.time)
            self.host_events += 1

    async def save(self) -> None:
        """The engine's state and position to disk (the state taken here, written on a thread)."""
        if self.position is None or self.position == self.saved_position:
            return
        state, position = self.engine.to_state(), self.position
        await asyncio.to_thread(write_state, state, self.state_file, position=position)
        self.saved_position = position

    async def run(self, feed: Any) -> None:
        cursor = await feed.cursor()
        after = max(cursor.position, self.position or 0)
        last_save = last_expire = self.clock()
        try:
            while True:
                items = await feed.read(after, limit=512)
                for item in items:
                    self.learn(item)
                after = self.position = items[-1].position
                now = self.clock()
                if now - last_expire >= self.expire_interval:
                    self.engine.expire(now)
                    last_expire = now
                if now - last_save >= self.save_interval:
                    await self.save()
                    await feed.commit(after)
                    last_save = now
        finally:
            if self.position is not None and self.position != self.saved_position:
                try:
                    write_state(self.engine.to_state(), self.state_file, position=self.position)
                    self.saved_position = self.position
                except OSError as exc:
                    log.error("attribution: could not save the state to %s: %s", self.state_file, exc)
