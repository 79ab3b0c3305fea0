"""agent.uplink.queue: sequence numbers, bounds with exact drop counts, protection of batches in flight, acks."""

from __future__ import annotations

import msgpack
import pytest

from agent.runner import UplinkRun
from agent.state import StateDB
from agent.uplink.queue import EntryKind, UplinkQueue
from protocol.messages import Action, Dropped, Results


@pytest.fixture
def statedb(tmp_path):
    db = StateDB(str(tmp_path / "state.db"))
    yield db
    db.close()


def run(first: int, count: int, *, name: str = "q", action: str = "added") -> UplinkRun:
    rows = tuple((action, (first + i, f"row {first + i}", 1.5, None, b"\x00")) for i in range(count))
    return UplinkRun(name, ("n", "text", "f", "z", "b"), rows, 3, 0, 1700000000.5)


def enqueue(queue: UplinkQueue, statedb: StateDB, item: UplinkRun) -> list[int]:
    with statedb.transaction() as db:
        return queue.enqueue(db, item)


def test_batches_get_consecutive_sequence_numbers_and_typed_rows(statedb):
    queue = UplinkQueue(statedb, max_rows=1000, max_bytes=10**9, subscription_of=lambda n: "q1" if n == "sub" else None)
    assert enqueue(queue, statedb, run(0, 3)) == [1]
    assert enqueue(queue, statedb, run(3, 2, name="sub")) == [2]
    first, second = queue.read(0)
    assert isinstance(first.message, Results)
    assert first.message == Results(
        1,
        None,
        "q",
        ("n", "text", "f", "z", "b"),
        tuple((Action.ADDED, (i, f"row {i}", 1.5, None, b"\x00")) for i in range(3)),
        3,
        0,
        1700000000.5,
    )
    assert second.message.subscription == "q1" and second.seq == 2
    stats = queue.stats()
    assert (stats.next_seq, stats.queued_batches, stats.queued_rows) == (3, 2, 5)


def test_a_rolled_back_run_leaves_nothing(statedb):
    queue = UplinkQueue(statedb, max_rows=1000, max_bytes=10**9)
    with pytest.raises(RuntimeError), statedb.transaction() as db:
        queue.enqueue(db, run(0, 3))
        raise RuntimeError("the run's commit failed")
    assert queue.read(0) == [] and queue.stats().next_seq == 1
    assert enqueue(queue, statedb, run(0, 1)) == [1]


def test_big_runs_are_cut_into_batches_that_fit_a_frame(statedb):
    queue = UplinkQueue(statedb, max_rows=10**6, max_bytes=10**9, chunk_bytes=4096)
    seqs = enqueue(queue, statedb, run(0, 1000))
    assert len(seqs) > 1 and seqs == list(range(1, len(seqs) + 1))
    entries = queue.read(0, 1000)
    assert all(e.bytes <= 4096 * 2 for e in entries)
    values = [v[0] for e in entries for _, v in e.message.rows]
    assert values == list(range(1000))


def test_overflow_drops_the_oldest_into_one_gap_and_counts_exactly(statedb):
    queue = UplinkQueue(statedb, max_rows=25, max_bytes=10**9, clock=lambda: 42.0)
    for i in range(5):
        enqueue(queue, statedb, run(i * 10, 10))  # seq 1..5, 50 rows: 3 oldest batches must go
    stats = queue.stats()
    assert (stats.queued_rows, stats.dropped_rows, stats.dropped_batches) == (20, 30, 3)
    gap, fourth, fifth = queue.read(0)
    assert gap.kind is EntryKind.GAP and gap.message == Dropped(1, 3, 3, 30, 42.0)
    assert [fourth.seq, fifth.seq] == [4, 5]
    enqueue(queue, statedb, run(50, 10))  # seq 6 pushes seq 4 out: the gap grows
    assert queue.read(0)[0].message == Dropped(1, 4, 4, 40, 42.0)
    assert queue.stats().dropped_rows == 40


