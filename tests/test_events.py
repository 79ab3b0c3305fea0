"""The event store behind *_events tables: bounds, expiry, per-consumer positions."""

from __future__ import annotations

import pytest

from tables.events import BLOCK_ROWS, EVENT_STORES, EventStore, event_table
from tables.spec import Column
from tables.sqlite import Database, QueryError
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


# -- the compact store: blocks, columns, two-phase reads, accounting -------------------------


def _expected(rows: list[dict], columns: list[str]) -> list[dict]:
    return [{c: r.get(c) for c in columns} for r in rows]


def test_rows_round_trip_through_sealed_blocks_with_every_kind_of_value() -> None:
    store = EventStore("demo_events", clock=Clock(500.0))
    values = [None, 0, -7, 2**63 - 1, 2**64 - 1, 1.5, "", "päth/✓", "\udcff raw", b"\x00\xff", True]
    rows = [{"pid": i, "v": values[i % len(values)], "s": f"s{i % 3}"} for i in range(3 * BLOCK_ROWS + 17)]
    store.extend(dict(r) for r in rows)
    got = store.select(None)
    assert len(got) == len(rows) == store.stats().buffered
    for i, (row, want) in enumerate(zip(got, rows, strict=True)):
        assert (row["pid"], row["v"], row["s"]) == (want["pid"], want["v"], want["s"]), i
        assert row["eid"] == f"{i + 1:010d}" and row["time"] == 500


def test_a_value_msgpack_cannot_hold_is_kept_as_text() -> None:
    store = EventStore("demo_events", clock=Clock())
    store.extend({"pid": i, "big": 2**70 if i == 5 else i} for i in range(BLOCK_ROWS))  # sealed: one block
    rows = store.select(None)
    assert rows[5]["big"] == str(2**70) and rows[6]["big"] == 6


def test_columns_a_source_adds_later_read_as_null_before() -> None:
    store = EventStore("demo_events", clock=Clock())
    store.extend({"pid": i} for i in range(BLOCK_ROWS + 3))  # one sealed block, a tail of 3
    store.extend({"pid": i, "extra": f"x{i}"} for i in range(1000, 1000 + BLOCK_ROWS))
    rows = store.select(None)
    assert rows[0]["extra"] is None and rows[BLOCK_ROWS + 2]["extra"] is None
    assert rows[BLOCK_ROWS + 3]["extra"] == "x1000" and rows[-1]["extra"] == f"x{1000 + BLOCK_ROWS - 1}"
    read = store.read(None, columns=["extra", "nope", "pid"])
    assert read.columns == ("extra", "pid"), "columns the store never saw are left out (NULL in SQL)"
    assert list(read.tuples())[BLOCK_ROWS + 3] == ("x1000", 1000)


def test_overflow_across_blocks_keeps_exactly_the_newest_rows_and_bounded_storage() -> None:
    bound = BLOCK_ROWS + 10
    store = EventStore("demo_events", max_events=bound, clock=Clock())
    total = 5 * BLOCK_ROWS + 3
    store.extend({"pid": i} for i in range(total))
    assert [r["pid"] for r in store.select(None)] == list(range(total - bound, total))
    stats = store.stats()
    assert (stats.buffered, stats.added, stats.dropped_overflow) == (bound, total, total - bound)
    assert len(store._sealed) <= bound // BLOCK_ROWS + 2, "dropped blocks are freed"


def test_expiry_across_blocks_drops_exactly_the_old_rows() -> None:
    clock = Clock(0.0)
    store = EventStore("demo_events", expiry=100, clock=clock)
    for i in range(3 * BLOCK_ROWS):
        clock.now = i * 0.5  # rows added over 1.5 * BLOCK_ROWS seconds
        store.add({"pid": i})
    clock.now = 3 * BLOCK_ROWS * 0.5 + 20  # rows added before now - 100 are gone
    kept = [r["pid"] for r in store.select(None)]
    first_kept = next(i for i in range(3 * BLOCK_ROWS) if i * 0.5 >= clock.now - 100)
    assert kept == list(range(first_kept, 3 * BLOCK_ROWS))
    assert store.stats().dropped_expired == first_kept


def test_a_consumer_read_moves_its_position_only_when_committed() -> None:
    store = EventStore("demo_events", clock=Clock())
    store.extend({"pid": i} for i in range(3))
    assert [r["pid"] for r in store.read("q")] == [0, 1, 2]
    store.add({"pid": 3})
    assert [r["pid"] for r in store.read("q")] == [0, 1, 2, 3], "uncommitted: the same start"
    store.discard_read("q")
    assert [r["pid"] for r in store.read("q")] == [0, 1, 2, 3]
    store.commit_read("q")
    assert list(store.read("q")) == []
    store.add({"pid": 4})
    assert [r["pid"] for r in store.read("q")] == [4]
    store.commit_read("q")
    store.commit_read("q")  # nothing pending: no effect
    assert list(store.read("q")) == [] and store.stats().consumers == 1


def test_rows_a_consumer_never_saw_are_counted_as_missed() -> None:
    store = EventStore("demo_events", max_events=10, clock=Clock())
    store.extend({"pid": i} for i in range(4))
    store.select("q")  # sees 0-3
    store.extend({"pid": i} for i in range(4, 30))  # 4-19 are pushed out before q reads them
    assert store.stats().missed == {"q": 16}
    assert [r["pid"] for r in store.select("q")] == list(range(20, 30))
    assert store.stats().missed == {"q": 16}
    store.select("late")  # a consumer that starts now missed nothing
    store.extend({"pid": i} for i in range(30, 35))
    assert store.stats().missed == {"q": 16}
    assert store.stats().dropped_overflow == 25


