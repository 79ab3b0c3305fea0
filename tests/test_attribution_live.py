"""Attribution with real processes, the real kernel and real packets.

The agent's own code produces every row: the kernel audit source (socket_events,
process_events, into the agent's event stores) and the agent's tables, queried with the
very SQL collectord subscribes to (collector.attribution.queries).  Servers and short-lived
clients run as several users (setpriv) on 127.0.0.x, ::1 and across a veth pair into a
network namespace the test creates.  Connections are taken as Zeek takes them: the first
SYN of each, captured on the interface with the kernel's timestamp.  Every answer is
checked against the pid and user the test knows (each client writes its pid to the server).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from collector.attribution import Action, AttributionEngine, Connection, EngineConfig, Method, Reason, Table
from collector.attribution.queries import SUBSCRIPTIONS, USER_CONNECTIONS_SQL
from eventsources.audit.source import AuditSource
from eventsources.base import SourceUnavailable
from tables.events import EVENT_STORES, EventStore
from tables.registry import all_specs
from tables.sqlite import Database
from tests import _attribution_lab as lab

pytestmark = pytest.mark.audit

BASH = os.path.realpath(lab.BASH)
PYTHON = os.path.realpath(lab.SYSTEM_PYTHON)
#: Client users: names from this machine's passwd; 12345 has none.
USERS = {1: "daemon", 2: "bin", 3: "sys", 65534: "nobody", 12345: None}
SERVER_UID = 33  # www-data


def _require_tools() -> None:
    for tool, what in ((lab.SETPRIV, "setpriv"), (lab.IP, "ip")):
        if tool is None:
            pytest.skip(f"{what} is not installed")
    if not os.path.exists(lab.SYSTEM_PYTHON):
        pytest.skip(f"{lab.SYSTEM_PYTHON} (a Python other users may run) is not installed")


class Agent:
    """The agent's event side: the audit source filling event stores, queried by SQL."""

    def __init__(self) -> None:
        self.stores = {t: EventStore(t) for t in ("socket_events", "process_events")}
        self.rows: list[tuple[str, dict[str, Any]]] = []
        self.source = AuditSource(self._sink, socket_events=True)
        self.db = Database(all_specs(), services={EVENT_STORES: self.stores})

    def _sink(self, table: str, row: dict[str, Any]) -> None:
        self.rows.append((table, row))
        self.stores[table].add(row)

    async def start(self) -> None:
        try:
            await self.source.start()
        except SourceUnavailable as exc:
            pytest.skip(f"kernel refused audit: {exc}")

    async def wait_for(self, table: str, pred: Callable[[dict[str, Any]], bool], count: int = 1) -> list[dict]:
        deadline = time.monotonic() + 20
        while True:
            found = [r for t, r in self.rows if t == table and pred(r)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.02)

    def results(self, table: Table) -> list[dict[str, Any]]:
        """What the attribution subscription on ``table`` returns now (the agent's SQL)."""
        (sub,) = [s for s in SUBSCRIPTIONS if s.table is table]
        return self.db.execute(sub.sql).dicts()


def snapshot(
    engine: AttributionEngine, host: str, table: Table, *, netns: str | None = None, ns_inode: str | None = None
) -> None:
    """One full result of the attribution subscription on ``table``, read on the host now."""
    (sub,) = [s for s in SUBSCRIPTIONS if s.table is table]
    rows = lab.query(sub.sql, netns=netns)
    if ns_inode is not None:  # the agent of one namespace reports its own namespace's sockets
        rows = [r for r in rows if r.get("net_namespace") == ns_inode]
    engine.ingest(host, table, [(Action.SNAPSHOT, r) for r in rows], time.time())


def feed_events(
    engine: AttributionEngine, host: str, rows: Iterable[dict[str, Any]], table: Table, *, osquery_only: bool = False
) -> None:
    for row in rows:
        if osquery_only:  # what an osquery agent sends: no local end of connects, no caller ids
            row = {
                k: v
                for k, v in row.items()
                if k not in ("timestamp", "uid", "parent", "process_start_time", "local_address", "local_port")
            }
        engine.ingest(host, table, [(Action.ADDED, row)], row["time"])


