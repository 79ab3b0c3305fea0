"""The control socket, served for real on a UNIX socket in tmp_path, with a real Database."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat

import pytest

from agent.control import (
    ControlError,
    ControlServer,
    FunctionHandler,
    format_status,
    remote_query,
    remote_status,
    request,
)
from agent.control_messages import PingReply, PingRequest
from agent.status import (
    AgentSummary,
    BufferEntry,
    EventsStatus,
    QueryStatus,
    SourceEntry,
    Status,
    TableMode,
)
from eventsources.base import SourceMode
from tables.spec import Column, TableSpec
from tables.sqlite import Database

NUMBERS = TableSpec(
    name="numbers",
    description="Numbers for the control socket tests.",
    columns=(Column("n", "INTEGER"), Column("word", "TEXT"), Column("raw", "BLOB")),
    generate=lambda ctx: ({"n": i, "word": f"w{i}", "raw": bytes([i])} for i in range(5)),
)

STATUS = Status(
    agent=AgentSummary(
        version="0.1.0",
        pid=42,
        uptime=12.5,
        host_identifier="box",
        config_path="<embedded default>",
        state_dir="/state",
        results_log="/log/results.log",
        socket="/state/agentd.sock",
        rss_bytes=43 * 1048576,
        cpu_percent=0.25,
        running="procs",
        events="process_events from proc_connector (audit: refused: ...)",
    ),
    schedule=(
        QueryStatus(
            name="procs",
            interval=10,
            executions=3,
            last_executed=1_700_000_000,
            last_rows=7,
            last_lines=2,
            wall_time_ms=40,
            last_wall_time_ms=12,
            next_run=1_700_000_010,
        ),
        QueryStatus(
            name="slow",
            pack="p",
            interval=60,
            executions=1,
            last_executed=1_700_000_000,
            denylisted=True,
            denylisted_until=1_700_086_400,
            errors=1,
            last_error="query exceeded the time limit",
        ),
    ),
    events=EventsStatus(
        sources=(
            SourceEntry(
                name="proc_connector",
                mode=SourceMode.ACTIVE,
                active=True,
                tables=("process_events",),
                events_seen=9,
                kernel_lost=1,
                detail="listening",
                extra={"notices": 12, "nested": {"a": [1, 2]}},
            ),
            SourceEntry(name="audit", mode=SourceMode.LOST, tables=("process_events", "socket_events")),
        ),
        buffers=(
            BufferEntry(
                name="process_events",
                mode=TableMode.ACTIVE,
                active=True,
                source="proc_connector",
                buffered=9,
                added=9,
                dropped_overflow=0,
                consumers=1,
                detail="fed by proc_connector",
            ),
            BufferEntry(name="socket_events", mode=TableMode.LOST, detail="audit: lost"),
        ),
    ),
)


@pytest.fixture
async def server(tmp_path):
    db = Database([NUMBERS])

    async def query(sql: str, time_limit: float | None = None):
        result = await asyncio.to_thread(db.execute, sql, time_limit=time_limit)
        return result.columns, result.rows

    def status():
        if os.environ.get("BREAK_STATUS"):
            raise RuntimeError("status exploded")
        return STATUS

    srv = ControlServer(str(tmp_path / "agentd.sock"), FunctionHandler(query, status))
    await srv.start()
    yield srv
    await srv.close()
    db.close()


async def test_query_roundtrip(server):
    columns, rows = await asyncio.to_thread(remote_query, server.path, "SELECT n, word, raw FROM numbers WHERE n < 3")
    assert columns == ["n", "word", "raw"]
    assert rows == [[0, "w0", "\x00"], [1, "w1", "\x01"], [2, "w2", "\x02"]]


async def test_query_error_is_reported(server):
    with pytest.raises(ControlError, match="no such table: nope"):
        await asyncio.to_thread(remote_query, server.path, "SELECT * FROM nope")
    with pytest.raises(ControlError, match=r"read-only|not authorized"):
        await asyncio.to_thread(remote_query, server.path, "CREATE TABLE t(x)")


async def test_query_time_limit(server):
    slow = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000000) SELECT count(*) FROM c"
    )
    with pytest.raises(ControlError, match=r"time limit of 0\.1 s"):
        await asyncio.to_thread(remote_query, server.path, slow, time_limit=0.1)
    replies = await asyncio.to_thread(_raw_exchange, server.path, b'{"op":"query","sql":"SELECT 1","time_limit":"x"}\n')
    assert replies[0]["ok"] is False and "time_limit" in replies[0]["error"]


async def test_status_round_trips_through_the_socket_and_formats(server):
    """Every field of every status dataclass comes back equal, typed (enums, tuples, nested extra)."""
    status = await asyncio.to_thread(remote_status, server.path)
    assert status == STATUS
    assert isinstance(status.events.sources[1].mode, SourceMode) and status.events.sources[1].mode is SourceMode.LOST
    assert isinstance(status.schedule, tuple) and status.events.sources[0].tables == ("process_events",)
    text = format_status(status)
    assert "procs" in text and "slow" in text and "until " in text
    assert "proc_connector" in text and "process_events" in text
    assert "memory (RSS): 43.0 MB" in text and "CPU:          0.25 %" in text and "running now:  procs" in text
    idle = format_status(Status(agent=AgentSummary(pid=1, rss_bytes=43 * 1048576, cpu_percent=0.25)))
    assert "memory (RSS): 43.0 MB" in idle and "running" not in idle


async def test_a_malformed_status_reply_is_a_clear_error(tmp_path):
    """A daemon whose status does not fit the dataclasses: the client names the field, no traceback."""
    path = str(tmp_path / "odd.sock")
    replies = iter(
        [
            b'{"ok": true, "status": {"schedule": [{"name": "q", "executions": "many"}]}}\n',
            b'{"ok": true, "status": {"events": {"sources": [{"name": "x", "mode": "sleeping"}]}}}\n',
            b'{"ok": true, "status": [1]}\n',
            b'{"ok": "yes"}\n',
        ]
    )

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(next(replies))
        await writer.drain()
        writer.close()

    odd = await asyncio.start_unix_server(answer, path=path)
    try:
        expected = [
            r"malformed reply: status\.schedule\[0\]\.executions: expected an integer, got 'many'",
            r"status\.events\.sources\[0\]\.mode: 'sleeping' is not one of inactive, owner, read-only",
            r"malformed reply: status: expected an object, got \[1\]",
            r"malformed reply: 'ok' must be true or false",
        ]
        for message in expected:
            with pytest.raises(ControlError, match=message):
                await asyncio.to_thread(remote_status, path)
    finally:
        odd.close()
        await odd.wait_closed()


async def test_status_failure_is_an_error_reply(server, monkeypatch):
    monkeypatch.setenv("BREAK_STATUS", "1")
    with pytest.raises(ControlError, match="internal error: RuntimeError: status exploded"):
        await asyncio.to_thread(remote_status, server.path)


async def test_socket_is_owner_only(server):
    mode = os.stat(server.path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


def _raw_exchange(path: str, payload: bytes) -> list[dict]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


async def test_malformed_requests_get_errors_and_server_survives(server):
    payload = b'not json\n[1,2]\n{"op": "explode"}\n{"op": "query"}\n\xff\xfe\n{"op": "ping"}\n'
    replies = await asyncio.to_thread(_raw_exchange, server.path, payload)
    assert [r["ok"] for r in replies] == [False, False, False, False, False, True]
    assert "not JSON" in replies[0]["error"]
    assert "JSON object" in replies[1]["error"]
    assert "unknown op 'explode'" in replies[2]["error"]
    assert "non-empty string 'sql'" in replies[3]["error"]
    _columns, rows = await asyncio.to_thread(remote_query, server.path, "SELECT count(*) FROM numbers")
    assert rows == [[5]]


async def test_oversized_request_is_refused(tmp_path):
    async def query(sql):
        return ["x"], [[1]]

    srv = ControlServer(str(tmp_path / "small.sock"), FunctionHandler(query, Status), max_request=1024)
    await srv.start()
    try:
        replies = await asyncio.to_thread(_raw_exchange, srv.path, b'{"op":"query","sql":"' + b"x" * 5000 + b'"}\n')
        assert replies and replies[0]["ok"] is False and "longer than 1024" in replies[0]["error"]
        assert await asyncio.to_thread(request, srv.path, PingRequest()) == PingReply()
    finally:
        await srv.close()
    assert not os.path.exists(srv.path)


def test_client_errors_are_clear(tmp_path):
    missing = str(tmp_path / "missing.sock")
    with pytest.raises(ControlError, match=r"no control socket at .*is agentd running"):
        remote_query(missing, "SELECT 1")
    stale = str(tmp_path / "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(stale)
    s.close()
    with pytest.raises(ControlError, match="connection refused"):
        remote_status(stale)


async def test_stale_socket_is_replaced_and_live_one_refused(tmp_path):
    path = str(tmp_path / "agentd.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()  # a leftover file from a killed daemon

    async def query(sql):
        return ["x"], [[1]]

    first = ControlServer(path, FunctionHandler(query, Status))
    await first.start()
    try:
        second = ControlServer(path, FunctionHandler(query, Status))
        with pytest.raises(ControlError, match="already listening"):
            await second.start()
        await second.close()  # as agentd's shutdown does after a failed start
        assert await asyncio.to_thread(remote_query, path, "SELECT 1") == (["x"], [[1]])
    finally:
        await first.close()
    assert not os.path.exists(path)


async def test_a_path_that_is_not_a_socket_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "precious.txt"
    path.write_text("keep me\n")
    server = ControlServer(str(path), FunctionHandler(lambda sql: None, Status))
    with pytest.raises(ControlError, match="not a socket"):
        await server.start()
    await server.close()
    assert path.read_text() == "keep me\n"


async def test_big_results_arrive_whole_and_too_big_is_a_clear_error(tmp_path):
    """20,000 rows (encoded off the event loop) come back intact; a reply over max_reply is refused, not sent."""
    db = Database([])
    sql = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000) "
        "SELECT x, printf('%0100d', x) AS pad FROM c"
    )

    async def query(sql: str, time_limit: float | None = None):
        result = await asyncio.to_thread(db.execute, sql)
        return result.columns, result.rows

    srv = ControlServer(str(tmp_path / "big.sock"), FunctionHandler(query, Status), max_reply=1 << 20)
    big = ControlServer(str(tmp_path / "bigger.sock"), FunctionHandler(query, Status))
    await srv.start()
    await big.start()
    try:
        columns, rows = await asyncio.to_thread(remote_query, big.path, sql)
        assert columns == ["x", "pad"] and len(rows) == 20000
        assert rows[-1] == [20000, f"{20000:0100d}"]
        with pytest.raises(ControlError, match=r"result too large: 20000 rows, \d+ bytes encoded \(limit 1048576\)"):
            await asyncio.to_thread(remote_query, srv.path, sql)
        assert await asyncio.to_thread(request, srv.path, PingRequest()) == PingReply()
        assert srv.errors == 1
    finally:
        await srv.close()
        await big.close()
        db.close()
