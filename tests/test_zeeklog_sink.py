"""collector.zeeklog.sink: collectord's own osq-*.log and osquery.log from the durable outbox, exactly once.

The sink runs in-process over a real registry (results stored through Registry.accept, as
agents' results are); a crash is simulated by putting the committed cursor back, the way a
crash between a write and its commit leaves it. tests/test_localagent.py runs the whole thing.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from collector.model import CONFIG_OWNER, HostFacts, HostQuery, Targets
from collector.outbox import SinkFeed
from collector.registry import Registry, Submission
from collector.store import Store, Wakeup
from collector.zeek.ztypes import parse_type
from collector.zeeklog.sink import LogSubscription, ZeekLogSink
from collector.zeeklog.writer import LogField, LogFormat
from protocol.messages import Action, Results

QUERY = HostQuery("SELECT pid, address, port, note FROM x", 10)
FIELDS = tuple(
    LogField(n, parse_type(t)) for n, t in [("pid", "int"), ("address", "addr"), ("port", "count"), ("note", "string")]
)
SUB = LogSubscription("ports", "osq-ports", FIELDS, added=True)
WEB1 = HostFacts("host-1", "web1", ("10.0.0.1",))


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path):
    registry = Registry(str(tmp_path / "registry.db"))
    registry.put_subscription(CONFIG_OWNER, "ports", QUERY, Targets(all=True))
    registry.enroll(WEB1)
    s = Store(registry)
    s.lease = registry.acquire(WEB1, stream="s1", acked_seq=0, collector_id="c1", ttl=90)  # type: ignore[attr-defined]
    yield s
    s.close()


async def accept(store: Store, seq: int, rows, received: float = 1714564800.5) -> None:
    message = Results(seq, QUERY.id, "ports", ("pid", "address", "port", "note"), tuple(rows), 0, 0, received)
    submission = Submission(store.lease, "web1", message, received)  # type: ignore[attr-defined]
    await store.call(lambda r: r.accept([submission]))


async def run_until_caught_up(sink: ZeekLogSink, store: Store) -> None:
    """Run the sink until its cursor reaches the outbox's head, then stop it (a clean stop)."""
    feed = SinkFeed(sink.name, store, Wakeup(), poll=0.05)
    head = await store.call(lambda r: r.head())
    task = asyncio.create_task(sink.run(feed))
    deadline = time.monotonic() + 30
    while (await feed.cursor()).position < head:
        assert time.monotonic() < deadline, "the sink did not catch up"
        assert not task.done(), task.exception()
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def records(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines() if line and not line.startswith("#")]


async def test_rows_are_typed_and_what_cannot_be_goes_to_osquery_log(tmp_path, store):
    logs = tmp_path / "logs"
    await accept(
        store,
        1,
        [
            (Action.ADDED, (1, "10.0.0.1", 80, None)),  # NULL text: "" (osquery's text for it)
            (Action.ADDED, (2, "", "", "x")),  # "" in a field that is not a string: unset
            (Action.REMOVED, (3, "fe80::1%eth0", "8080", "y")),  # zone cut off an addr; numeric text as count
            (Action.ADDED, ("abc", "10.0.0.2", 1, "z")),  # cannot be an int: osquery.log, not the row
        ],
    )
    sink = ZeekLogSink(logs, [SUB], rotation=0)
    await run_until_caught_up(sink, store)
    live = logs / "osq-ports.log"
    text = live.read_text()
    assert "#fields\tt\thost\tadded\tpid\taddress\tport\tnote\n" in text
    assert "#types\ttime\tstring\tbool\tint\taddr\tcount\tstring\n" in text and "#close\t" in text
    assert records(live) == [
        ["1714564800.500000", "host-1", "T", "1", "10.0.0.1", "80", "(empty)"],
        ["1714564800.500000", "host-1", "T", "2", "-", "-", "x"],
        ["1714564800.500000", "host-1", "F", "3", "fe80::1", "8080", "y"],
    ]
    (connected, error) = records(logs / "osquery.log")
    assert connected[1:4] == ["host", "host-1", "info"] and connected[4].startswith("host connected: web1")
    assert error[3] == "error" and "column pid value 'abc'" in error[4] and "not an integer" in error[4]
    assert sink.errors == 1 and sink.records_written == 5
    # independent readers
    parsezeeklogs = pytest.importorskip("parsezeeklogs", reason="parsezeeklogs (test extra) is not installed")
    read = list(parsezeeklogs.read_zeek(live, on_error="raise"))
    assert read[0]["address"] == "10.0.0.1" and read[0]["port"] == 80 and read[1]["address"] is None
    cut = shutil.which("zeek-cut") or shutil.which("bro-cut")
    if cut:
        out = subprocess.run([cut, "pid", "address"], stdin=open(live), capture_output=True, text=True, check=True)
        assert out.stdout.splitlines() == ["1\t10.0.0.1", "2\t-", "3\tfe80::1"]


