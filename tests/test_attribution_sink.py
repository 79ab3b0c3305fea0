"""collector.attribution.sink: the outbox into the engine, osq-user_connections.log exactly once.

The sink's state file records how far the log was written; a restart (after a crash that
lost what followed the last save) cuts the live file back to that size and the outbox items
after the saved position, read again, write their records again: each once.  A live file the
state does not describe is set aside, never deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from pathlib import Path

from collector.attribution.engine import AttributionEngine, EngineConfig
from collector.attribution.logs import USER_CONNECTIONS_PATH
from collector.attribution.persist import load_saved
from collector.attribution.sink import OWNER, AttributionSink
from collector.model import HostEvent, HostEventKind, HostFacts, HostQuery, ResultBatch, Targets
from collector.outbox import SinkFeed
from collector.registry import Registry, Submission
from collector.store import Store, Wakeup
from protocol.messages import Action, Results
from tests.test_attribution_offline import read_zeek_ascii

T0 = 1_700_000_000.0
COLUMNS = (
    "action",
    "pid",
    "path",
    "family",
    "protocol",
    "local_address",
    "local_port",
    "remote_address",
    "remote_port",
    "time",
    "timestamp",
    "status",
    "uid",
)


def connect(position: int, pid: int) -> ResultBatch:
    t = T0 + position
    row = ("connect", pid, "/usr/bin/curl", 2, 6, "10.0.0.1", 40000 + pid, "10.0.0.2", 80, int(t), t, "succeeded", 0)
    return ResultBatch(
        position=position,
        host_id="h1",
        hostname="web1",
        seq=position,
        query_id="q",
        subscription_id="s",
        name="attribution:socket_events",
        owner=OWNER,
        route="",
        columns=COLUMNS,
        rows=((Action.ADDED, row),),
        counter=0,
        epoch=0,
        host_time=t,
        received=t,
    )


def restored(state: Path, logs: Path) -> AttributionSink:
    sink = AttributionSink.restore(state, lambda: AttributionEngine(EngineConfig()), clock=lambda: T0)
    sink.open_user_connections_log(logs)
    return sink


def pids(logs: Path) -> list[int]:
    path = logs / f"{USER_CONNECTIONS_PATH}.log"
    return [int(r["pid"]) for r in read_zeek_ascii(path)] if path.exists() else []


def test_user_connections_log_is_exactly_once_across_a_crash(tmp_path) -> None:
    state, logs = tmp_path / "attribution.msgpack", tmp_path / "logs"
    sink = restored(state, logs)
    sink.learn(
        HostEvent(
            position=1,
            host_id="h1",
            hostname="web1",
            event=HostEventKind.CONNECTED,
            addresses=("10.0.0.1",),
            groups=(),
            time=T0,
        )
    )
    for position in (2, 3):
        sink.learn(connect(position, pid=100 + position))
        sink.position = position
    asyncio.run(sink.save())  # state at position 3, the log's mark with it
    for position in (4, 5):  # learned and written, then the process dies before the next save
        sink.learn(connect(position, pid=100 + position))
        sink.position = position
    assert sink.user_connections is not None
    sink.user_connections.flush()
    assert pids(logs) == [102, 103, 104, 105]
    # the successor: resumes after position 3, the log cut back to its mark; 4 and 5 come again
    again = restored(state, logs)
    assert again.position == 3
    for position in (4, 5, 6):
        again.learn(connect(position, pid=100 + position))
        again.position = position
    again.close()
    assert pids(logs) == [102, 103, 104, 105, 106]
    assert sorted(p.name for p in logs.iterdir()) == [f"{USER_CONNECTIONS_PATH}.log"]
    # a third start continues the closed file (its #close cut off) and keeps what was saved
    third = restored(state, logs)
    assert third.position == 6
    third.learn(connect(7, pid=107))
    third.position = 7
    third.close()
    assert pids(logs) == [102, 103, 104, 105, 106, 107]
    text = (logs / f"{USER_CONNECTIONS_PATH}.log").read_text()
    assert text.count("#close") == 1 and text.count("#fields") == 1


def test_a_log_the_state_does_not_describe_is_set_aside(tmp_path) -> None:
    state, logs = tmp_path / "attribution.msgpack", tmp_path / "logs"
    logs.mkdir()
    stranger = logs / f"{USER_CONNECTIONS_PATH}.log"
    stranger.write_text("#open\t2026-01-02-03-04-05\nwritten by someone else\n")
    sink = restored(state, logs)
    sink.learn(connect(1, pid=201))
    sink.position = 1
    sink.close()
    aside = logs / f"{USER_CONNECTIONS_PATH}.2026-01-02-03-04-05.log"
    assert aside.read_text().endswith("written by someone else\n")
    assert pids(logs) == [201]


def test_only_the_attribution_owners_batches_are_learned(tmp_path) -> None:
    sink = restored(tmp_path / "attribution.msgpack", tmp_path / "logs")
    other = connect(1, pid=301)
    sink.learn(dataclasses.replace(other, owner="zeek:main"))  # another owner's identical query
    sink.learn(connect(2, pid=302))
    sink.position = 2
    sink.close()
    assert pids(tmp_path / "logs") == [302] and sink.batches == 1


async def test_what_was_learned_is_saved_when_no_batch_follows(tmp_path) -> None:
    """A batch learned right after a save, then nothing more (a quiet host): the state is saved once
    ``save_interval`` is up, not only when the next batch comes (a restart would lose it meanwhile)."""
    registry = Registry(str(tmp_path / "registry.db"))
    query = HostQuery("SELECT " + ", ".join(COLUMNS) + " FROM socket_events", 1)
    registry.put_subscription(OWNER, "attribution:socket_events", query, Targets(all=True))
    registry.enroll(HostFacts("h1", "web1", ("10.0.0.1",)))
    store = Store(registry)
    lease = registry.acquire(
        HostFacts("h1", "web1", ("10.0.0.1",)), stream="s1", acked_seq=0, collector_id="c1", ttl=90
    )
    state = tmp_path / "attribution.msgpack"
    sink = AttributionSink.restore(state, lambda: AttributionEngine(EngineConfig()), save_interval=0.3)
    feed = SinkFeed("attribution", store, Wakeup(), poll=0.05)
    task = asyncio.create_task(sink.run(feed))
    try:
        row = ("connect", 7, "/usr/bin/curl", 2, 6, "10.0.0.1", 40007, "10.0.0.2", 80, int(T0), T0, "succeeded", 0)
        message = Results(1, query.id, "attribution:socket_events", COLUMNS, ((Action.ADDED, row),), 0, 0, T0)
        await store.call(lambda r: r.accept([Submission(lease, "web1", message, T0)]))
        head = await store.call(lambda r: r.head())
        deadline = time.monotonic() + 30
        while sink.saved_position != head:
            assert time.monotonic() < deadline, "what was learned was never saved while no batch followed"
            assert not task.done(), task.exception()
            await asyncio.sleep(0.05)
        saved = load_saved(state, EngineConfig())
        assert saved.position == head and "h1" in saved.engine.hosts
        assert (await feed.cursor()).position == head  # and the cursor committed with it
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        store.close()