def test_protected_batches_stay_and_the_gap_comes_after_them(tmp_path):
    statedb = StateDB(str(tmp_path / "s.db"))
    queue = UplinkQueue(statedb, max_rows=30, max_bytes=10**9, clock=lambda: 7.0)
    enqueue(queue, statedb, run(0, 10))
    enqueue(queue, statedb, run(10, 10))
    assert [e.seq for e in queue.take(0, 2)] == [1, 2]  # both may be in flight now
    enqueue(queue, statedb, run(20, 10))
    enqueue(queue, statedb, run(30, 10))  # 40 rows > 30: the oldest unprotected (seq 3) goes
    entries = queue.read(0)
    assert [(e.seq, e.kind) for e in entries] == [
        (1, EntryKind.RESULTS),
        (2, EntryKind.RESULTS),
        (3, EntryKind.GAP),
        (4, EntryKind.RESULTS),
    ]
    assert entries[2].message == Dropped(3, 3, 1, 10, 7.0)
    queue.resume(2)  # the welcome says 1 and 2 were stored
    assert [e.seq for e in queue.read(0)] == [3, 4] and queue.protect_upto == 2
    statedb.close()


def test_acks_forget_and_survive_a_reopen(tmp_path):
    path = str(tmp_path / "s.db")
    statedb = StateDB(path)
    queue = UplinkQueue(statedb, max_rows=1000, max_bytes=10**9)
    for i in range(4):
        enqueue(queue, statedb, run(i, 1))
    queue.acked(2)
    queue.acked(1)  # older acks change nothing
    assert [e.seq for e in queue.read(0)] == [3, 4]
    assert queue.stats().acked == 2 and queue.stats().queued_rows == 2
    queue.set_text("node_key", "the-key")
    statedb.close()
    again = UplinkQueue(StateDB(path), max_rows=1000, max_bytes=10**9)
    assert [e.seq for e in again.read(0)] == [3, 4]
    assert again.stats().next_seq == 5 and again.get_text("node_key") == "the-key"
    assert enqueue(again, again.statedb, run(9, 1)) == [5]


def test_resume_beyond_what_was_queued_moves_the_next_sequence(statedb):
    queue = UplinkQueue(statedb, max_rows=1000, max_bytes=10**9)
    enqueue(queue, statedb, run(0, 1))
    queue.resume(10)  # a collector that knows more (an agent's acked_seq it took over)
    assert queue.read(0) == [] and queue.stats().next_seq == 11
    assert enqueue(queue, statedb, run(1, 1)) == [11]


def test_stored_batches_are_plain_msgpack(statedb):
    queue = UplinkQueue(statedb, max_rows=1000, max_bytes=10**9)
    enqueue(queue, statedb, run(0, 1))
    with statedb.transaction() as db:
        (data,) = db.execute("SELECT data FROM uplink_queue").fetchone()
    assert msgpack.unpackb(data)[:3] == [None, "q", ["n", "text", "f", "z", "b"]]


def test_rows_stream_in_once_and_each_batch_is_plain_msgpack_of_its_part(statedb):
    """The runner hands a run's rows as they stream from its outbox batches: a generator, read once."""
    queue = UplinkQueue(statedb, max_rows=10**6, max_bytes=10**9, chunk_bytes=4096)
    pulled = []

    def rows():
        for i in range(1000):
            pulled.append(i)
            yield ("removed" if i < 10 else "added", (i, f"row {i}", None))

    item = UplinkRun("q", ("n", "text", "z"), rows(), 4, 1, 1700000000.5)
    seqs = enqueue(queue, statedb, item)
    assert pulled == list(range(1000)) and len(seqs) > 1
    entries = queue.read(0, 1000)
    assert [(a, v[0]) for e in entries for a, v in e.message.rows] == [
        (Action.REMOVED if i < 10 else Action.ADDED, i) for i in range(1000)
    ]
    with statedb.transaction() as db:
        stored = [msgpack.unpackb(d) for (d,) in db.execute("SELECT data FROM uplink_queue ORDER BY seq")]
    assert all(s[:3] == [None, "q", ["n", "text", "z"]] and s[4:] == [4, 1, 1700000000.5] for s in stored)
    assert sum(e.rows for e in entries) == queue.stats().queued_rows == 1000
