"""The event store behind *_events tables: bounds, expiry, per-consumer positions."""

from __future__ import annotations

import pytest

from tables.events import EVENT_STORES, EventStore, event_table
from tables.spec import Column
from tables.sqlite import Database
from tests._clock import Clock

SPEC = event_table(
    "demo_events",
    "Demo events.",
    (Column("pid", "BIGINT"), Column("time", "BIGINT", additional=True), Column("eid", "TEXT", hidden=True)),
)


def test_consumers_see_only_new_rows() -> None:
    store = EventStore("demo_events", clock=Clock())
    store.extend({"pid": i} for i in range(3))
    assert [r["pid"] for r in store.select("q1")] == [0, 1, 2]
    assert store.select("q1") == []
    store.add({"pid": 3})
    assert [r["pid"] for r in store.select("q1")] == [3]
    assert [r["pid"] for r in store.select("q2")] == [0, 1, 2, 3]
    assert [r["pid"] for r in store.select(None)] == [0, 1, 2, 3], "ad-hoc queries see the whole buffer"


def test_bound_drops_oldest_and_counts() -> None:
    store = EventStore("demo_events", max_events=3, clock=Clock())
    store.extend({"pid": i} for i in range(5))
    assert [r["pid"] for r in store.select(None)] == [2, 3, 4]
    stats = store.stats()
    assert (stats.buffered, stats.added, stats.dropped_overflow) == (3, 5, 2)


def test_expiry_drops_old_rows_and_counts() -> None:
    clock = Clock()
    store = EventStore("demo_events", expiry=60, clock=clock)
    store.add({"pid": 1})
    clock.now += 30
    store.add({"pid": 2})
    clock.now += 45
    assert [r["pid"] for r in store.select(None)] == [2]
    assert store.stats().dropped_expired == 1


def test_rows_get_eid_and_time() -> None:
    store = EventStore("demo_events", clock=Clock(123.9))
    store.add({"pid": 1})
    store.add({"pid": 2, "time": 5})
    rows = store.select(None)
    assert [r["eid"] for r in rows] == ["0000000001", "0000000002"] and [r["time"] for r in rows] == [123, 5]


def test_invalid_bound() -> None:
    with pytest.raises(ValueError, match="events_max"):
        EventStore("demo_events", max_events=0)


def test_event_table_through_sql() -> None:
    store = EventStore("demo_events", clock=Clock())
    db = Database([SPEC], services={EVENT_STORES: {"demo_events": store}})
    store.extend({"pid": i, "time": 100 + i} for i in range(4))
    assert db.execute("SELECT count(*) FROM demo_events", consumer="sched").rows == [(4,)]
    assert db.execute("SELECT count(*) FROM demo_events", consumer="sched").rows == [(0,)]
    # constraining time reads the whole buffer and leaves positions alone (osquery's events_optimize)
    assert db.execute("SELECT pid FROM demo_events WHERE time >= 102", consumer="sched").rows == [(2,), (3,)]
    store.add({"pid": 9, "time": 200})
    assert db.execute("SELECT pid FROM demo_events", consumer="sched").rows == [(9,)]
    assert db.execute("SELECT count(*) FROM demo_events").rows == [(5,)]


def test_event_table_without_a_store_is_empty() -> None:
    assert Database([SPEC]).execute("SELECT * FROM demo_events").rows == []


def test_event_table_names_end_in_events() -> None:
    with pytest.raises(ValueError, match="_events"):
        event_table("demo", "Demo.", (Column("x", "INTEGER"),))
