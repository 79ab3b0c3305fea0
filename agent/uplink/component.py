"""The uplink as an agentd component: queue, subscriptions and client wired to the agent's parts.

``agentd`` passes :func:`uplink_component` to ``Agent(components=...)``; without a collector
(no ``collector.url(s)`` in the config and no ``--collector``) it builds nothing that runs.
At start: the queue becomes the runner's uplink hook (every committed run with rows is
queued in its own transaction), persisted subscriptions go back on the schedule (before
the scheduler loop starts), event rows wake streaming subscriptions, the status gets an
uplink section, and the client connects.  At stop, all of that is undone, in reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..hostid import collector_host_id
from ..lifecycle import Component
from ..runner import UplinkRun, event_tables_in
from ..status import VERSION
from .client import Identity, UplinkClient
from .queue import UplinkQueue
from .settings import CollectorSection, override
from .subscriptions import SubscriptionSet

if TYPE_CHECKING:
    from ..daemon import Parts

__all__ = ["Disabled", "Uplink", "uplink_component"]

log = logging.getLogger("agentd.uplink")


class Disabled:
    """No collector configured: a component that does nothing."""

    name = "collector uplink (none configured)"

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def uplink_component(urls: Sequence[str] = (), enroll_secret_file: str | None = None) -> Callable[[Parts], Component]:
    """The component factory; ``urls``/``enroll_secret_file`` (agentd's flags) override the config."""

    def build(parts: Parts) -> Component:
        section = override(parts.config.collector, urls, enroll_secret_file)
        if section is None or not section.enabled:
            return Disabled()
        return Uplink(parts, section)

    return build


def _addresses() -> tuple[str, ...]:
    """This host's addresses, loopback and link-local left out."""
    import ipaddress

    import psutil

    found: list[str] = []
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            text = entry.address.split("%")[0]
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                continue
            if not (address.is_loopback or address.is_link_local):
                found.append(text)
    return tuple(dict.fromkeys(found))[:1024]


class Uplink:
    """The collector uplink component."""

    name = "collector uplink"

    def __init__(self, parts: Parts, section: CollectorSection) -> None:
        self.parts = parts
        self.section = section
        statedb = parts.stores.statedb
        database = parts.executor.database
        self.subscriptions = SubscriptionSet(
            statedb, parts.schedule, event_tables=lambda sql: event_tables_in(database, sql)
        )
        self.queue = UplinkQueue(
            statedb,
            max_rows=section.queue_max_rows,
            max_bytes=section.queue_max_bytes,
            subscription_of=self.subscriptions.subscription_of,
        )
        identity = Identity(
            host_id=collector_host_id(
                parts.config.options.host_identifier,
                identifier=parts.stores.host_identifier,
                uuid=parts.status.info.uuid,
                instance_id=parts.stores.instance_id,
            ),
            hostname=socket.gethostname(),
            addresses=_addresses(),
            platform=platform.system().lower() or "linux",
            agent_version=VERSION,
            tables=tuple(database.tables())[:4096],  # loaded or not yet (tables load on first use)
            stream=parts.stores.instance_id,
        )

        async def execute(sql: str, time_limit: float) -> tuple[Sequence[str], Sequence[Sequence[Any]]]:
            return await parts.executor.query(sql, time_limit=time_limit)

        self.client = UplinkClient(section, self.queue, self.subscriptions, identity, execute)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._remove_listener: Callable[[], None] | None = None

    def _hook(self, db: Any, run: UplinkRun) -> None:
        """The runner's uplink hook (query thread, inside the run's commit transaction)."""
        self.queue.enqueue(db, run)
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(self.client.wake)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        restored = self.subscriptions.load()
        if restored:
            log.info("%d collector subscriptions back on the schedule", restored)
        self.parts.executor.runner.uplink = self._hook
        self._remove_listener = self.parts.events.add_listener(self.subscriptions.on_event)
        self.parts.status.set_uplink(self.client.status)
        self._task = asyncio.create_task(self.client.run(), name="agentd-uplink")
        self._task.add_done_callback(self._done)
        stats = self.queue.stats()
        log.info(
            "uplink to %s: %d batches (%d rows) queued from before",
            ", ".join(self.section.urls),
            stats.queued_batches,
            stats.queued_rows,
        )

    def _done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("uplink failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
            self.parts.on_failure(self.name, exc)

    async def stop(self) -> None:
        await self.client.stop()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel("agentd is shutting down")
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        self.subscriptions.close()
        self.parts.executor.runner.uplink = None
        self._loop = None
