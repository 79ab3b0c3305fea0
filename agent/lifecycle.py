"""How agentd's long-lived parts start and stop: in order, and all of them, whatever happened.

uvicorn's shape: startup starts the parts one at a time; shutdown stops every part that
was started, newest first, each within its own cap and within what is left of one
deadline, and a part that fails to stop never keeps the others from stopping.  A part is
registered *before* its ``start()`` runs, so a start that fails half-way is stopped too:
``stop()`` must be safe after a failed start, and safe twice (the event sources' rule).

:class:`BackgroundTask` is the shape of a part that is one asyncio task (the watchdog,
the loss reporter, the scheduler loop): its unexpected end is reported to ``on_failure``,
which makes the agent stop.
"""

from __future__ import annotations

import abc
import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["BackgroundTask", "Closing", "Component", "Deadline", "Lifecycle", "Periodic", "StartupError"]

log = logging.getLogger("agentd")


class StartupError(Exception):
    """Startup cannot go on; the message is the one line agentd logs before it exits with status 1."""


class Component(Protocol):
    """A long-lived part of agentd."""

    @property
    def name(self) -> str: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Deadline:
    """One time budget shared by the steps of a shutdown."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._end = clock() + seconds

    def left(self, cap: float = float("inf"), floor: float = 0.05) -> float:
        """Seconds left, at most ``cap``, at least ``floor`` (every step gets a moment)."""
        return max(floor, min(cap, self._end - self._clock()))


@dataclass(slots=True)
class _Entry:
    component: Component
    stop_timeout: float


class Lifecycle:
    """The parts started so far, in order; :meth:`stop` stops them newest first."""

    def __init__(self) -> None:
        self._started: list[_Entry] = []

    @property
    def started(self) -> tuple[str, ...]:
        """Names of the parts started (or starting), oldest first."""
        return tuple(e.component.name for e in self._started)

    async def start(self, component: Component, *, stop_timeout: float = 1.0) -> None:
        """Start ``component``; from this moment on :meth:`stop` stops it, even if its start fails."""
        self._started.append(_Entry(component, stop_timeout))
        await component.start()

    def adopt(self, component: Component, *, stop_timeout: float = 1.0) -> None:
        """Register a part that is already running (a resource opened during startup)."""
        self._started.append(_Entry(component, stop_timeout))

    async def stop(self, deadline: Deadline) -> None:
        """Stop every part, newest first, each within ``min(its stop_timeout, what is left)``."""
        while self._started:
            entry = self._started.pop()
            name = entry.component.name
            try:
                await asyncio.wait_for(entry.component.stop(), timeout=deadline.left(entry.stop_timeout))
            except TimeoutError:
                log.error("shutdown: %s did not stop in time", name)
            except Exception:
                log.exception("shutdown: stopping %s failed", name)


class Closing:
    """A resource opened during startup (a database, a file) as a part: stop() closes it.

    ``close`` may return an awaitable (e.g. the close submitted to the thread that uses the resource).
    """

    def __init__(self, name: str, close: Callable[[], Any]) -> None:
        self.name = name
        self._close: Callable[[], Any] | None = close

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        close, self._close = self._close, None
        if close is not None:
            result = close()
            if inspect.isawaitable(result):
                await result


class BackgroundTask(abc.ABC):
    """A part that is one asyncio task; if the task ends with an error, ``on_failure`` is told."""

    def __init__(self, name: str, on_failure: Callable[[str, BaseException], None]) -> None:
        self.name = name
        self._on_failure = on_failure
        self._task: asyncio.Task[None] | None = None

    @abc.abstractmethod
    def run(self) -> Awaitable[None]:
        """The task's body (runs until cancelled)."""

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._body(), name=f"agentd-{self.name}")
            self._task.add_done_callback(self._done)

    async def _body(self) -> None:
        await self.run()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None or task.done():
            return
        task.cancel("agentd is shutting down")
        try:
            await task
        except asyncio.CancelledError:
            pass

    def _done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("%s failed: %s: %s", self.name, type(exc).__name__, exc, exc_info=exc)
            self._on_failure(self.name, exc)


class Periodic(BackgroundTask):
    """Calls ``action()`` every ``interval`` seconds (the first call after one interval)."""

    def __init__(
        self,
        name: str,
        interval: float,
        action: Callable[[], Any],
        on_failure: Callable[[str, BaseException], None],
        *,
        first: float | None = None,
    ) -> None:
        super().__init__(name, on_failure)
        self.interval = interval
        self.action = action
        self.first = interval if first is None else first

    async def run(self) -> None:
        await asyncio.sleep(self.first)
        while True:
            self.action()
            await asyncio.sleep(self.interval)
