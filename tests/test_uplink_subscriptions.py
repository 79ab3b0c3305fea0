"""agent.uplink.subscriptions: persisted, on the schedule, streamed on new event rows."""

from __future__ import annotations

import asyncio

import pytest

from agent.schedule import Schedule
from agent.state import StateDB
from agent.uplink.subscriptions import PREFIX, SubscriptionSet
from protocol.messages import Mode, Subscribe


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def parts(tmp_path):
    statedb = StateDB(str(tmp_path / "state.db"))
    clock = Clock()
    schedule = Schedule(statedb, clock=clock, splay_percent=0, seed="s")
    yield statedb, schedule, clock
    statedb.close()


def reads(sql: str) -> frozenset[str]:
    return frozenset({"process_events"}) if "process_events" in sql else frozenset()


PROCS = Subscribe("q1", "procs", "SELECT pid FROM processes", 60, Mode.DIFFERENTIAL, True)
EXECS = Subscribe("q2", "execs", "SELECT pid, path FROM process_events", 3600, Mode.DIFFERENTIAL, True)


def test_subscriptions_join_the_schedule_and_come_back_after_a_restart(parts):
    statedb, schedule, clock = parts
    subs = SubscriptionSet(statedb, schedule, event_tables=reads)
    assert subs.apply(PROCS) is True
    assert subs.apply(PROCS) is False  # already running: nothing changes
    assert subs.apply(Subscribe("q3", "snap", "SELECT 1", 5, Mode.SNAPSHOT, False))
    query = schedule.queries[PREFIX + "q1"]
    assert (query.query, query.interval, query.snapshot, query.removed) == (
        "SELECT pid FROM processes",
        60,
        False,
        True,
    )
    snap = schedule.queries[PREFIX + "q3"]
    assert snap.snapshot and not snap.removed
    assert subs.ids() == ("q1", "q3")
    assert subs.subscription_of(PREFIX + "q1") == "q1" and subs.subscription_of("pack_x_y") is None

    later = Schedule(statedb, clock=clock, splay_percent=0, seed="s")
    again = SubscriptionSet(statedb, later, event_tables=reads)
    assert again.load() == 2
    assert set(later.queries) == {PREFIX + "q1", PREFIX + "q3"}
    assert again.remove("q1") and not again.remove("q1")
    assert set(later.queries) == {PREFIX + "q3"}
    assert (
        SubscriptionSet(statedb, Schedule(statedb, clock=clock, splay_percent=0, seed="s"), event_tables=reads).load()
        == 1
    )


async def test_new_event_rows_make_a_streaming_subscription_due_within_the_delay(parts):
    statedb, schedule, clock = parts
    subs = SubscriptionSet(statedb, schedule, event_tables=reads, stream_delay=0.05)
    subs.apply(EXECS)
    subs.apply(PROCS)
    name = PREFIX + "q2"
    for query in schedule.due(clock.now):  # the first runs
        schedule.mark_run(query.name, clock.now)
    clock.now += 1
    assert schedule.due(clock.now) == []  # an hour until its interval
    schedule.changed.clear()
    subs.on_event("socket_events", {"pid": 1})  # a table it does not read: nothing
    subs.on_event("process_events", {"pid": 2})
    subs.on_event("process_events", {"pid": 3})  # folded into the same wake-up
    await asyncio.wait_for(schedule.changed.wait(), 5)
    assert [q.name for q in schedule.due(clock.now)] == [name]
    assert list(subs.streaming()) == [name]
    subs.close()
