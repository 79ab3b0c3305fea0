"""collector.attribution.sink: the outbox into the engine, osq-user_connections.log exactly once.

The sink's state file records how far the log was written; a restart (after a crash that
lost what followed the last save) cuts the live file back to that size and the outbox items
after the saved position, read again, write their records again: each once.  A live file the
state does not describe is set aside, never deleted.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from collector.attribution.engine import AttributionEngine, EngineConfig
from collector.attribution.logs import USER_CONNECTIONS_PATH
from collector.attribution.sink import OWNER, AttributionSink
from collector.model import HostEvent, HostEventKind, ResultBatch
from protocol.messages import Action
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
