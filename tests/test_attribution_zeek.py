"""Attribution against the real Zeek: its conn.log, its Community ID.

Zeek captures the test's loopback traffic (community-id logging on); real clients of
several users connect to a real server; the agent's audit source and tables give the
rows.  The Community ID Zeek writes must be the one protocol.community_id computes, and
``collectord attribute`` over Zeek's own conn.log must name each connection's processes
and users.  Without a Zeek binary (PATH or $ZEEK) the test skips, saying so.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import websockets

from collector.attribution import Action, Connection, EngineConfig, Table
from collector.attribution.connlog import read_conn_log
from collector.attribution.engine import AttributionEngine
from collector.attribution.offline import main as attribute_main
from collector.attribution.persist import load_engine, save_engine, state_path
from collector.attribution.queries import SUBSCRIPTIONS
from collector.attribution.responder import Answer, Responder
from collector.attribution.zeekproto import ATTRIBUTE_EVENT, AttributionRequest, parse_request
from collector.zeek import brokerjson as bj
from protocol import operator as op
from tests import _attribution_lab as lab
from tests._collector import Agentd, Collectord, Operator
from tests.test_attribution_live import (
    BASH,
    PYTHON,
    SERVER_UID,
    USERS,
    Agent,
    Client,
    _require_tools,
    feed_events,
    host_setup,
    run_client,
)
from tests.test_attribution_offline import read_zeek_ascii
from tests.test_attribution_pipeline import wait_for
from tests.test_zeek_package import free_port

pytestmark = pytest.mark.audit


def zeek_binary() -> str:
    found = os.environ.get("ZEEK") or shutil.which("zeek")
    if not found:
        pytest.skip("no Zeek binary: put zeek on PATH or set $ZEEK (see .ci/run)")
    return found


class ZeekOnInterface:
    """zeek -i IFACE -f FILTER with community-id logging, in ``workdir``; stopped with SIGTERM."""

    def __init__(self, zeek: str, workdir: Path, iface: str, bpf: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.proc = subprocess.Popen(
            [zeek, "-C", "-i", iface, "-f", bpf, "policy/protocols/conn/community-id-logging"],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_listening(self) -> None:
        assert self.proc.stderr is not None
        seen = []
        for line in self.proc.stderr:
            seen.append(line)
            if line.startswith("listening on"):
                return
        raise RuntimeError("zeek did not start capturing: " + "".join(seen))

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


async def test_collectord_attribute_on_real_zeek_conn_log(audit_state, tmp_path) -> None:
    zeek = zeek_binary()
    _require_tools()
    agent = Agent()
    await agent.start()
    clients: list[Client] = []
    try:
        with lab.Server(["127.0.0.6", "::1"], uid=SERVER_UID, hold=True) as server:
            engine = AttributionEngine(EngineConfig(clock_skew=0.5))
            await asyncio.to_thread(host_setup, engine, "this-host")
            bpf = " or ".join(f"tcp port {p}" for p in server.ports.values())
            capture = ZeekOnInterface(zeek, tmp_path / "zeek", "lo", bpf)
            try:
                await asyncio.wait_for(asyncio.to_thread(capture.wait_listening), 60)
                for uid in USERS:
                    for address in ("127.0.0.6", "::1"):
                        clients.append(await run_client(agent, server, uid, address, hold=True))
            finally:
                await asyncio.to_thread(capture.stop)
            for table in (Table.PROCESS_EVENTS, Table.SOCKET_EVENTS):
                feed_events(engine, "this-host", agent.results(table), table)
    finally:
        await agent.source.stop()
    conn_log = tmp_path / "zeek" / "conn.log"
    assert conn_log.exists(), sorted(p.name for p in (tmp_path / "zeek").iterdir())
    zeek_rows = read_zeek_ascii(conn_log)
    assert len(zeek_rows) == len(clients)

    def zeek_row(client: Client) -> dict[str, str]:
        """Zeek's record of the client's connection (ports come back: the last one before the accept)."""
        peer = client.accepted.peer
        rows = [r for r in zeek_rows if int(r["id.orig_p"]) == peer[1] and float(r["ts"]) <= client.accepted.t + 0.5]
        return max(rows, key=lambda r: float(r["ts"]))

    # the Community ID Zeek computed is ours, for IPv4 and IPv6
    conns = list(read_conn_log(str(conn_log)))
    assert {c.uid: c.community_id for c in conns} == {r["uid"]: r["community_id"] for r in zeek_rows}
    # collectord attribute over Zeek's own conn.log, from the persisted state
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    save_engine(engine, state_path(state_dir))
    out = tmp_path / "out"
    assert attribute_main([str(conn_log), "-o", str(out), "--state-dir", str(state_dir)]) == 0
    answers = {r["uid"]: r for r in read_zeek_ascii(out / "osq-attribution.log")}
    assert len(answers) == len(clients)
    for client in clients:
        zeek = zeek_row(client)
        row = answers[zeek["uid"]]
        assert row["community_id"] == zeek["community_id"]
        assert (row["orig_match"], row["orig_pid"], row["orig_user_id"], row["orig_path"]) == (
            "socket_event",
            str(client.pid),
            str(client.uid),
            BASH,
        )
        assert row["orig_user"] == (USERS[client.uid] or "-")
        assert (row["resp_match"], row["resp_pid"], row["resp_user"], row["resp_path"]) == (
            "socket_event",
            str(server.pid),
            "www-data",
            PYTHON,
        )
    user_connections = read_zeek_ascii(out / "osq-user_connections.log")
    mine = {int(r["pid"]): r for r in user_connections if r["pid"] in {str(c.pid) for c in clients}}
    assert {c.pid for c in clients} == set(mine)
    for client in clients:
        assert mine[client.pid]["local_port"] == str(client.accepted.peer[1])
        assert mine[client.pid]["community_id"] == zeek_row(client)["community_id"]


class CollectordStandIn:
    """collectord's attribution side over Zeek's WebSocket API, from the real engine and
    responder: what phase 2 wires into collectord.  It reads ``attribute_v1`` questions and
    sends ``attribution_v1`` answers when they are due."""

    def __init__(self, port: int, responder: Responder) -> None:
        self.url = f"ws://127.0.0.1:{port}/v1/messages/json"
        self.responder = responder
        self.asked: list[AttributionRequest] = []
        self.sent: list[Answer] = []
        self.errors: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self, deadline: float) -> None:
        while True:
            try:
                self.ws = await websockets.connect(self.url, open_timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        await self.ws.send(bj.encode_handshake(["/osquery/collector/"]))
        ack = bj.decode_server_message(await self.ws.recv())
        assert isinstance(ack, bj.Ack), ack
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async def read() -> None:
            async for frame in self.ws:
                message = bj.decode_server_message(frame)
                if isinstance(message, bj.Error):
                    self.errors.append(f"{message.code}: {message.context}")
                elif message.event is not None and message.event.name == ATTRIBUTE_EVENT:
                    request = parse_request(message.event)
                    self.asked.append(request)
                    self.responder.ask(request, time.monotonic())

        reader = asyncio.create_task(read())
        try:
            while not reader.done():
                for answer in self.responder.due(time.monotonic()):
                    await self.ws.send(bj.encode_event("/osquery/zeek/", answer.event()))
                    self.sent.append(answer)
                await asyncio.sleep(0.02)
        finally:
            reader.cancel()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.ws.close()


def zeek_script_env(zeek: str) -> dict[str, str]:
    scripts = Path(__file__).resolve().parent.parent / "zeek" / "scripts"
    path = subprocess.run([zeek + "-config", "--zeekpath"], capture_output=True, text=True).stdout.strip()
    if not path:
        pytest.skip("zeek-config --zeekpath did not answer; cannot extend ZEEKPATH")
    return dict(os.environ, ZEEKPATH=f"{scripts}:{path}")


async def test_zeek_attribution_script_on_a_veth_pair(audit_state, tmp_path) -> None:
    """Zeek on the test's veth interface with ``@load osquery/attribution``: conn.log gains the
    processes and users of both ends, osq-attribution.log has every connection by uid."""
    zeek = zeek_binary()
    _require_tools()
    env = zeek_script_env(zeek)
    try:
        netns_cm = lab.veth_namespace("z")
        netlab = netns_cm.__enter__()
    except OSError as exc:
        pytest.skip(f"cannot create a network namespace and veth pair here: {exc}")
    workdir = tmp_path / "zeek"
    workdir.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        ws_port = s.getsockname()[1]
    (workdir / "local.zeek").write_text(
        "@load osquery/attribution\n"
        f"redef osquery::websocket_port = {ws_port}/tcp;\n"
        "redef tcp_close_delay = 2 secs;\n"  # conn.log sooner than after Zeek's 5 s
    )
    clients: list[Client] = []
    zeek_proc = None
    try:
        engine = AttributionEngine(EngineConfig(clock_skew=0.5))
        server = lab.Server([netlab.inner_v4, netlab.inner_v6], uid=SERVER_UID, hold=True, netns=netlab.netns)
        agent = Agent()
        # each host's agent: the namespace's server is "host-there", everything here is "host-here"
        agent_sink = agent._sink

        def sink(table: str, row: dict) -> None:
            agent_sink(table, row)
            host = "host-there" if row["pid"] == server.pid else "host-here"
            engine.ingest(host, Table(table), [(Action.ADDED, row)], row["time"])

        agent.source.sink = sink
        await agent.start()
        try:
            await asyncio.to_thread(host_setup, engine, "host-here", ns_inode=lab.own_netns_inode())
            await asyncio.to_thread(host_setup, engine, "host-there", netns=netlab.netns, ns_inode=netlab.inode)
            engine.set_host("host-here", hostname="here", now=time.time())
            engine.set_host("host-there", hostname="there", now=time.time())
            zeek_proc = subprocess.Popen(
                [zeek, "-b", "-C", "-i", netlab.outer, "local.zeek"],
                cwd=workdir,
                env=env,
                stdout=open(workdir / "stdout", "w"),
                stderr=open(workdir / "stderr", "w"),
            )
            standin = CollectordStandIn(ws_port, Responder(engine, delay=0.3))
            await standin.start(time.monotonic() + 60)
            try:
                for uid in (1, 65534, 12345):
                    for address in (netlab.inner_v4, netlab.inner_v6):
                        clients.append(await run_client(agent, server, uid, address, hold=True))
                # every connection is asked about twice (established, removed) and answered twice
                deadline = time.monotonic() + 60
                while len(standin.sent) < 2 * len(clients) and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                log = workdir / "osq-attribution.log"
                while time.monotonic() < deadline and (
                    not log.exists() or log.read_text().count("\n") < len(clients) + 8
                ):
                    await asyncio.sleep(0.1)  # Zeek writes the log as the answers are processed
            finally:
                await standin.stop()
        finally:
            await agent.source.stop()
            server.close()
    finally:
        if zeek_proc is not None and zeek_proc.poll() is None:
            os.kill(zeek_proc.pid, signal.SIGTERM)
            try:
                zeek_proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(zeek_proc.pid, signal.SIGKILL)
                zeek_proc.wait()
        netns_cm.__exit__(None, None, None)
    assert not netlab.cleanup_errors, netlab.cleanup_errors
    assert not standin.errors, standin.errors
    assert len(standin.asked) == 2 * len(clients), (standin.asked, (workdir / "stderr").read_text())
    # the link's own chatter (neighbour discovery: ICMPv6) is in conn.log too, never asked about
    conn_rows = [r for r in read_zeek_ascii(workdir / "conn.log") if r["proto"] == "tcp"]
    attributions = {r["uid"]: r for r in read_zeek_ascii(workdir / "osq-attribution.log")}
    assert len(conn_rows) == len(clients) == len(attributions)
    by_port = {int(r["id.orig_p"]): r for r in conn_rows}
    for client in clients:
        conn = by_port[client.accepted.peer[1]]
        user = USERS[client.uid] or "-"
        assert (conn["orig_host_id"], conn["orig_pid"], conn["orig_path"], conn["orig_user"]) == (
            "host-here",
            str(client.pid),
            BASH,
            user,
        ), conn
        assert (conn["resp_host_id"], conn["resp_pid"], conn["resp_path"], conn["resp_user"]) == (
            "host-there",
            str(server.pid),
            PYTHON,
            "www-data",
        ), conn
        row = attributions[conn["uid"]]
        assert (row["orig_hostname"], row["orig_pid"], row["orig_user_id"], row["orig_match"]) == (
            "here",
            str(client.pid),
            str(client.uid),
            "socket_event",
        )
        assert (row["resp_hostname"], row["resp_pid"], row["resp_match"], row["resp_user"]) == (
            "there",
            str(server.pid),
            "socket_event",
            "www-data",
        )
        assert (
            row["community_id"]
            == Connection(
                0, "x", conn["id.orig_h"], int(conn["id.orig_p"]), conn["id.resp_h"], int(conn["id.resp_p"]), 6
            ).community_id
        )
        assert row["orig_cmdline"].startswith(lab.BASH + " --norc")


def _component(server: Collectord, kind: str) -> tuple[str, dict[str, int]]:
    """A part of collectord as an operator sees it (``get_status``): its state and counters."""

    async def status() -> tuple[str, dict[str, int]]:
        async with Operator(server.url, server.operator_token) as operator:
            (reply,) = await operator.request(op.GetStatus(operator.session.next_req()))
            (part,) = [c for c in reply.components if c.kind == kind]
            return part.state, {c.name: c.value for c in part.counters}

    return asyncio.run(status())


def test_live_attribution_through_collectord_into_zeeks_conn_log(audit_state, tmp_path) -> None:
    """The live path, every part real: Zeek (capturing lo, ``@load osquery/attribution``) asks
    collectord about each connection; collectord answers from what a real agentd streamed
    (kernel audit, attribution on by default) over the Zeek endpoint's link.  conn.log gets
    both ends' pid, path, user and host id; osq-attribution.log has every connection by uid."""
    zeek = zeek_binary()
    _require_tools()
    env = zeek_script_env(zeek)
    for d in ("zeek", "c", "a"):
        (tmp_path / d).mkdir()
    ws_port = free_port()
    started: list[Any] = []
    clients: list[tuple[int, int, lab.Accepted]] = []
    zeek_proc = None
    try:
        tcp_server = lab.Server(["127.0.0.11", "::1"], uid=SERVER_UID, think_ms=300)
        started.append(tcp_server)
        bpf = " or ".join(f"tcp port {p}" for p in tcp_server.ports.values())
        (tmp_path / "zeek" / "local.zeek").write_text(
            "@load osquery/attribution\n"
            f"redef osquery::websocket_port = {ws_port}/tcp;\n"
            "redef tcp_close_delay = 3 secs;\n"
        )
        zeek_proc = subprocess.Popen(
            [zeek, "-b", "-C", "-i", "lo", "-f", bpf, "local.zeek"],
            cwd=tmp_path / "zeek",
            env=env,
            stdout=open(tmp_path / "zeek" / "stdout", "w"),
            stderr=open(tmp_path / "zeek" / "stderr", "w"),
        )
        server = Collectord(
            tmp_path / "c",
            "[attribution]\nanswer_delay = 1.0\nsave_interval = 0.5\n",
            attribution=True,
            extra_args=["--zeek", f"ws://127.0.0.1:{ws_port}"],
        )
        started.append(server)
        server.start()
        agent = Agentd(
            tmp_path / "a",
            {
                "options": {
                    "audit_allow_sockets": True,
                    "schedule_splay_percent": 0,
                    "watchdog_level": -1,
                    "disable_hardware_events": True,
                },
                "collector": {"urls": [server.url], "enroll_secret_file": str(server.state / "enroll-secret")},
            },
        )
        started.append(agent)
        agent.start()
        wait_for(lambda: agent.status().uplink.subscriptions == len(SUBSCRIPTIONS), "the attribution subscriptions")

        def ready() -> bool:
            path = state_path(server.state)
            return path.exists() and bool(load_engine(path).owners("127.0.0.11", time.time()))

        wait_for(ready, "the host's addresses at collectord")
        wait_for(lambda: "listening on" in (tmp_path / "zeek" / "stderr").read_text(), "Zeek capturing on lo")
        wait_for(lambda: _component(server, "zeek")[0] == "ready", "collectord's link to Zeek")
        for uid in (1, 65534, 12345):
            for address in ("127.0.0.11", "::1"):
                proc = subprocess.Popen(lab.client_argv(uid, address, tcp_server.ports[address]))
                accepted = tcp_server.next_accepted()
                assert proc.wait(30) == 0 and accepted.client_pid == proc.pid
                clients.append((proc.pid, uid, accepted))
        # each connection: a question when established, one when removed; both answered
        wait_for(lambda: _component(server, "attribution")[1]["zeek_answers_sent"] >= 2 * len(clients), "the answers")
        counters = _component(server, "attribution")[1]
        log = tmp_path / "zeek" / "osq-attribution.log"
        wait_for(lambda: log.exists() and len(read_zeek_ascii(log)) >= len(clients), "osq-attribution.log")
        server_pid = tcp_server.pid
    finally:
        if zeek_proc is not None and zeek_proc.poll() is None:
            os.kill(zeek_proc.pid, signal.SIGTERM)
            try:
                zeek_proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(zeek_proc.pid, signal.SIGKILL)
                zeek_proc.wait()
        for part in reversed(started):
            if isinstance(part, Agentd) and part.process is not None and part.process.poll() is None:
                part.stop()  # SIGTERM: it gives kernel audit back
            part.close()
    conn_rows = [r for r in read_zeek_ascii(tmp_path / "zeek" / "conn.log") if r["proto"] == "tcp"]
    attributions = {r["uid"]: r for r in read_zeek_ascii(tmp_path / "zeek" / "osq-attribution.log")}
    assert len(conn_rows) == len(clients) == len(attributions), (conn_rows, counters)
    by_port = {int(r["id.orig_p"]): r for r in conn_rows}
    host_ids = set()
    for pid, uid, accepted in clients:
        conn = by_port[accepted.peer[1]]
        user = USERS[uid] or "-"
        assert (conn["orig_pid"], conn["orig_path"], conn["orig_user"]) == (str(pid), BASH, user), conn
        assert (conn["resp_pid"], conn["resp_path"], conn["resp_user"]) == (str(server_pid), PYTHON, "www-data")
        host_ids |= {conn["orig_host_id"], conn["resp_host_id"]}
        row = attributions[conn["uid"]]
        assert (row["orig_pid"], row["orig_user_id"], row["orig_match"]) == (str(pid), str(uid), "socket_event")
        assert (row["resp_pid"], row["resp_match"], row["resp_user"]) == (str(server_pid), "socket_event", "www-data")
        assert row["community_id"] == conn_community_id(conn)
        assert row["orig_cmdline"].startswith(lab.BASH + " --norc")
    (host_id,) = host_ids  # one agent: both ends are its host
    assert host_id not in ("-", "")
    assert "Traceback" not in server.log(), server.log()


def conn_community_id(conn: dict[str, str]) -> str:
    return Connection(
        0, "x", conn["id.orig_h"], int(conn["id.orig_p"]), conn["id.resp_h"], int(conn["id.resp_p"]), 6
    ).community_id