def test_a_scan_sees_the_rows_present_when_it_started_while_rows_are_added() -> None:
    store = EventStore("demo_events", max_events=2 * BLOCK_ROWS, clock=Clock())
    store.extend({"pid": i} for i in range(2 * BLOCK_ROWS))
    rows = store.read("q").tuples()
    first = [next(rows) for _ in range(3)]
    store.extend({"pid": i} for i in range(10_000, 10_000 + 3 * BLOCK_ROWS))  # overflows every original block
    rest = list(rows)
    assert [r[store.read(None).columns.index("pid")] for r in first + rest] == list(range(2 * BLOCK_ROWS))


def test_event_table_sql_matches_the_rows_added() -> None:
    store = EventStore("demo_events", clock=Clock(50.0))
    db = Database([SPEC], services={EVENT_STORES: {"demo_events": store}})
    rows = [{"pid": (i * 7919) % 1000, "time": 100 + i % 13} for i in range(2 * BLOCK_ROWS + 5)]
    store.extend(dict(r) for r in rows)
    assert db.execute("SELECT count(*) FROM demo_events").rows == [(len(rows),)]
    assert db.execute("SELECT pid, time FROM demo_events").rows == [(r["pid"], r["time"]) for r in rows]
    assert db.execute("SELECT eid FROM demo_events WHERE pid = 7").rows == [
        (f"{i + 1:010d}",) for i, r in enumerate(rows) if r["pid"] == 7
    ]
    assert db.execute("SELECT max(time), min(pid) FROM demo_events").rows == [
        (max(r["time"] for r in rows), min(r["pid"] for r in rows))
    ]
    assert db.execute("SELECT * FROM demo_events LIMIT 2").rows == [(r["pid"], r["time"]) for r in rows[:2]]


def test_a_stream_leaves_the_consumer_read_pending_until_the_caller_commits() -> None:
    store = EventStore("demo_events", clock=Clock())
    db = Database([SPEC], services={EVENT_STORES: {"demo_events": store}})
    store.extend({"pid": i} for i in range(3))
    with db.stream("SELECT pid FROM demo_events", consumer="sched") as result:
        assert [r[0] for r in result] == [0, 1, 2]
    db.discard_reads("sched")
    with db.stream("SELECT pid FROM demo_events", consumer="sched") as result:
        assert [r[0] for r in result] == [0, 1, 2]
    db.commit_reads("sched")
    assert db.execute("SELECT count(*) FROM demo_events", consumer="sched").rows == [(0,)]
    with pytest.raises(QueryError):
        db.execute("SELECT pid FROM demo_events WHERE pid = (SELECT 1 UNION SELECT 2)", consumer="other", max_rows=0)
    assert db.execute("SELECT count(*) FROM demo_events", consumer="other").rows == [(3,)], "a failed read is undone"


def test_rows_with_the_same_keys_in_another_order_are_stored_by_name() -> None:
    store = EventStore("demo_events", clock=Clock())
    store.add({"pid": 1, "path": "/a"})
    store.add({"path": "/b", "pid": 2})  # another order: values still go to their columns
    store.add({"pid": 3, "path": "/c"})
    store.add({"pid": 4})  # fewer keys
    rows = store.select(None)
    assert [(r["pid"], r["path"]) for r in rows] == [(1, "/a"), (2, "/b"), (3, "/c"), (4, None)]


def test_host_values_reach_sql_as_from_any_table_in_blocks_and_in_the_tail() -> None:
    """Text that is not UTF-8 comes out escaped and a u64 beyond SQLite's range as text (tables.text), sealed or not."""
    spec = event_table("odd_events", "Odd values.", (Column("cmdline", "TEXT"), Column("inode", "BIGINT")))
    store = EventStore("odd_events", clock=Clock())
    db = Database([spec], services={EVENT_STORES: {"odd_events": store}})
    rows = [{"cmdline": f"run{i}", "inode": i} for i in range(BLOCK_ROWS + 3)]
    for i in (5, BLOCK_ROWS + 1):  # one in a sealed block, one in the tail
        rows[i] = {"cmdline": f"bad\udcff{i} a\\xFF", "inode": 2**64 - i}
    store.extend(dict(r) for r in rows)
    got = db.execute("SELECT cmdline, inode FROM odd_events").rows
    assert got[5] == ("bad\\xFF5 a\\x5CxFF", str(2**64 - 5))
    assert got[BLOCK_ROWS + 1] == (f"bad\\xFF{BLOCK_ROWS + 1} a\\x5CxFF", str(2**64 - BLOCK_ROWS - 1))
    assert got[:2] == [("run0", 0), ("run1", 1)] and len(got) == len(rows)
    assert db.execute("SELECT count(*) FROM odd_events WHERE cmdline LIKE 'bad\\xFF%'").rows == [(2,)]
    assert store.select()[5]["cmdline"] == "bad\udcff5 a\\xFF", "the store keeps the host's text; SQL sees it escaped"
    assert db.execute("SELECT cmdline, inode FROM odd_events").rows == got, "a block's column is checked once, kept"
    clean = BLOCK_ROWS + 1
    store.extend({"cmdline": f"c{i}", "inode": i} for i in range(clean))  # seals a block without odd values
    assert db.execute("SELECT cmdline FROM odd_events WHERE inode = 2").rows == [("run2",), ("c2",)]
    assert db.execute("SELECT cmdline, inode FROM odd_events").rows[-clean:] == [(f"c{i}", i) for i in range(clean)]
