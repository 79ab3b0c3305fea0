"""Attribution against the real Zeek: its conn.log, its Community ID, its attribution script.

Zeek captures the test's traffic; real clients of several users connect to a real server.
Offline: the agent's audit source and tables give the rows, the Community ID Zeek writes
must be the one protocol.community_id computes, and ``collectord attribute`` over Zeek's
own conn.log must name each connection's processes and users.  Live: Zeek with
``@load osquery/attribution`` asks a real collectord, which answers from real agentd
processes (one host on loopback; two hosts, one per network namespace, across a veth pair).
Without a Zeek binary (PATH or $ZEEK) the test skips, saying so.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import trustme

from collector.attribution import Connection, EngineConfig, Table
from collector.attribution.connlog import read_conn_log
from collector.attribution.engine import AttributionEngine
from collector.attribution.offline import main as attribute_main
from collector.attribution.persist import load_engine, save_engine, state_path
from collector.attribution.queries import SUBSCRIPTIONS
from eventsources.base import SourceMode
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


def zeek_script_env(zeek: str) -> dict[str, str]:
    scripts = Path(__file__).resolve().parent.parent / "zeek" / "scripts"
    path = subprocess.run([zeek + "-config", "--zeekpath"], capture_output=True, text=True).stdout.strip()
    if not path:
        pytest.skip("zeek-config --zeekpath did not answer; cannot extend ZEEKPATH")
    return dict(os.environ, ZEEKPATH=f"{scripts}:{path}")


def test_zeek_attribution_script_on_a_veth_pair(audit_state, tmp_path) -> None:
    """Zeek on the test's veth interface with ``@load osquery/attribution``, every part real:
    conn.log gains the processes and users of both ends, osq-attribution.log has every
    connection by uid.

    Two hosts on one kernel: "here" (this network namespace: the clients, Zeek, collectord)
    and "there" (a namespace the test creates, joined by a veth pair: the server).  Each has
    its own agentd process, named by osquery's ``host_identifier = specified``; the one
    there runs under ``ip netns exec``, so its interface_addresses, listening_ports and
    process_open_sockets are the namespace's.  Both reach collectord over the veth, TLS with
    the test's pinned CA (collectord listens on the outer address: a non-loopback listener).

    Kernel audit has one owner.  Both agents get socket events from it, so both sides are
    matched by the exact socket event (the client's connect, the server's accept), not by a
    snapshot that a short-lived client may miss: the agent there owns audit (the kernel
    delivers to its owner in any network namespace), the agent here reads the audit
    multicast group in read-only mode (docs/events.md), which the kernel sends only to
    readers in the initial network namespace, so the two roles cannot be swapped.  Audit is
    not per namespace: each agent also sees the other side's processes and sockets, as
    agents on the host and in a container would; collectord asks only the host owning an
    address, so the answers must name the right host as well as the right process.
    """
    zeek = zeek_binary()
    _require_tools()
    env = zeek_script_env(zeek)
    try:
        netns_cm = lab.veth_namespace("z")
        netlab = netns_cm.__enter__()
    except OSError as exc:
        pytest.skip(f"cannot create a network namespace and veth pair here: {exc}")
    for d in ("zeek", "c", "here", "there", "pki"):
        (tmp_path / d).mkdir()
    ca = trustme.CA()
    cert = ca.issue_cert(netlab.outer_v4)
    cert.private_key_pem.write_to_path(str(tmp_path / "pki" / "collector.key"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "pki" / "collector.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "pki" / "ca.pem"))
    pinned = ssl.create_default_context(cafile=str(tmp_path / "pki" / "ca.pem"))
    ws_port = free_port()
    hosts = {"here": f"here-{os.getpid()}", "there": f"there-{os.getpid()}"}
    started: list[Any] = []
    clients: list[tuple[int, int, lab.Accepted]] = []
    zeek_proc = None
    try:
        server = lab.Server([netlab.inner_v4, netlab.inner_v6], uid=SERVER_UID, think_ms=300, netns=netlab.netns)
        started.append(server)
        bpf = " or ".join(f"tcp port {p}" for p in server.ports.values())  # not the agents' uplinks
        (tmp_path / "zeek" / "local.zeek").write_text(
            "@load osquery/attribution\n"
            f"redef osquery::websocket_port = {ws_port}/tcp;\n"
            "redef tcp_close_delay = 2 secs;\n"  # conn.log sooner than after Zeek's 5 s
        )
        zeek_proc = subprocess.Popen(
            [zeek, "-b", "-C", "-i", netlab.outer, "-f", bpf, "local.zeek"],
            cwd=tmp_path / "zeek",
            env=env,
            stdout=open(tmp_path / "zeek" / "stdout", "w"),
            stderr=open(tmp_path / "zeek" / "stderr", "w"),
        )
        collector = Collectord(
            tmp_path / "c",
            f'''[listen]
tls_cert = "{tmp_path / "pki" / "collector.pem"}"
tls_key = "{tmp_path / "pki" / "collector.key"}"
[attribution]
answer_delay = 1.0
save_interval = 0.5
''',
            attribution=True,
            extra_args=["--zeek", f"ws://127.0.0.1:{ws_port}"],
        )
        started.append(collector)
        collector.start(listen=f"{netlab.outer_v4}:0")
        assert collector.url.startswith("wss://"), collector.url

        def agentd(side: str, prefix: list[str]) -> Agentd:
            config = {
                "options": {
                    "host_identifier": "specified",
                    "specified_identifier": hosts[side],
                    "audit_allow_sockets": True,
                    "schedule_splay_percent": 0,
                    "watchdog_level": -1,
                    "disable_hardware_events": True,
                },
                "collector": {
                    "urls": [collector.url],
                    "ca": str(tmp_path / "pki" / "ca.pem"),
                    "enroll_secret_file": str(collector.state / "enroll-secret"),
                },
            }
            agent = Agentd(tmp_path / side, config, prefix=prefix)
            started.append(agent)
            agent.start()
            wait_for(lambda: agent.status().uplink.subscriptions == len(SUBSCRIPTIONS), f"{side}: the subscriptions")
            return agent

        there = agentd("there", [lab.IP or "ip", "netns", "exec", netlab.netns])  # first: it takes audit
        here = agentd("here", [])
        modes = {side: _audit_mode(agent) for side, agent in (("here", here), ("there", there))}
        assert modes == {"here": SourceMode.READ_ONLY, "there": SourceMode.OWNER}, modes

        def owners() -> dict[str, list[str]]:
            path = state_path(collector.state)
            if not path.exists():
                return {}
            engine = load_engine(path)
            now = time.time()
            return {
                a: engine.owners(a, now) for a in (netlab.outer_v4, netlab.outer_v6, netlab.inner_v4, netlab.inner_v6)
            }

        expected_owners = {
            netlab.outer_v4: [hosts["here"]],
            netlab.outer_v6: [hosts["here"]],
            netlab.inner_v4: [hosts["there"]],
            netlab.inner_v6: [hosts["there"]],
        }
        wait_for(lambda: owners() == expected_owners, "each host's addresses at collectord")
        wait_for(lambda: "listening on" in (tmp_path / "zeek" / "stderr").read_text(), "Zeek capturing on the veth")
        wait_for(lambda: _component(collector, "zeek", pinned)[0] == "ready", "collectord's link to Zeek")
        for uid in (1, 65534, 12345):
            for address in (netlab.inner_v4, netlab.inner_v6):
                proc = subprocess.Popen(lab.client_argv(uid, address, server.ports[address]))
                accepted = server.next_accepted()
                assert proc.wait(30) == 0 and accepted.client_pid == proc.pid
                clients.append((proc.pid, uid, accepted))
        # each connection: a question when established, one when removed; both answered
        wait_for(
            lambda: _component(collector, "attribution", pinned)[1]["zeek_answers_sent"] >= 2 * len(clients),
            "the answers",
        )
        counters = _component(collector, "attribution", pinned)[1]
        log = tmp_path / "zeek" / "osq-attribution.log"
        wait_for(lambda: log.exists() and len(read_zeek_ascii(log)) >= len(clients), "osq-attribution.log")
        server_pid = server.pid
    finally:
        if zeek_proc is not None and zeek_proc.poll() is None:
            os.kill(zeek_proc.pid, signal.SIGTERM)
            try:
                zeek_proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(zeek_proc.pid, signal.SIGKILL)
                zeek_proc.wait()
        for part in reversed(started):  # the reader of audit before its owner
            if isinstance(part, Agentd) and part.process is not None and part.process.poll() is None:
                part.stop()  # SIGTERM: it gives kernel audit back
            part.close()
        netns_cm.__exit__(None, None, None)
    assert not netlab.cleanup_errors, netlab.cleanup_errors
    assert counters["zeek_questions"] == 2 * len(clients), counters
    # the link's own chatter (neighbour discovery: ICMPv6) is in conn.log too, never asked about
    conn_rows = [r for r in read_zeek_ascii(tmp_path / "zeek" / "conn.log") if r["proto"] == "tcp"]
    attributions = {r["uid"]: r for r in read_zeek_ascii(tmp_path / "zeek" / "osq-attribution.log")}
    assert len(conn_rows) == len(clients) == len(attributions), (conn_rows, counters)
    by_port = {int(r["id.orig_p"]): r for r in conn_rows}
    hostname = socket.gethostname()  # the namespace shares this one's UTS namespace
    for pid, uid, accepted in clients:
        conn = by_port[accepted.peer[1]]
        user = USERS[uid] or "-"
        assert (conn["orig_host_id"], conn["orig_pid"], conn["orig_path"], conn["orig_user"]) == (
            hosts["here"],
            str(pid),
            BASH,
            user,
        ), conn
        assert (conn["resp_host_id"], conn["resp_pid"], conn["resp_path"], conn["resp_user"]) == (
            hosts["there"],
            str(server_pid),
            PYTHON,
            "www-data",
        ), conn
        row = attributions[conn["uid"]]
        assert (row["orig_host_id"], row["orig_hostname"], row["orig_pid"], row["orig_user_id"], row["orig_match"]) == (
            hosts["here"],
            hostname,
            str(pid),
            str(uid),
            "socket_event",
        ), row
        assert (row["resp_host_id"], row["resp_hostname"], row["resp_pid"], row["resp_match"], row["resp_user"]) == (
            hosts["there"],
            hostname,
            str(server_pid),
            "socket_event",
            "www-data",
        ), row
        assert row["community_id"] == conn_community_id(conn)
        assert row["orig_cmdline"].startswith(lab.BASH + " --norc")
        assert row["resp_cmdline"].startswith(lab.SYSTEM_PYTHON + " -I -S -c")
    assert "Traceback" not in collector.log(), collector.log()


def _audit_mode(agent: Agentd) -> SourceMode:
    """How the agent's audit source reads the kernel (owner or read-only)."""
    (audit,) = [s for s in agent.status().events.sources if s.name == "audit"]
    return audit.mode


def _component(server: Collectord, kind: str, ssl_context: ssl.SSLContext | None = None) -> tuple[str, dict[str, int]]:
    """A part of collectord as an operator sees it (``get_status``): its state and counters."""

    async def status() -> tuple[str, dict[str, int]]:
        async with Operator(server.url, server.operator_token, ssl_context=ssl_context) as operator:
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