async def test_a_crash_after_writing_writes_again_not_twice(tmp_path, store):
    logs = tmp_path / "logs"
    await accept(store, 1, [(Action.ADDED, (1, "10.0.0.1", 80, "a"))])
    await run_until_caught_up(ZeekLogSink(logs, [SUB], rotation=0), store)
    first = await store.call(lambda r: r.cursor("zeeklog"))
    await accept(store, 2, [(Action.ADDED, (2, "10.0.0.1", 81, "b"))])
    await run_until_caught_up(ZeekLogSink(logs, [SUB], rotation=0), store)
    # a crash after the second write and before its cursor: the committed cursor is the first one
    await store.call(
        lambda r: r._db.execute(
            "UPDATE cursors SET position = ?, state = ? WHERE sink = 'zeeklog'", (first.position, first.state)
        )
    )
    with open(logs / "osq-ports.log", "a") as live:
        live.write("half a line written as the process died")
    (logs / "stray.log").write_text("not ours\n")
    await run_until_caught_up(ZeekLogSink(logs, [SUB], rotation=0), store)
    assert [r[3] for r in records(logs / "osq-ports.log")] == ["1", "2"]
    assert (logs / "stray.log").read_text() == "not ours\n"  # a file of no log of ours is left alone


async def test_live_files_the_state_does_not_know_are_set_aside(tmp_path, store):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "osq-ports.log").write_text("#separator \\x09\n#path\tosq-ports\n#open\t2020-01-02-03-04-05\n1\t2\n")
    (logs / "osquery.log").write_text("#separator \\x09\n#path\tosquery\n")  # a header and no record: removed
    await accept(store, 1, [(Action.ADDED, (1, "10.0.0.1", 80, "a"))])
    await run_until_caught_up(ZeekLogSink(logs, [SUB], rotation=0), store)
    assert (logs / "osq-ports.2020-01-02-03-04-05.log").read_text().endswith("1\t2\n")
    assert [r[3] for r in records(logs / "osq-ports.log")] == ["1"]
    # the config changes the log's fields: the old file is set aside, a new one begins
    changed = LogSubscription("ports", "osq-ports", (*FIELDS[:3], LogField("note", parse_type("count"))), True)
    await accept(store, 2, [(Action.ADDED, (2, "10.0.0.1", 81, "7"))])
    await run_until_caught_up(ZeekLogSink(logs, [changed], rotation=0), store)
    assert "#types\ttime\tstring\tbool\tint\taddr\tcount\tcount\n" in (logs / "osq-ports.log").read_text()
    assert len(list(logs.glob("osq-ports.*.log"))) == 2


async def test_rotation_by_interval_with_zeeks_names_and_json(tmp_path, store):
    logs = tmp_path / "logs"
    clock = Clock(1714564800.0)
    await accept(store, 1, [(Action.ADDED, (1, "10.0.0.1", 80, "a"))])
    sink = ZeekLogSink(logs, [SUB], fmt=LogFormat.JSON, rotation=60, clock=clock)
    feed = SinkFeed(sink.name, store, Wakeup(), poll=0.05)
    task = asyncio.create_task(sink.run(feed))
    try:
        while not (logs / "osq-ports.log").exists():
            await asyncio.sleep(0.02)
        clock.now += 61  # past the interval: rotated even with nothing new to write
        while not list(logs.glob("osq-ports.*.log")):
            assert not task.done(), task.exception()
            await asyncio.sleep(0.02)
        await accept(store, 2, [(Action.ADDED, (2, "10.0.0.2", 81, "b"))])
        head = await store.call(lambda r: r.head())
        while (await feed.cursor()).position < head:  # written and committed
            assert not task.done(), task.exception()
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    rotated = sorted(logs.glob("osq-ports.*.log"))
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.localtime(1714564800.0))
    assert rotated[0].name == f"osq-ports.{stamp}.log" and len(rotated) == 2  # the second rotated at exit
    lines = [json.loads(line) for p in rotated for line in p.read_text().splitlines()]
    assert lines == [
        {"t": 1714564800.5, "host": "host-1", "added": True, "pid": 1, "address": "10.0.0.1", "port": 80, "note": "a"},
        {"t": 1714564800.5, "host": "host-1", "added": True, "pid": 2, "address": "10.0.0.2", "port": 81, "note": "b"},
    ]


async def test_without_fields_the_columns_are_strings(tmp_path, store):
    logs = tmp_path / "logs"
    await accept(store, 1, [(Action.ADDED, (1, "10.0.0.1", 80, None))])
    sub = LogSubscription("ports", "osq-plain", None, added=False)
    await run_until_caught_up(ZeekLogSink(logs, [sub], rotation=0), store)
    text = (logs / "osq-plain.log").read_text()
    assert "#fields\tt\thost\tpid\taddress\tport\tnote\n#types\ttime\tstring\tstring\tstring\tstring\tstring\n" in text
    assert records(logs / "osq-plain.log") == [["1714564800.500000", "host-1", "1", "10.0.0.1", "80", "(empty)"]]
