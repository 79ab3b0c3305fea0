"""collector.jsonl and collector.outbox: one line per row, exactly once across a crash between write and cursor."""

from __future__ import annotations

import asyncio
import json
import os

from collector.jsonl import JsonLinesSink, format_lines
from collector.model import AGENT_OWNER, HostFacts, ResultBatch
from collector.outbox import Sinks
from collector.registry import Registry, Submission
from collector.store import Committer, Store
from protocol.messages import Action, Results


def test_format_lines_keeps_types_and_escapes_blobs():
    batch = ResultBatch(
        position=7,
        host_id="h1",
        hostname="web1",
        seq=3,
        query_id=None,
        subscription_id=None,
        name="procs",
        owner=AGENT_OWNER,
        route="",
        columns=("pid", "name", "load", "blob", "none"),
        rows=((Action.ADDED, (42, 'sh "x"\n', 0.5, b"\xff\x00ok", None)), (Action.REMOVED, (1, "é", -1.0, b"", None))),
        counter=2,
        epoch=0,
        host_time=1700000000.5,
        received=1700000001.0,
    )
    lines = [json.loads(line) for line in format_lines(batch).decode().splitlines()]
    assert lines[0] == {
        "host_id": "h1",
        "hostname": "web1",
        "name": "procs",
        "subscription": None,
        "seq": 3,
        "action": "added",
        "counter": 2,
        "epoch": 0,
        "time": 1700000000.5,
        "columns": {"pid": 42, "name": 'sh "x"\n', "load": 0.5, "blob": "\\xff\x00ok", "none": None},
    }
    assert lines[1]["action"] == "removed" and lines[1]["columns"]["name"] == "é"


def make_registry(path) -> tuple[Registry, object]:
    registry = Registry(str(path))
    facts = HostFacts("h1", "web1")
    registry.enroll(facts)
    lease = registry.acquire(facts, stream="s", acked_seq=0, collector_id="c", ttl=90)
    return registry, lease


def rows_batch(seq: int, first: int, count: int) -> Results:
    return Results(seq, None, "q", ("n",), tuple((Action.ADDED, (first + i,)) for i in range(count)), 0, 0, 1.0)


async def run_sink_until(sink: JsonLinesSink, store: Store, rows: int) -> None:
    sinks = Sinks([sink], store)
    sinks.start()
    try:
        for _ in range(500):
            if sink.rows_written >= rows:
                break
            await asyncio.sleep(0.01)
    finally:
        await sinks.stop()


async def test_sink_writes_every_row_once_across_a_crash(tmp_path):
    registry, lease = make_registry(tmp_path / "registry.db")
    store = Store(registry)
    committer = Committer(store, delay=0)
    verdicts = []
    for seq in range(1, 6):
        committer.submit(Submission(lease, "web1", rows_batch(seq, (seq - 1) * 10, 10), 1.0), verdicts.append)
    await committer.flush()
    assert len(verdicts) == 5
    out = tmp_path / "results.jsonl"
    first = JsonLinesSink(str(out))
    await run_sink_until(first, store, 50)
    assert first.rows_written == 50
    committed = await store.call(lambda r: r.cursor("jsonl"))
    assert json.loads(committed.state)["offset"] == os.path.getsize(out)

    # A crash after writing but before committing the cursor: the same lines are on disk twice
    # as far as the file knows (we append them again by hand) and the cursor is older.
    with open(out, "ab") as handle:
        handle.write(b'{"partial line written before the crash')
    for seq in range(6, 8):
        committer.submit(Submission(lease, "web1", rows_batch(seq, (seq - 1) * 10, 10), 1.0), verdicts.append)
    await committer.flush()
    second = JsonLinesSink(str(out))
    await run_sink_until(second, store, 20)
    numbers = [json.loads(line)["columns"]["n"] for line in out.read_text().splitlines()]
    assert numbers == list(range(70))
    await asyncio.to_thread(store.close)


async def test_sink_resumes_after_its_cursor_without_rewriting(tmp_path):
    registry, lease = make_registry(tmp_path / "registry.db")
    store = Store(registry)
    committer = Committer(store, delay=0)
    committer.submit(Submission(lease, "web1", rows_batch(1, 0, 3), 1.0), lambda v: None)
    await committer.flush()
    out = tmp_path / "r.jsonl"
    await run_sink_until(JsonLinesSink(str(out)), store, 3)
    size = os.path.getsize(out)
    committer.submit(Submission(lease, "web1", rows_batch(2, 3, 2), 1.0), lambda v: None)
    await committer.flush()
    await run_sink_until(JsonLinesSink(str(out)), store, 2)
    assert os.path.getsize(out) > size
    assert [json.loads(line)["seq"] for line in out.read_text().splitlines()] == [1, 1, 1, 2, 2]
    assert await Sinks([], store).prune() >= 0
    await asyncio.to_thread(store.close)
