"""agent.lifecycle: parts start in order and all of them stop, newest first, whatever failed."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agent.lifecycle import BackgroundTask, Closing, Deadline, Lifecycle, Periodic
from tests._clock import Clock


class Part:
    """A part that records its calls in a shared journal; it can fail or hang where told."""

    def __init__(self, name: str, journal: list[str], *, fail_start: bool = False, stop: str = "ok") -> None:
        self.name = name
        self.journal = journal
        self.fail_start = fail_start
        self.stop_mode = stop

    async def start(self) -> None:
        self.journal.append(f"start {self.name}")
        if self.fail_start:
            raise OSError(2, f"{self.name} cannot start")

    async def stop(self) -> None:
        self.journal.append(f"stop {self.name}")
        if self.stop_mode == "hang":
            await asyncio.Event().wait()
        if self.stop_mode == "raise":
            raise RuntimeError(f"{self.name} broke while stopping")


async def test_parts_stop_newest_first_and_a_failed_start_is_stopped_too():
    journal: list[str] = []
    lifecycle = Lifecycle()
    await lifecycle.start(Part("a", journal))
    lifecycle.adopt(Part("b", journal))  # already open: registered without start()
    with pytest.raises(OSError, match="c cannot start"):
        await lifecycle.start(Part("c", journal, fail_start=True))
    assert lifecycle.started == ("a", "b", "c")
    await lifecycle.stop(Deadline(5))
    assert journal == ["start a", "start c", "stop c", "stop b", "stop a"]
    assert lifecycle.started == ()
    await lifecycle.stop(Deadline(5))  # twice: nothing left to stop
    assert journal[-1] == "stop a"


async def test_a_part_that_hangs_or_raises_does_not_keep_the_others_from_stopping(caplog):
    journal: list[str] = []
    lifecycle = Lifecycle()
    for part in (Part("first", journal), Part("raises", journal, stop="raise"), Part("hangs", journal, stop="hang")):
        await lifecycle.start(part, stop_timeout=0.2)
    with caplog.at_level(logging.ERROR, logger="agentd"):
        await asyncio.wait_for(lifecycle.stop(Deadline(5)), timeout=5)
    assert journal[-3:] == ["stop hangs", "stop raises", "stop first"]
    assert "shutdown: hangs did not stop in time" in caplog.text
    assert "shutdown: stopping raises failed" in caplog.text and "raises broke while stopping" in caplog.text


def test_deadline_caps_and_floors():
    clock = Clock(100.0)
    deadline = Deadline(5, clock=clock)
    assert deadline.left() == 5 and deadline.left(cap=2) == 2
    clock.advance(4.5)
    assert deadline.left(cap=2) == pytest.approx(0.5)
    clock.advance(10)
    assert deadline.left() == 0.05  # every step still gets a moment


async def test_closing_awaits_an_awaitable_close_once():
    closed: list[str] = []

    async def close() -> None:
        closed.append("closed")

    part = Closing("resource", close)
    await part.start()
    await part.stop()
    await part.stop()
    assert closed == ["closed"]


class Crashes(BackgroundTask):
    async def run(self) -> None:
        await asyncio.sleep(0)
        raise ConnectionResetError(104, "Connection reset by peer")


async def test_a_background_task_that_dies_reports_it_and_one_that_is_stopped_does_not(caplog):
    failures: list[tuple[str, str]] = []

    def on_failure(name: str, exc: BaseException) -> None:
        failures.append((name, type(exc).__name__))

    crashing = Crashes("link", on_failure)
    with caplog.at_level(logging.ERROR, logger="agentd"):
        await crashing.start()
        for _ in range(100):
            if failures:
                break
            await asyncio.sleep(0.01)
    assert failures == [("link", "ConnectionResetError")] and "link failed: ConnectionResetError" in caplog.text
    await crashing.stop()  # safe after the task ended

    calls: list[int] = []
    periodic = Periodic("tick", 0.01, lambda: calls.append(1), on_failure, first=0)
    await periodic.start()
    for _ in range(200):
        if len(calls) >= 3:
            break
        await asyncio.sleep(0.01)
    assert periodic.running
    await periodic.stop()
    assert not periodic.running and len(calls) >= 3
    assert failures == [("link", "ConnectionResetError")]  # a cancelled task is not a failure