def host_setup(engine: AttributionEngine, host: str, *, netns: str | None = None, ns_inode: str | None = None) -> None:
    for table in (Table.INTERFACE_ADDRESSES, Table.USERS, Table.PROCESSES):
        snapshot(engine, host, table, netns=netns)
    for table in (Table.LISTENING_PORTS, Table.PROCESS_OPEN_SOCKETS):
        snapshot(engine, host, table, netns=netns, ns_inode=ns_inode)


@dataclass(frozen=True)
class Client:
    pid: int
    uid: int
    accepted: lab.Accepted


async def run_client(agent: Agent, server: lab.Server, uid: int, host: str, *, hold: bool, netns=None) -> Client:
    """One short-lived client as ``uid``; with ``hold`` the server answers only once the
    agent has the client's connect event (so the agent read the socket while it was open)."""
    port = server.ports[host]
    proc = subprocess.Popen(lab.client_argv(uid, host, port, netns=netns))
    try:
        accepted = await asyncio.wait_for(asyncio.to_thread(server.next_accepted), 20)
        assert accepted.client_pid == proc.pid
        if hold:
            await agent.wait_for("socket_events", lambda r: r["pid"] == proc.pid and r["family"] in (2, 10))
            await agent.wait_for(
                "socket_events",
                lambda r: r["pid"] == server.pid and r["action"] == "accept" and r["remote_port"] == accepted.peer[1],
            )
            server.release(proc.pid)
        assert await asyncio.to_thread(proc.wait, 20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Client(proc.pid, uid, accepted)


def connection(syns: list[lab.Syn], client: Client) -> Connection:
    """The connection Zeek saw for ``client`` (by the ends and the time the server reported)."""
    syn = lab.syn_of(syns, client.accepted)
    assert syn is not None, f"no SYN of {client.accepted}"
    return Connection(syn.ts, syn.uid(), syn.orig_h, syn.orig_p, syn.resp_h, syn.resp_p, syn.proto)


def check_client_side(answer, client: Client, host_id: str, methods=(Method.SOCKET_EVENT,)) -> None:
    o = answer.orig
    assert o.method in methods, o
    assert (o.host_id, o.pid, o.uid, o.username, o.path) == (
        host_id,
        client.pid,
        client.uid,
        USERS[client.uid],
        BASH,
    ), o
    assert o.cmdline is not None and o.cmdline.startswith(lab.BASH + " --norc")
    assert o.parent is not None


def check_server_side(answer, server: lab.Server, host_id: str) -> None:
    r = answer.resp
    assert r.method is Method.SOCKET_EVENT, r  # the accept event names the peer exactly
    assert (r.host_id, r.pid, r.uid, r.username, r.path) == (host_id, server.pid, SERVER_UID, "www-data", PYTHON), r
    assert r.cmdline is not None and r.cmdline.startswith(lab.SYSTEM_PYTHON + " -I -S -c")


async def test_loopback_clients_under_several_uids_ipv4_and_ipv6(audit_state) -> None:
    """Held clients: the agent reads each socket at the event, so both sides are exact."""
    _require_tools()
    agent = Agent()
    await agent.start()
    clients: list[Client] = []
    try:
        with lab.SynCapture("lo") as capture, lab.Server(["127.0.0.2", "::1"], uid=SERVER_UID, hold=True) as server:
            engine = AttributionEngine(EngineConfig(clock_skew=0.5))
            await asyncio.to_thread(host_setup, engine, "this-host")
            for uid in USERS:
                for address in ("127.0.0.2", "::1"):
                    clients.append(await run_client(agent, server, uid, address, hold=True))
            await agent.wait_for("socket_events", lambda r: r["pid"] == server.pid and r["action"] == "accept", 10)
            syns = capture.close()
            feed_events(engine, "this-host", agent.results(Table.PROCESS_EVENTS), Table.PROCESS_EVENTS)
            feed_events(engine, "this-host", agent.results(Table.SOCKET_EVENTS), Table.SOCKET_EVENTS)
    finally:
        await agent.source.stop()
    # every connect and accept was read while its socket was open: the rows carry the local end
    ours = [
        r
        for t, r in agent.rows
        if t == "socket_events" and r["family"] in (2, 10) and r["pid"] in {c.pid for c in clients} | {server.pid}
    ]
    assert len([r for r in ours if r["action"] in ("connect", "accept")]) == 2 * len(clients)
    assert all(r["local_port"] and r["protocol"] == 6 and r["community_id"] for r in ours if r["action"] != "bind")
    for client in clients:
        conn = connection(syns, client)
        answer = engine.attribute(conn)
        check_client_side(answer, client, "this-host")
        check_server_side(answer, server, "this-host")
        assert answer.community_id == conn.community_id
    # the same connections through the user-connections view, from the agent's own SQL
    view = agent.db.execute(USER_CONNECTIONS_SQL).dicts()
    by_pid = {r["pid"]: r for r in view if r["remote_port"] in server.ports.values()}
    for client in clients:
        row = by_pid[client.pid]
        assert (row["uid"], row["username"], row["path"]) == (client.uid, USERS[client.uid], BASH)
        assert row["local_port"] == client.accepted.peer[1] and row["cmdline"].startswith(lab.BASH)
        assert row["community_id"] == connection(syns, client).community_id


async def test_clients_gone_before_the_agent_looks_match_by_time(audit_state) -> None:
    """Clients that exit at once: where the agent was too late to read the socket, the
    connect without its local port still names the one process, by time."""
    _require_tools()
    agent = Agent()
    await agent.start()
    clients: list[Client] = []
    try:
        with lab.SynCapture("lo") as capture, lab.Server(["127.0.0.3"], uid=SERVER_UID) as server:
            engine = AttributionEngine(EngineConfig(clock_skew=0.05))
            await asyncio.to_thread(host_setup, engine, "this-host")
            for uid in list(USERS) * 2:
                client = await run_client(agent, server, uid, "127.0.0.3", hold=False)
                await agent.wait_for("socket_events", lambda r, pid=client.pid: r["pid"] == pid and r["family"] == 2)
                await asyncio.sleep(0.2)  # spaced beyond the engine's clock skew: one client per window
                clients.append(client)
            syns = capture.close()
            feed_events(engine, "this-host", agent.results(Table.PROCESS_EVENTS), Table.PROCESS_EVENTS)
            feed_events(engine, "this-host", agent.results(Table.SOCKET_EVENTS), Table.SOCKET_EVENTS)
    finally:
        await agent.source.stop()
    methods = []
    for client in clients:
        answer = engine.attribute(connection(syns, client))
        check_client_side(answer, client, "this-host", methods=(Method.SOCKET_EVENT, Method.SOCKET_EVENT_TIME))
        check_server_side(answer, server, "this-host")
        methods.append(answer.orig.method)
    print(f"originator methods: {[m.value for m in methods]}")


async def test_concurrent_clients_from_an_osquery_agent_are_ambiguous(audit_state) -> None:
    """Rows as osquery sends them (whole seconds, no local port): two processes of two users
    connecting to one server at once cannot be told apart, and the engine says so."""
    _require_tools()
    agent = Agent()
    await agent.start()
    try:
        with lab.SynCapture("lo") as capture, lab.Server(["127.0.0.4"], uid=SERVER_UID, hold=True) as server:
            engine = AttributionEngine()
            await asyncio.to_thread(host_setup, engine, "this-host")
            port = server.ports["127.0.0.4"]
            procs = [subprocess.Popen(lab.client_argv(uid, "127.0.0.4", port)) for uid in (1, 2)]
            accepted = [await asyncio.wait_for(asyncio.to_thread(server.next_accepted), 20) for _ in procs]
            for p in procs:
                await agent.wait_for("socket_events", lambda r, p=p: r["pid"] == p.pid and r["family"] == 2)
            for acc in accepted:  # and the server's accepts (they reach the agent on their own)
                await agent.wait_for(
                    "socket_events",
                    lambda r, a=acc: (
                        r["pid"] == server.pid and r["action"] == "accept" and r["remote_port"] == a.peer[1]
                    ),
                )
            for p in procs:
                server.release(p.pid)
                p.wait(20)
            syns = capture.close()
            feed_events(engine, "this-host", agent.results(Table.PROCESS_EVENTS), Table.PROCESS_EVENTS)
            rows = agent.results(Table.SOCKET_EVENTS)
            feed_events(engine, "this-host", rows, Table.SOCKET_EVENTS, osquery_only=True)
    finally:
        await agent.source.stop()
    pids = {p.pid for p in procs}
    for acc in accepted:
        answer = engine.attribute(connection(syns, Client(acc.client_pid, 0, acc)))
        assert answer.orig.reason is Reason.AMBIGUOUS, answer.orig
        assert answer.orig.host_id == "this-host"
        assert {int(c.split()[1]) for c in answer.orig.candidates} == pids
        check_server_side(answer, server, "this-host")  # the accept names the peer exactly


async def test_no_socket_refused_connect_and_process_gone(audit_state) -> None:
    """A connect to a closed port (Zeek: REJ); and a process whose exec the agent never saw,
    gone before any snapshot: pid and path from its socket event, the user only if the
    agent's event carried it."""
    _require_tools()
    with (
        tempfile.TemporaryDirectory(prefix="zk-attr-") as scratch,
        lab.Server(["127.0.0.5"], uid=SERVER_UID, hold=True) as server,
    ):
        os.chmod(scratch, 0o755)
        fifo = os.path.join(scratch, "go")
        os.mkfifo(fifo, 0o666)
        os.chmod(fifo, 0o666)
        port = server.ports["127.0.0.5"]
        script = f"read -r go < {fifo}; exec 3<>/dev/tcp/127.0.0.5/{port}; echo $$ >&3; read -r x <&3"
        early = subprocess.Popen(lab.as_user(2, [lab.BASH, "--norc", "-c", script]))
        while os.path.realpath(f"/proc/{early.pid}/exe") != BASH:  # exec'd (setpriv, then bash) before the agent
            time.sleep(0.01)
        agent = Agent()
        await agent.start()
        try:
            with lab.SynCapture("lo") as capture:
                with socket.socket() as s:  # a port nothing listens on
                    s.bind(("127.0.0.5", 0))
                    closed_port = s.getsockname()[1]
                refused = subprocess.Popen(lab.client_argv(1, "127.0.0.5", closed_port), stderr=subprocess.DEVNULL)
                assert refused.wait(20) != 0
                with open(fifo, "w") as go:
                    go.write("go\n")
                accepted = await asyncio.wait_for(asyncio.to_thread(server.next_accepted), 20)
                for pid in (refused.pid, early.pid):
                    await agent.wait_for("socket_events", lambda r, pid=pid: r["pid"] == pid and r["family"] == 2)
                server.release(early.pid)
                assert early.wait(20) == 0
                syns = capture.close()
                rows = agent.results(Table.SOCKET_EVENTS)
                execs = agent.results(Table.PROCESS_EVENTS)
        finally:
            await agent.source.stop()
            if early.poll() is None:
                early.kill()
                early.wait()
    assert accepted.client_pid == early.pid
    assert not [r for r in execs if r["pid"] == early.pid]  # the agent never saw it start
    plain = AttributionEngine(EngineConfig(clock_skew=0.5))
    plain.set_host("this-host", addresses=["127.0.0.1/8"], now=time.time())
    feed_events(plain, "this-host", execs, Table.PROCESS_EVENTS)
    feed_events(plain, "this-host", rows, Table.SOCKET_EVENTS)
    # the refused attempt: Zeek saw a SYN (and a RST); nothing listened
    (rej,) = [s for s in syns if s.resp_p == closed_port]
    answer = plain.attribute(Connection(rej.ts, rej.uid(), rej.orig_h, rej.orig_p, rej.resp_h, rej.resp_p, 6))
    assert answer.resp.reason is Reason.NO_SOCKET and answer.resp.host_id == "this-host"
    o = answer.orig
    assert (o.method, o.pid, o.uid, o.path) == (Method.SOCKET_EVENT_TIME, refused.pid, 1, BASH), o
    # the early process, from the agent's rows: its user comes from the audit record itself
    conn = connection(syns, Client(early.pid, 2, accepted))
    o = plain.attribute(conn).orig
    assert (o.method, o.pid, o.path, o.uid) == (Method.SOCKET_EVENT, early.pid, BASH, 2), o
    assert o.cmdline is None  # its exec was before the agent and it was gone before any snapshot
    # from osquery's rows (no caller uid): the process was gone before anything described it
    osq = AttributionEngine(EngineConfig(clock_skew=0.5))
    osq.set_host("this-host", addresses=["127.0.0.1/8"], now=time.time())
    feed_events(osq, "this-host", rows, Table.SOCKET_EVENTS, osquery_only=True)
    await asyncio.to_thread(snapshot, osq, "this-host", Table.PROCESSES)  # taken after it ended: it is not in there
    o = osq.attribute(conn).orig
    assert (o.reason, o.pid, o.path, o.uid) == (Reason.PROCESS_GONE, early.pid, BASH, None), o


async def test_two_hosts_across_a_veth_pair(audit_state) -> None:
    """A namespace as a second host: the server there, clients here; each host's agent
    reports its own addresses and sockets.  Loopback, reported by both, is ambiguous; with
    no agent for the namespace, its end is NO_AGENT."""
    _require_tools()
    try:
        netns_cm = lab.veth_namespace("v")
        netlab = netns_cm.__enter__()
    except OSError as exc:
        pytest.skip(f"cannot create a network namespace and veth pair here: {exc}")
    try:
        agent = Agent()
        await agent.start()
        clients: list[Client] = []
        try:
            with (
                lab.SynCapture(netlab.outer) as capture,
                lab.Server([netlab.inner_v4, netlab.inner_v6], uid=SERVER_UID, hold=True, netns=netlab.netns) as server,
            ):
                engine = AttributionEngine(EngineConfig(clock_skew=0.5))
                await asyncio.to_thread(host_setup, engine, "host-here", ns_inode=lab.own_netns_inode())
                await asyncio.to_thread(host_setup, engine, "host-there", netns=netlab.netns, ns_inode=netlab.inode)
                lonely = AttributionEngine(EngineConfig(clock_skew=0.5))  # no agent in the namespace
                await asyncio.to_thread(host_setup, lonely, "host-here", ns_inode=lab.own_netns_inode())
                for uid in (1, 65534, 12345):
                    for address in (netlab.inner_v4, netlab.inner_v6):
                        clients.append(await run_client(agent, server, uid, address, hold=True))
                await agent.wait_for("socket_events", lambda r: r["pid"] == server.pid and r["action"] == "accept", 6)
                syns = capture.close()
                mine = {c.pid for c in clients}
                for table in (Table.PROCESS_EVENTS, Table.SOCKET_EVENTS):
                    rows = agent.results(table)  # each host's agent sees its own processes
                    feed_events(engine, "host-here", [r for r in rows if r["pid"] in mine], table)
                    feed_events(engine, "host-there", [r for r in rows if r["pid"] == server.pid], table)
        finally:
            await agent.source.stop()
    finally:
        netns_cm.__exit__(None, None, None)
        assert not netlab.cleanup_errors, netlab.cleanup_errors
    assert not os.path.exists(f"/run/netns/{netlab.netns}")
    for client in clients:
        conn = connection(syns, client)
        answer = engine.attribute(conn)
        check_client_side(answer, client, "host-here")
        check_server_side(answer, server, "host-there")
        assert answer.orig.hostname is None  # hostnames come with the agent's hello (phase 2)
    # both hosts report 127.0.0.1: a loopback connection cannot be placed
    loop = engine.attribute(Connection(time.time(), "CLoop", "127.0.0.1", 40000, "127.0.0.1", 22, 6))
    assert loop.orig.reason is Reason.AMBIGUOUS and loop.orig.candidates == ("host-here", "host-there")
    # without an agent in the namespace, its end of the same connections is no agent's
    for table in (Table.PROCESS_EVENTS, Table.SOCKET_EVENTS):
        feed_events(lonely, "host-here", [r for r in agent.results(table) if r["pid"] in mine], table)
    for client in clients:
        answer = lonely.attribute(connection(syns, client))
        assert answer.resp.reason is Reason.NO_AGENT and answer.resp.host_id is None
        check_client_side(answer, client, "host-here")


async def test_udp_flows_and_a_containerised_client(audit_state, cgroup_child) -> None:
    """A UDP client (connect, send) to a bound UDP server: the originator's connect is read
    at the event (protocol 17, local port); the responder is its bound socket.  A TCP client
    in a container's cgroup: the answer names the container."""
    _require_tools()
    agent = Agent()
    await agent.start()
    try:
        with (
            lab.SynCapture("lo") as capture,
            lab.Server(["127.0.0.7"], uid=SERVER_UID, udp=True) as udp_server,
            lab.Server(["127.0.0.7"], uid=SERVER_UID, hold=True) as tcp_server,
        ):
            engine = AttributionEngine(EngineConfig(clock_skew=0.5))
            await asyncio.to_thread(host_setup, engine, "this-host")
            udp_clients = []
            for uid in (1, 65534):
                proc = subprocess.Popen(lab.udp_client_argv(uid, "127.0.0.7", udp_server.ports["127.0.0.7"]))
                accepted = await asyncio.wait_for(asyncio.to_thread(udp_server.next_accepted), 20)
                await agent.wait_for("socket_events", lambda r, p=proc: r["pid"] == p.pid and r["family"] == 2)
                udp_server.release(proc.pid)
                assert await asyncio.to_thread(proc.wait, 20) == 0
                udp_clients.append(Client(proc.pid, uid, accepted))
            port = tcp_server.ports["127.0.0.7"]
            boxed = subprocess.Popen(cgroup_child.enter_and_exec(*lab.client_argv(2, "127.0.0.7", port)))
            accepted = await asyncio.wait_for(asyncio.to_thread(tcp_server.next_accepted), 20)
            await agent.wait_for("socket_events", lambda r: r["pid"] == boxed.pid and r["family"] == 2)
            tcp_server.release(boxed.pid)
            assert await asyncio.to_thread(boxed.wait, 20) == 0
            await agent.wait_for("socket_events", lambda r: r["pid"] == tcp_server.pid and r["action"] == "accept")
            syns = capture.close()
            for table in (Table.PROCESS_EVENTS, Table.SOCKET_EVENTS):
                feed_events(engine, "this-host", agent.results(table), table)
    finally:
        await agent.source.stop()
    for client in udp_clients:
        conn = connection(syns, client)
        assert conn.proto == 17
        answer = engine.attribute(conn)
        o, r = answer.orig, answer.resp
        assert (o.method, o.pid, o.uid, o.username, o.path) == (
            Method.SOCKET_EVENT,
            client.pid,
            client.uid,
            USERS[client.uid],
            PYTHON,
        ), o
        assert (r.method, r.pid, r.uid, r.username) == (Method.LISTENING_PORT, udp_server.pid, SERVER_UID, "www-data")
    answer = engine.attribute(connection(syns, Client(boxed.pid, 2, accepted)))
    check_client_side(answer, Client(boxed.pid, 2, accepted), "this-host")
    assert answer.orig.container_id == cgroup_child.container_id
    check_server_side(answer, tcp_server, "this-host")
