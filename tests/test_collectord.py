"""collectord as a real process on loopback: lifecycle, enrollment, bad input, kill -9, the operator path.

Bad input gets a clear error (or a closed connection) while another agent keeps
streaming, and nothing that agent had acknowledged is lost or doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
from collections import Counter

import msgpack
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from protocol import operator as op
from protocol.codec import encode
from protocol.errors import ErrorCode
from protocol.messages import Ack, Bye, ByeReason, Error, Mode, Ping, Subscribe
from tests._collector import Collectord, Operator, RawAgent, hello

LIMITS = """
[limits]
hello_timeout = 1.5
max_rate = 300
max_frame = 131072
"""


@pytest.fixture(scope="module")
def collectord(tmp_path_factory):
    server = Collectord(tmp_path_factory.mktemp("collectord"), LIMITS).start()
    yield server
    server.close()


@pytest.fixture
def fresh(tmp_path):
    servers: list[Collectord] = []

    def make(config: str = "") -> Collectord:
        server = Collectord(tmp_path, config).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


async def stream(url: str, host_id: str, secret: str, *, total: int, batch: int, stop: asyncio.Event | None = None):
    """Stream rows 0..total-1 in batches, resending after any reconnect from the collector's mark; the agent."""
    agent: RawAgent | None = None
    node_key: str | None = None
    acked = 0
    batches = -(-total // batch)
    while acked < batches:
        agent = RawAgent(url, hello(host_id, secret=secret, node_key=node_key, acked=acked))
        try:
            welcome = await agent.connect()
            node_key = node_key or welcome.node_key
            acked = welcome.last_seq
            for seq in range(acked + 1, batches + 1):
                first = (seq - 1) * batch
                await agent.send_rows(first, min(batch, total - first))
                if stop is not None and stop.is_set():
                    break
                if seq - agent.session.acked > 20:
                    await agent.wait_ack(seq - 10)
                await asyncio.sleep(0.01)
            await agent.wait_ack(agent.session.next_seq - 1)
            acked = agent.session.acked
            await agent.close()
        except (ConnectionClosed, OSError, TimeoutError, RuntimeError):
            acked = max(acked, agent.session.acked)
            await asyncio.sleep(0.2)
        if stop is not None and stop.is_set():
            break
    return acked


def rows_of(server: Collectord, host_id: str) -> Counter[int]:
    return Counter(r["columns"]["n"] for r in server.rows() if r["host_id"] == host_id)


async def wait_rows(server: Collectord, host_id: str, count: int, timeout: float = 30.0) -> Counter[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = rows_of(server, host_id)
        if sum(rows.values()) >= count:
            return rows
        await asyncio.sleep(0.1)
    return rows_of(server, host_id)


# -- lifecycle -------------------------------------------------------------------------------


def test_default_run_generates_secrets_and_stops_cleanly_on_sigterm(tmp_path):
    server = Collectord(tmp_path, "").start()
    try:
        secret = server.enroll_secret
        assert len(secret) >= 32
        for name in ("enroll-secret", "operator-token"):
            assert stat.S_IMODE(os.stat(server.state / name).st_mode) == 0o600
        log = server.log()
        assert f"generated a new enroll secret in {server.state}/enroll-secret: {secret}" in log
        assert server.operator_token not in log
        assert server.url.startswith("ws://127.0.0.1:")
        assert server.stop() == 0
        assert "collectord stopped" in server.log()
        # A second start keeps the secrets and the collector id.
        first_id = server.log().split("collectord c-")[1].split()[0]
        server.start()
        assert server.enroll_secret == secret
        assert f"collectord c-{first_id} listening" in server.log()
        assert server.stop() == 0
    finally:
        server.close()


def test_a_startup_failure_is_one_clear_line(tmp_path):
    server = Collectord(tmp_path, "[auth]\nenroll_secret_file = 'missing-secret'\n")
    with pytest.raises(RuntimeError, match="exited with 1"):
        server.start()
    log = server.log()
    assert "cannot start: enroll secret file" in log and "missing-secret does not exist" in log
    assert "Traceback" not in log


# -- enrollment and credentials ----------------------------------------------------------------


async def test_enroll_stream_and_reconnect_with_the_node_key(collectord):
    agent = RawAgent(collectord.url, hello("enroll-1", secret=collectord.enroll_secret))
    welcome = await agent.connect()
    assert welcome.node_key and welcome.last_seq == 0 and welcome.max_frame == 131072 and welcome.max_rate == 300
    seq = await agent.send_rows(0, 3)
    await agent.wait_ack(seq)
    await agent.close()
    again = RawAgent(collectord.url, hello("enroll-1", node_key=welcome.node_key))
    second = await again.connect()
    assert second.node_key is None and second.last_seq == 1
    await again.close()
    assert sorted(await wait_rows(collectord, "enroll-1", 3)) == [0, 1, 2]


async def test_wrong_enroll_secret_is_refused(collectord):
    agent = RawAgent(collectord.url, hello("intruder", secret="not-the-secret-at-all"))
    with pytest.raises(RuntimeError, match="auth_failed: wrong enroll secret"):
        await agent.connect()
    assert "refused host intruder (intruder): wrong enroll secret" in collectord.log()


async def test_unknown_node_key_is_refused(collectord):
    agent = RawAgent(collectord.url, hello("ghost-1", node_key="made-up-node-key-000000000000"))
    with pytest.raises(RuntimeError, match="auth_failed: unknown node key for host ghost-1"):
        await agent.connect()


async def test_operator_token_does_not_work_as_an_enroll_secret(collectord):
    agent = RawAgent(collectord.url, hello("sneaky", secret=collectord.operator_token))
    with pytest.raises(RuntimeError, match="auth_failed"):
        await agent.connect()


async def test_revoked_host_is_disconnected_and_refused(collectord):
    agent = RawAgent(collectord.url, hello("doomed-1", secret=collectord.enroll_secret))
    welcome = await agent.connect()
    async with Operator(collectord.url, collectord.operator_token) as operator:
        (reply,) = await operator.request(op.Revoke(operator.session.next_req(), "doomed-1"))
        assert reply == op.Done(reply.req, "host doomed-1 (doomed-1) revoked")
        assert [h.revoked for h in await operator.hosts() if h.host_id == "doomed-1"] == [True]
    message = await agent.recv()
    assert message == Bye(ByeReason.REVOKED, "revoked by an operator")
    again = RawAgent(collectord.url, hello("doomed-1", node_key=welcome.node_key))
    with pytest.raises(RuntimeError, match="revoked: host doomed-1 is revoked"):
        await again.connect()
    enroll_again = RawAgent(collectord.url, hello("doomed-1", secret=collectord.enroll_secret))
    with pytest.raises(RuntimeError, match="revoked"):
        await enroll_again.connect()


async def test_a_newer_connection_supersedes_the_older(collectord):
    first = RawAgent(collectord.url, hello("twin-1", secret=collectord.enroll_secret))
    welcome = await first.connect()
    second = RawAgent(collectord.url, hello("twin-1", node_key=welcome.node_key))
    await second.connect()
    assert await first.recv() == Bye(ByeReason.SUPERSEDED, "a newer connection of this host took over")
    seq = await second.send_rows(0, 1)
    await second.wait_ack(seq)
    await second.close()


# -- bad input while another agent streams ----------------------------------------------------


async def agent_after_welcome(server: Collectord, host_id: str) -> RawAgent:
    agent = RawAgent(server.url, hello(host_id, secret=server.enroll_secret))
    await agent.connect()
    return agent


async def raw_open(server: Collectord) -> RawAgent:
    agent = RawAgent(server.url, hello("unused", secret="x" * 20))
    await agent.open()
    return agent


async def bad_frame_after_welcome(server):
    agent = await agent_after_welcome(server, "bad-frame")
    await agent.ws.send(b"\xc1\xc1 this is not msgpack")
    return await agent.refusal()


async def bad_first_frame(server):
    agent = await raw_open(server)
    await agent.ws.send(b"GET / HTTP/1.1\r\n\r\n")
    return await agent.refusal()


async def text_frame(server):
    agent = await raw_open(server)
    await agent.ws.send('{"type": "hello"}')
    return await agent.refusal()


async def wrong_field_types(server):
    agent = await agent_after_welcome(server, "bad-types")
    body = msgpack.unpackb(encode(Ping(1)))
    body["nonce"] = "one"
    await agent.ws.send(msgpack.packb(body))
    return await agent.refusal()


async def wrong_row_width(server):
    agent = await agent_after_welcome(server, "bad-width")
    frame = msgpack.packb(
        {
            "type": "results",
            "seq": 1,
            "subscription": None,
            "name": "q",
            "columns": ["a", "b"],
            "rows": [["added", [1]]],
            "counter": 0,
            "epoch": 0,
            "time": 1.0,
        }
    )
    await agent.ws.send(frame)
    return await agent.refusal()


async def unknown_type(server):
    agent = await agent_after_welcome(server, "bad-type")
    await agent.ws.send(msgpack.packb({"type": "format_disk", "now": True}))
    return await agent.refusal()


async def operator_message_on_agent_path(server):
    agent = await agent_after_welcome(server, "bad-operator-msg")
    await agent.ws.send(encode(op.Revoke(1, "web1")))
    return await agent.refusal()


async def results_before_hello(server):
    agent = await raw_open(server)
    await agent.ws.send(
        msgpack.packb(
            {
                "type": "results",
                "seq": 1,
                "subscription": None,
                "name": "q",
                "columns": [],
                "rows": [],
                "counter": 0,
                "epoch": 0,
                "time": 1.0,
            }
        )
    )
    return await agent.refusal()


async def second_hello(server):
    agent = await agent_after_welcome(server, "bad-second-hello")
    await agent.ws.send(encode(agent.hello))
    return await agent.refusal()


async def collector_message_from_agent(server):
    agent = await agent_after_welcome(server, "bad-ack")
    await agent.ws.send(encode(Ack(1)))
    return await agent.refusal()


async def oversized_frame(server):
    agent = await agent_after_welcome(server, "bad-size")
    with contextlib.suppress(ConnectionClosed):
        await agent.ws.send(b"\x00" * 200_000)
    return await agent.refusal()


async def replayed_sequence(server):
    agent = await agent_after_welcome(server, "bad-replay")
    await agent.send_rows(0, 2)
    await agent.send_rows(2, 2)
    agent.session.next_seq -= 1  # make the session send seq 2 again
    with contextlib.suppress(ConnectionClosed):
        await agent.send_rows(100, 2)
    return await agent.refusal()


async def skipped_sequence(server):
    agent = await agent_after_welcome(server, "bad-skip")
    await agent.send_rows(0, 2)
    agent.session.next_seq += 1  # seq 3 after seq 1
    with contextlib.suppress(ConnectionClosed):
        await agent.send_rows(100, 2)
    return await agent.refusal()


async def silent_client(server):
    agent = await raw_open(server)
    return await agent.refusal(timeout=10)


async def flood(server):
    agent = await agent_after_welcome(server, "bad-flood")
    with contextlib.suppress(ConnectionClosed):
        for nonce in range(3000):
            await agent.ws.send(encode(Ping(nonce)))
    return await agent.refusal()


BAD_INPUT = [
    (bad_frame_after_welcome, ErrorCode.BAD_FRAME, "not a msgpack message", 1008),
    (bad_first_frame, ErrorCode.BAD_FRAME, "not a msgpack message", 1008),
    (text_frame, ErrorCode.BAD_FRAME, "text frame", 1008),
    (wrong_field_types, ErrorCode.BAD_MESSAGE, "ping.nonce: expected an integer, got 'one'", 1008),
    (wrong_row_width, ErrorCode.BAD_MESSAGE, "results.rows[0]: 1 values for 2 columns", 1008),
    (unknown_type, ErrorCode.UNKNOWN_TYPE, "message type 'format_disk' is not accepted here", 1008),
    (operator_message_on_agent_path, ErrorCode.UNKNOWN_TYPE, "'revoke'", 1008),
    (results_before_hello, ErrorCode.BAD_STATE, "results may not be sent in state start", 1008),
    (second_hello, ErrorCode.BAD_STATE, "hello may not be sent in state open", 1008),
    (collector_message_from_agent, ErrorCode.UNKNOWN_TYPE, "'ack'", 1008),
    (oversized_frame, None, "", 1009),
    (replayed_sequence, ErrorCode.BAD_SEQUENCE, "results seq 2 replayed: expected 3", 1008),
    (skipped_sequence, ErrorCode.BAD_SEQUENCE, "results seq 3 skipped ahead: expected 2", 1008),
    (silent_client, ErrorCode.TIMEOUT, "no hello within 1.5 s", 1008),
    (flood, ErrorCode.RATE_LIMITED, "more than 300 messages per second", 1008),
]


@pytest.mark.parametrize(("attack", "code", "text", "close"), BAD_INPUT, ids=[b[0].__name__ for b in BAD_INPUT])
async def test_bad_input_is_refused_while_others_stream(collectord, attack, code, text, close):
    host_id = f"steady-{attack.__name__}"
    streaming = asyncio.create_task(stream(collectord.url, host_id, collectord.enroll_secret, total=600, batch=10))
    await asyncio.sleep(0.2)
    error, close_code = await attack(collectord)
    if code is None:
        assert error is None
    else:
        assert error is not None and error.code is code, error
        assert text in error.message
    assert close_code == close
    await asyncio.wait_for(streaming, 60)
    rows = await wait_rows(collectord, host_id, 600)
    assert sorted(rows) == list(range(600)) and set(rows.values()) == {1}


async def test_replayed_sequence_loses_nothing_accepted(collectord):
    await replayed_sequence(collectord)
    rows = await wait_rows(collectord, "bad-replay", 4)
    assert sorted(rows) == [0, 1, 2, 3]  # seq 1 and 2 were accepted; the replay was not


async def test_unknown_path_is_refused_at_the_upgrade(collectord):
    with pytest.raises(InvalidStatus) as caught:
        async with connect(collectord.url + "/admin"):
            pass
    assert caught.value.response.status_code == 404


# -- the operator path ------------------------------------------------------------------------


async def test_agent_credentials_never_work_on_the_operator_path(collectord):
    agent = RawAgent(collectord.url, hello("cred-1", secret=collectord.enroll_secret))
    welcome = await agent.connect()
    await agent.close()
    for token in (welcome.node_key, collectord.enroll_secret):
        with pytest.raises(RuntimeError, match=r"operator refused: .*auth_failed.*wrong operator token"):
            async with Operator(collectord.url, token):
                pass
    # An agent's hello on the operator path is not an operator message at all.
    async with connect(collectord.url + "/operator", compression=None) as ws:
        await ws.send(encode(hello("cred-1", node_key=welcome.node_key)))
        reply = msgpack.unpackb(await ws.recv())
        assert reply["type"] == "error" and reply["code"] == "unknown_type" and reply["req"] is None
        with pytest.raises(ConnectionClosed):
            await ws.recv()


async def test_operator_subscribe_reaches_connected_and_later_hosts(collectord):
    early = RawAgent(collectord.url, hello("sub-early", secret=collectord.enroll_secret, groups=("subgrp",)))
    await early.connect()
    async with Operator(collectord.url, collectord.operator_token) as operator:
        targets = op.Targets(groups=("subgrp",))
        (done,) = await operator.request(
            op.AddSubscription(
                operator.session.next_req(),
                "grp-procs",
                "SELECT pid FROM processes",
                30,
                Mode.DIFFERENTIAL,
                True,
                targets,
            )
        )
        assert isinstance(done, op.Done) and "targets 1 hosts (1 connected)" in done.message
        message = await early.recv()
        assert isinstance(message, Subscribe) and message.sql == "SELECT pid FROM processes" and message.interval == 30
        late = RawAgent(collectord.url, hello("sub-late", secret=collectord.enroll_secret, groups=("subgrp",)))
        await late.connect()
        late_message = await late.recv()
        assert isinstance(late_message, Subscribe) and late_message.id == message.id
        # A host that already runs it (listed in its hello) is not told again; one that lists an extra is unsubscribed.
        await late.close()
        again = RawAgent(
            collectord.url,
            hello(
                "sub-late",
                node_key=None,
                secret=collectord.enroll_secret,
                groups=("subgrp",),
                subscriptions=(message.id, "qstale"),
            ),
        )
        await again.connect()
        unsub = await again.recv()
        assert unsub.TYPE == "unsubscribe" and unsub.id == "qstale"
        (listed,) = await operator.request(op.ListSubscriptions(operator.session.next_req()))
        assert [s.name for s in listed.subscriptions if s.owner == "operator"] == ["grp-procs"]
        (removed,) = await operator.request(op.RemoveSubscription(operator.session.next_req(), "grp-procs"))
        assert removed.message == "subscription 'grp-procs' removed"
        assert (await early.recv()).id == message.id  # unsubscribe
        (missing,) = await operator.request(op.RemoveSubscription(operator.session.next_req(), "grp-procs"))
        assert isinstance(missing, op.OperatorError) and missing.code is ErrorCode.BAD_REQUEST
    await early.close()
    await again.close()


async def test_one_time_query_streams_rows_and_statuses(collectord):
    answering = RawAgent(collectord.url, hello("q-answers", secret=collectord.enroll_secret, groups=("qgrp",)))
    failing = RawAgent(collectord.url, hello("q-fails", secret=collectord.enroll_secret, groups=("qgrp",)))
    silent = RawAgent(collectord.url, hello("q-silent", secret=collectord.enroll_secret, groups=("qgrp",)))
    offline = RawAgent(collectord.url, hello("q-offline", secret=collectord.enroll_secret, groups=("qgrp",)))
    for agent in (answering, failing, silent, offline):
        await agent.connect()
    await offline.close()
    await asyncio.sleep(0.3)

    async def answer(agent: RawAgent, rows: bool) -> None:
        from protocol.messages import Execute, ExecuteResult

        message = await agent.recv()
        assert isinstance(message, Execute)
        if rows:
            await agent.send(ExecuteResult(message.query_id, ("one",), ((1,),), last=False))
            await agent.send(ExecuteResult(message.query_id, ("one",), ((2,),), last=True))
        else:
            await agent.send(ExecuteResult(message.query_id, (), (), last=True, error="no such table: nope"))

    async with Operator(collectord.url, collectord.operator_token) as operator:
        req = operator.session.next_req()
        task = asyncio.create_task(
            operator.request(op.RunQuery(req, "SELECT 1", op.Targets(hosts=("nobody",), groups=("qgrp",)), 2.0))
        )
        await asyncio.gather(answer(answering, True), answer(failing, False))
        replies = await task
    kinds = [type(r).__name__ for r in replies]
    assert kinds[0] == "QueryStarted" and kinds[-1] == "QueryDone"
    rows = [r.rows for r in replies if isinstance(r, op.QueryRows)]
    assert rows == [((1,),), ((2,),)]
    statuses = {r.host_id: (r.status, r.rows, r.message) for r in replies if isinstance(r, op.QueryStatus)}
    assert statuses == {
        "q-answers": (op.HostQueryStatus.ROWS, 2, ""),
        "q-fails": (op.HostQueryStatus.ERROR, 0, "no such table: nope"),
        "q-silent": (op.HostQueryStatus.TIMEOUT, 0, "no complete answer within 2 s"),
        "q-offline": (op.HostQueryStatus.OFFLINE, 0, "not connected"),
        "nobody": (op.HostQueryStatus.UNKNOWN, 0, "no enrolled host of that id or hostname"),
    }
    for agent in (answering, failing, silent):
        await agent.close()


# -- kill -9 ------------------------------------------------------------------------------------


async def test_sigkill_while_streaming_then_restart_delivers_every_row_once(fresh):
    server = fresh(
        """
[[subscriptions]]
name = "procs"
sql = "SELECT pid FROM processes"
interval = 60
all = true
"""
    )
    done = asyncio.Event()
    streaming = asyncio.create_task(stream(server.url, "kill-1", server.enroll_secret, total=10_000, batch=50))
    deadline = time.monotonic() + 30
    while sum(rows_of(server, "kill-1").values()) < 2000 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    server.kill()
    await asyncio.sleep(0.5)
    server.start()  # same port and state
    await asyncio.wait_for(streaming, 120)
    done.set()
    rows = await wait_rows(server, "kill-1", 10_000)
    assert sorted(rows) == list(range(10_000))
    assert set(rows.values()) == {1}, [n for n, c in rows.items() if c > 1][:10]
    # The config subscription survived and is pushed to the agent on its next connection.
    agent = RawAgent(server.url, hello("kill-2", secret=server.enroll_secret))
    await agent.connect()
    message = await agent.recv()
    assert isinstance(message, Subscribe) and message.name == "procs"
    await agent.close()
    assert server.stop() == 0


async def test_error_messages_are_errors_on_the_wire(collectord):
    """A refusal is an ``error`` message the agent can read, before the close."""
    agent = RawAgent(collectord.url, hello("x-err", secret="wrong-secret-0000000"))
    await agent.open()
    agent.session.start()
    await agent.flush()
    error, code = await agent.refusal()
    assert error == Error(ErrorCode.AUTH_FAILED, "wrong enroll secret") and code == 1008


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_signals_stop_it_cleanly_and_systemd_hears_ready_and_stopping(tmp_path, sig):
    import signal as signals
    import socket
    import subprocess
    import sys

    from tests._collector import _env

    notify = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify))
    listener.settimeout(30)
    env = {**_env(), "NOTIFY_SOCKET": str(notify)}
    process = subprocess.Popen(
        [sys.executable, "-m", "collector.daemon", "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path / "s")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = listener.recv(4096).decode()
        assert ready.startswith("READY=1\nSTATUS=listening on ws://127.0.0.1:")
        process.send_signal(getattr(signals, sig))
        assert listener.recv(4096) == b"STOPPING=1"
        assert process.wait(20) == 0
        stderr = process.stderr.read()
        assert f"collectord stopping: signal {sig}" in stderr and "collectord stopped" in stderr
    finally:
        listener.close()
        if process.poll() is None:
            process.kill()
            process.wait()
