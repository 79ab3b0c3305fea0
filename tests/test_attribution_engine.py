"""collector.attribution.engine on canned rows: the rules, one by one.

The engine is pure, so its rules are checked here on rows shaped as the agent sends them
(osquery's columns, typed as SQLite gives them).  tests/test_attribution_live.py feeds it
rows the agent's own code produced from real processes and the real kernel.
"""

from __future__ import annotations

import json

import pytest

from collector.attribution import (
    Action,
    AttributionEngine,
    Connection,
    EngineConfig,
    HostLimits,
    Method,
    Reason,
    Side,
    StateError,
    Table,
)

T0 = 1_700_000_000.0
A, B = "host-a", "host-b"


def engine(**config) -> AttributionEngine:
    eng = AttributionEngine(EngineConfig(**config))
    eng.set_host(A, hostname="alpha", addresses=["10.0.0.1", "127.0.0.1/255.0.0.0", "::1"], now=T0 - 100)
    eng.set_host(B, hostname="beta", addresses=["10.0.0.2"], now=T0 - 100)
    for host in (A, B):
        eng.ingest(host, Table.USERS, [(Action.SNAPSHOT, {"uid": 0, "username": "root"})], T0 - 100)
        eng.ingest(
            host,
            Table.USERS,
            [(Action.ADDED, {"uid": 1000, "username": "alice"}), (Action.ADDED, {"uid": 1001, "username": "bob"})],
            T0 - 100,
        )
    return eng


def exec_row(pid, t, path, cmdline, uid, parent=1, **extra):
    return {
        "pid": pid,
        "path": path,
        "cmdline": cmdline,
        "uid": uid,
        "parent": parent,
        "time": int(t),
        "timestamp": t,
        **extra,
    }


def sock_row(action, pid, t, path, *, remote=None, local=None, status="succeeded", **extra):
    row = {
        "action": action,
        "pid": pid,
        "path": path,
        "fd": "3",
        "family": 10 if ":" in str((remote or local or ("",))[0]) else 2,
        "protocol": 0,
        "local_address": None,
        "remote_address": None,
        "local_port": 0,  # the agent's rows say 0 where no port is known, as osquery's do
        "remote_port": 0,
        "time": int(t),
        "status": status,
        **extra,
    }
    if remote is not None:
        row["remote_address"], row["remote_port"] = remote
    if local is not None:
        row["local_address"], row["local_port"] = local
    if "timestamp" not in extra:
        row["timestamp"] = t
    return row


def listen_row(pid, port, address="0.0.0.0", protocol=6, **extra):
    return {
        "pid": pid,
        "port": port,
        "protocol": protocol,
        "family": 10 if ":" in address else 2,
        "address": address,
        "fd": 5,
        "socket": 1000 + pid,
        "net_namespace": "4026531840",
        **extra,
    }


def conn(ts=T0, orig=("10.0.0.1", 40000), resp=("10.0.0.2", 80), proto=6, uid="C1") -> Connection:
    return Connection(ts, uid, orig[0], orig[1], resp[0], resp[1], proto)


def feed(eng, host, table, *rows, now=T0, action=Action.ADDED):
    return eng.ingest(host, table, [(action, r) for r in rows], now)


def test_connect_and_accept_events_attribute_both_sides_exactly() -> None:
    eng = engine()
    feed(eng, A, Table.PROCESS_EVENTS, exec_row(500, T0 - 5, "/usr/bin/curl", "curl http://10.0.0.2/", 1000))
    feed(
        eng,
        A,
        Table.SOCKET_EVENTS,
        sock_row(
            "connect",
            500,
            T0 - 0.001,
            "/usr/bin/curl",
            remote=("10.0.0.2", 80),
            local=("10.0.0.1", 40000),
            protocol=6,
            uid=1000,
        ),
    )
    feed(eng, B, Table.PROCESS_EVENTS, exec_row(700, T0 - 50, "/usr/sbin/nginx", "nginx -g daemon off;", 0))
    feed(
        eng, B, Table.SOCKET_EVENTS, sock_row("accept", 700, T0 + 0.002, "/usr/sbin/nginx", remote=("10.0.0.1", 40000))
    )
    answer = eng.attribute(conn())
    assert answer.community_id == conn().community_id
    o, r = answer.orig, answer.resp
    assert (o.method, o.host_id, o.hostname, o.pid, o.path, o.cmdline, o.uid, o.username, o.parent) == (
        Method.SOCKET_EVENT,
        A,
        "alpha",
        500,
        "/usr/bin/curl",
        "curl http://10.0.0.2/",
        1000,
        "alice",
        1,
    )
    assert (r.method, r.host_id, r.pid, r.path, r.cmdline, r.uid, r.username) == (
        Method.SOCKET_EVENT,
        B,
        700,
        "/usr/sbin/nginx",
        "nginx -g daemon off;",
        0,
        "root",
    )
    assert eng.stats().counters["orig:socket_event"] == 1


def test_no_agent_and_no_socket() -> None:
    eng = engine()
    answer = eng.attribute(conn(orig=("192.0.2.9", 1234)))
    assert answer.orig.reason is Reason.NO_AGENT and answer.orig.host_id is None
    assert "192.0.2.9" in answer.orig.detail
    assert answer.resp.reason is Reason.NO_SOCKET and answer.resp.host_id == B and answer.resp.hostname == "beta"
    assert not answer.orig.attributed


def test_address_shared_by_two_hosts_is_ambiguous_never_a_guess() -> None:
    eng = engine()
    eng.set_host("host-c", hostname="gamma", addresses=["10.0.0.2"], now=T0)  # NAT, or a duplicate address
    feed(eng, B, Table.LISTENING_PORTS, listen_row(700, 80), now=T0 - 10)
    answer = eng.attribute(conn())
    assert answer.resp.reason is Reason.AMBIGUOUS
    assert answer.resp.candidates == (B, "host-c")


def test_listening_port_with_wildcards_and_specific_address_preferred() -> None:
    eng = engine()
    feed(
        eng,
        B,
        Table.PROCESS_EVENTS,
        exec_row(700, T0 - 50, "/usr/sbin/sshd", "sshd -D", 0),
        exec_row(701, T0 - 50, "/usr/bin/other", "other", 1001),
    )
    feed(eng, B, Table.LISTENING_PORTS, listen_row(700, 22, "::"), listen_row(701, 8080, "0.0.0.0"), now=T0 - 10)
    r = eng.attribute(conn(resp=("10.0.0.2", 22))).resp
    assert (r.method, r.pid, r.cmdline, r.username) == (Method.LISTENING_PORT, 700, "sshd -D", "root")  # dual-stack ::
    # a wildcard and a specific binding on one port: the specific one receives (as the kernel chooses)
    feed(eng, B, Table.LISTENING_PORTS, listen_row(700, 8080, "10.0.0.2"), now=T0 - 10)
    assert eng.attribute(conn(resp=("10.0.0.2", 8080))).resp.pid == 700
    # two processes on one port and address (SO_REUSEPORT): ambiguous
    feed(eng, B, Table.LISTENING_PORTS, listen_row(702, 9000), listen_row(703, 9000), now=T0 - 10)
    r = eng.attribute(conn(resp=("10.0.0.2", 9000))).resp
    assert r.reason is Reason.AMBIGUOUS and len(r.candidates) == 2
    # a listener bound to another address does not receive for this one
    feed(eng, B, Table.LISTENING_PORTS, listen_row(704, 9100, "10.9.9.9"), now=T0 - 10)
    assert eng.attribute(conn(resp=("10.0.0.2", 9100))).resp.reason is Reason.NO_SOCKET


def test_listener_removed_before_the_connection_does_not_answer() -> None:
    eng = engine()
    feed(eng, B, Table.LISTENING_PORTS, listen_row(700, 80), now=T0 - 100)
    feed(eng, B, Table.LISTENING_PORTS, listen_row(700, 80), now=T0 - 50, action=Action.REMOVED)
    assert eng.attribute(conn()).resp.reason is Reason.NO_SOCKET
    assert eng.attribute(conn(ts=T0 - 60)).resp.pid == 700  # while it listened


def test_snapshot_batch_replaces_the_table() -> None:
    eng = engine()
    feed(eng, B, Table.LISTENING_PORTS, listen_row(700, 80), listen_row(701, 443), now=T0 - 100, action=Action.SNAPSHOT)
    feed(eng, B, Table.LISTENING_PORTS, listen_row(701, 443), now=T0 - 50, action=Action.SNAPSHOT)
    assert eng.attribute(conn()).resp.reason is Reason.NO_SOCKET  # 80 was gone from the second snapshot
    assert eng.attribute(conn(resp=("10.0.0.2", 443))).resp.pid == 701


def test_pid_reuse_cannot_lend_one_process_to_another() -> None:
    eng = engine()
    # pid 900 ran curl as alice, exited; later pid 900 is a fork of sshd (no exec) connecting out
    feed(eng, A, Table.PROCESS_EVENTS, exec_row(900, T0 - 30, "/usr/bin/curl", "curl x", 1000))
    feed(
        eng,
        A,
        Table.SOCKET_EVENTS,
        sock_row("connect", 900, T0, "/usr/sbin/sshd", remote=("10.0.0.2", 80), local=("10.0.0.1", 40000), uid=0),
    )
    o = eng.attribute(conn()).orig
    assert (o.method, o.pid, o.path, o.uid, o.username) == (Method.SOCKET_EVENT, 900, "/usr/sbin/sshd", 0, "root")
    assert o.cmdline is None  # curl's command line is not sshd's
    # without the uid on the event, the process is not described: PROCESS_GONE, never curl's user
    feed(
        eng,
        A,
        Table.SOCKET_EVENTS,
        sock_row("connect", 900, T0 + 100, "/usr/sbin/sshd", remote=("10.0.0.2", 80), local=("10.0.0.1", 40001)),
    )
    o = eng.attribute(conn(ts=T0 + 100, orig=("10.0.0.1", 40001))).orig
    assert o.reason is Reason.PROCESS_GONE and o.pid == 900 and o.path == "/usr/sbin/sshd" and o.uid is None


def test_an_exec_right_after_the_connect_is_not_the_connecting_image() -> None:
    """A shell connects, then execs curl in the same pid half a second later: the connect was
    the shell's, with the shell's command line."""
    eng = engine()
    feed(
        eng,
        A,
        Table.PROCESS_EVENTS,
        exec_row(960, T0 - 2, "/usr/bin/bash", "bash -c x", 1000),
        exec_row(960, T0 + 0.5, "/usr/bin/curl", "curl y", 1000),
    )
    feed(
        eng,
        A,
        Table.SOCKET_EVENTS,
        sock_row("connect", 960, T0, "/usr/bin/bash", remote=("10.0.0.2", 80), local=("10.0.0.1", 40000)),
    )
    o = eng.attribute(conn()).orig
    assert (o.method, o.path, o.cmdline, o.username) == (Method.SOCKET_EVENT, "/usr/bin/bash", "bash -c x", "alice")


def test_process_start_time_tells_incarnations_apart() -> None:
    eng = engine()
    # processes rows: pid 950 started at T0-100 (python as alice) ended; a new pid 950 at T0-10 (python as bob)
    old = {
        "pid": 950,
        "start_time": int(T0 - 100),
        "path": "/usr/bin/python3",
        "cmdline": "python3 a.py",
        "uid": 1000,
        "parent": 1,
    }
    new = {
        "pid": 950,
        "start_time": int(T0 - 10),
        "path": "/usr/bin/python3",
        "cmdline": "python3 b.py",
        "uid": 1001,
        "parent": 1,
    }
    feed(eng, A, Table.PROCESSES, old, now=T0 - 90)
    feed(eng, A, Table.PROCESSES, old, now=T0 - 20, action=Action.REMOVED)
    feed(eng, A, Table.PROCESSES, new, now=T0 - 5)
    row = sock_row(
        "connect",
        950,
        T0,
        "/usr/bin/python3",
        remote=("10.0.0.2", 80),
        local=("10.0.0.1", 40000),
        process_start_time=int(T0 - 10),
    )
    feed(eng, A, Table.SOCKET_EVENTS, row)
    o = eng.attribute(conn()).orig
    assert (o.pid, o.cmdline, o.uid, o.username, o.process_start) == (950, "python3 b.py", 1001, "bob", int(T0 - 10))
    # the same event without the start time, at a moment the old incarnation was gone: the new one
    row2 = sock_row("connect", 950, T0 + 1, "/usr/bin/python3", remote=("10.0.0.2", 80), local=("10.0.0.1", 40001))
    feed(eng, A, Table.SOCKET_EVENTS, row2)
    o = eng.attribute(conn(ts=T0 + 1, orig=("10.0.0.1", 40001))).orig
    assert (o.cmdline, o.username) == ("python3 b.py", "bob")


def test_connect_without_local_port_matches_by_time_or_is_ambiguous() -> None:
    eng = engine(clock_skew=0.5)
    feed(
        eng,
        A,
        Table.PROCESS_EVENTS,
        exec_row(501, T0 - 1, "/usr/bin/wget", "wget x", 1000),
        exec_row(502, T0 - 1, "/usr/bin/curl", "curl y", 1001),
    )
    feed(eng, A, Table.SOCKET_EVENTS, sock_row("connect", 501, T0, "/usr/bin/wget", remote=("10.0.0.2", 80)))
    feed(eng, A, Table.SOCKET_EVENTS, sock_row("connect", 502, T0 + 2, "/usr/bin/curl", remote=("10.0.0.2", 80)))
    o = eng.attribute(conn(ts=T0 + 0.001)).orig
    assert (o.method, o.pid, o.username) == (Method.SOCKET_EVENT_TIME, 501, "alice")
    o = eng.attribute(conn(ts=T0 + 2.001, orig=("10.0.0.1", 40001))).orig
    assert (o.method, o.pid) == (Method.SOCKET_EVENT_TIME, 502)
    # two processes connect to the same endpoint within the clock skew: ambiguous
    feed(eng, A, Table.SOCKET_EVENTS, sock_row("connect", 501, T0 + 10, "/usr/bin/wget", remote=("10.0.0.2", 80)))
    feed(eng, A, Table.SOCKET_EVENTS, sock_row("connect", 502, T0 + 10.2, "/usr/bin/curl", remote=("10.0.0.2", 80)))
    o = eng.attribute(conn(ts=T0 + 10.1)).orig
    assert o.reason is Reason.AMBIGUOUS and set(o.candidates) == {"pid 501 (/usr/bin/wget)", "pid 502 (/usr/bin/curl)"}
    # a connect whose local port is known and differs is not this connection
    feed(
        eng,
        A,
        Table.SOCKET_EVENTS,
        sock_row("connect", 502, T0 + 20, "/usr/bin/curl", remote=("10.0.0.2", 80), local=("10.0.0.1", 40999)),
    )
    assert eng.attribute(conn(ts=T0 + 20, orig=("10.0.0.1", 40000))).orig.reason is Reason.NO_SOCKET


def test_icmp_is_never_matched_to_a_socket() -> None:
    eng = engine()
    # a connect to port 3 (unknown protocol, as audit reports it) must not answer for ICMP type 3 code 3
    feed(eng, A, Table.SOCKET_EVENTS, sock_row("connect", 501, T0, "/x", remote=("10.0.0.2", 3), uid=0))
    answer = eng.attribute(Connection.from_zeek(T0, "CIcmp", "10.0.0.1", 3, "10.0.0.2", 3, "icmp"))
    assert answer.orig.reason is Reason.NO_SOCKET and "icmp has no ports" in answer.orig.detail
    assert answer.community_id.startswith("1:")


def test_whole_second_times_widen_the_window() -> None:
    eng = engine(clock_skew=0.1)
    row = sock_row("connect", 501, T0 + 0.9, "/usr/bin/wget", remote=("10.0.0.2", 80), uid=1000)
    del row["timestamp"]  # osquery's rows: time in whole seconds
    feed(eng, A, Table.SOCKET_EVENTS, row)
    assert eng.attribute(conn(ts=T0 + 0.9)).orig.pid == 501
    assert eng.attribute(conn(ts=T0 + 1.5)).orig.reason is Reason.NO_SOCKET


def test_refused_connects_are_attempts_zeek_sees() -> None:
    eng = engine()
    feed(
        eng,
        A,
        Table.SOCKET_EVENTS,
        sock_row("connect", 501, T0, "/usr/bin/nc", remote=("10.0.0.2", 81), status="failed", uid=1000),
    )
    answer = eng.attribute(conn(resp=("10.0.0.2", 81)))  # Zeek: REJ (SYN, RST)
    assert (answer.orig.method, answer.orig.pid, answer.orig.username) == (Method.SOCKET_EVENT_TIME, 501, "alice")
    assert answer.resp.reason is Reason.NO_SOCKET


def test_failed_and_non_ip_socket_events_are_refused_and_counted() -> None:
    eng = engine()
    used = feed(
        eng,
        A,
        Table.SOCKET_EVENTS,
        sock_row("accept", 501, T0, "/x", remote=("10.0.0.2", 80), status="failed"),
        sock_row("accept", 501, T0, "/x", status="no_client"),
        {**sock_row("connect", 501, T0, "/x"), "family": 1, "remote_address": "/run/x.sock"},
        sock_row("connect", 501, T0, "/x", remote=("10.0.0.2", 80)) | {"pid": None},
        sock_row("connect", 501, T0, "/x", remote=("10.0.0.2", 80)) | {"time": None, "timestamp": None},
        sock_row("bind", 501, T0, "/x", local=("0.0.0.0", 0)),
        sock_row("connect", 501, T0, "/x", remote=("10.0.0.2", 80), status="in_progress"),
    )
    assert used == 1
    counters = eng.stats().counters
    assert counters["refused_socket_events:failed call"] == 2
    assert counters["refused_socket_events:not an IP socket"] == 1
    assert counters["refused_socket_events:no pid"] == 1
    assert counters["refused_socket_events:no time"] == 1
    assert counters["refused_socket_events:bind without a port"] == 1
    assert counters["ingested_socket_events"] == 1


def test_ipv4_mapped_and_ipv6_loopback() -> None:
    eng = engine()
    # a dual-stack server accepted an IPv4 peer: the agent prints ::ffff:10.0.0.1
    feed(eng, B, Table.SOCKET_EVENTS, sock_row("accept", 700, T0, "/srv", remote=("::ffff:10.0.0.1", 40000), uid=33))
    assert eng.attribute(conn()).resp.pid == 700
    feed(
        eng,
        A,
        Table.SOCKET_EVENTS,
        sock_row("connect", 800, T0, "/c", remote=("::1", 8080), local=("::1", 50000), uid=1000),
    )
    feed(eng, A, Table.LISTENING_PORTS, listen_row(801, 8080, "::1", uid=1001, path="/s", cmdline="s"), now=T0 - 1)
    answer = eng.attribute(conn(orig=("::1", 50000), resp=("::1", 8080)))
    assert (answer.orig.pid, answer.orig.username) == (800, "alice")
    assert (answer.resp.pid, answer.resp.method, answer.resp.username, answer.resp.cmdline) == (
        801,
        Method.LISTENING_PORT,
        "bob",
        "s",
    )
    # all of 127/8 belongs to the host that reports 127.0.0.1/8
    assert eng.owners("127.0.0.5", T0) == [A]
    assert eng.owners("127.0.0.5", T0) == eng.owners("127.0.0.1", T0)


def test_open_socket_snapshot_and_udp_bound_sockets() -> None:
    eng = engine()
    row = {
        "pid": 600,
        "fd": 4,
        "socket": 77,
        "family": 2,
        "protocol": 6,
        "local_address": "10.0.0.1",
        "local_port": 40000,
        "remote_address": "10.0.0.2",
        "remote_port": 80,
        "state": "ESTABLISHED",
        "net_namespace": "1",
        "start_time": int(T0 - 500),
        "path": "/usr/bin/ssh",
        "cmdline": "ssh b",
        "uid": 1000,
        "parent": 1,
    }
    feed(eng, A, Table.PROCESS_OPEN_SOCKETS, row, now=T0 + 30)  # first seen after the connection began
    o = eng.attribute(conn()).orig
    assert (o.method, o.pid, o.cmdline, o.username) == (Method.OPEN_SOCKET, 600, "ssh b", "alice")
    # UDP from an unconnected socket bound on its port (resolvers, NTP)
    udp = {
        "pid": 601,
        "fd": 5,
        "socket": 78,
        "family": 2,
        "protocol": 17,
        "local_address": "0.0.0.0",
        "local_port": 123,
        "remote_address": "0.0.0.0",
        "remote_port": 0,
        "state": "",
        "net_namespace": "1",
        "uid": 0,
        "path": "/usr/sbin/ntpd",
    }
    feed(eng, A, Table.PROCESS_OPEN_SOCKETS, udp, now=T0 - 10)
    o = eng.attribute(conn(orig=("10.0.0.1", 123), resp=("10.0.0.2", 123), proto=17)).orig
    assert (o.method, o.pid, o.path) == (Method.OPEN_SOCKET, 601, "/usr/sbin/ntpd")
    # the same socket is the responder for a peer that asks it
    r = eng.attribute(conn(orig=("10.0.0.2", 5555), resp=("10.0.0.1", 123), proto=17)).resp
    assert (r.method, r.pid) == (Method.LISTENING_PORT, 601)
    # a TCP connection does not match a UDP socket
    assert eng.attribute(conn(orig=("10.0.0.2", 5555), resp=("10.0.0.1", 123))).resp.reason is Reason.NO_SOCKET


def test_bind_event_for_a_server_too_short_lived_for_a_snapshot() -> None:
    eng = engine()
    feed(eng, B, Table.PROCESS_EVENTS, exec_row(710, T0 - 2, "/usr/bin/nc", "nc -l 7000", 1001))
    feed(eng, B, Table.SOCKET_EVENTS, sock_row("bind", 710, T0 - 1, "/usr/bin/nc", local=("0.0.0.0", 7000)))
    r = eng.attribute(conn(resp=("10.0.0.2", 7000))).resp
    assert (r.method, r.pid, r.username) == (Method.BIND_EVENT, 710, "bob")
    # a processes snapshot that shows the pid ended before the connection: no answer from the bind
    feed(
        eng,
        B,
        Table.PROCESSES,
        {
            "pid": 710,
            "start_time": int(T0 - 2),
            "path": "/usr/bin/nc",
            "cmdline": "nc -l 7000",
            "uid": 1001,
            "parent": 1,
        },
        now=T0 - 1,
    )
    feed(
        eng,
        B,
        Table.PROCESSES,
        {
            "pid": 710,
            "start_time": int(T0 - 2),
            "path": "/usr/bin/nc",
            "cmdline": "nc -l 7000",
            "uid": 1001,
            "parent": 1,
        },
        now=T0 + 5,
        action=Action.REMOVED,
    )
    assert eng.attribute(conn(ts=T0 + 10, resp=("10.0.0.2", 7000))).resp.reason is Reason.NO_SOCKET


def test_interface_addresses_snapshot_and_removal() -> None:
    eng = AttributionEngine()
    feed(
        eng,
        A,
        Table.INTERFACE_ADDRESSES,
        {"interface": "eth0", "address": "192.0.2.1", "mask": "255.255.255.0"},
        {"interface": "lo", "address": "127.0.0.1", "mask": "255.0.0.0"},
        now=T0 - 100,
        action=Action.SNAPSHOT,
    )
    assert eng.owners("192.0.2.1", T0) == [A] and eng.owners("127.9.9.9", T0) == [A]
    assert eng.owners("192.0.2.2", T0) == []  # a neighbour on the subnet is not this host
    feed(
        eng,
        A,
        Table.INTERFACE_ADDRESSES,
        {"interface": "lo", "address": "127.0.0.1", "mask": "255.0.0.0"},
        now=T0 - 50,
        action=Action.SNAPSHOT,
    )
    assert eng.owners("192.0.2.1", T0) == []  # gone at T0-50
    assert eng.owners("192.0.2.1", T0 - 60) == [A]  # but it was this host's before
    eng.expire(T0 + 4000)
    assert eng.owners("192.0.2.1", T0 - 60) == []


def test_expiry_and_bounds_are_counted() -> None:
    eng = engine(max_age=100.0, host_limits=HostLimits(max_events=10, max_snapshot_sockets=5, max_processes=5))
    for i in range(15):
        feed(
            eng,
            A,
            Table.SOCKET_EVENTS,
            sock_row("connect", 100 + i, T0 + i, "/x", remote=("10.0.0.2", 80), local=("10.0.0.1", 30000 + i), uid=0),
        )
        feed(eng, A, Table.PROCESS_EVENTS, exec_row(100 + i, T0 + i, "/x", "x", 0))
        feed(eng, A, Table.LISTENING_PORTS, listen_row(100 + i, 1000 + i), now=T0 + i)
    stats = eng.stats()
    assert (stats.events, stats.processes, stats.snapshot_sockets) == (10, 5, 5)
    assert stats.counters["evicted_events"] == 5
    assert stats.counters["evicted_processes"] == 10
    assert stats.counters["evicted_snapshot_sockets"] == 10
    assert eng.attribute(conn(ts=T0 + 1, orig=("10.0.0.1", 30001))).orig.reason is Reason.NO_SOCKET  # evicted
    assert eng.attribute(conn(ts=T0 + 14, orig=("10.0.0.1", 30014))).orig.pid == 114
    dropped = eng.expire(T0 + 110)  # events older than T0+10 go; processes superseded or ended
    assert dropped >= 5 and eng.stats().events == 5
    assert eng.stats().counters["expired"] == dropped


def test_max_hosts_evicts_the_host_not_heard_from_longest() -> None:
    eng = AttributionEngine(EngineConfig(max_hosts=2))
    eng.set_host("h1", addresses=["10.1.0.1"], now=T0)
    eng.set_host("h2", addresses=["10.1.0.2"], now=T0 + 1)
    eng.set_host("h3", addresses=["10.1.0.3"], now=T0 + 2)
    assert sorted(eng.hosts) == ["h2", "h3"]
    assert eng.owners("10.1.0.1", T0) == []
    assert eng.stats().counters["evicted_hosts"] == 1


def test_state_round_trip_answers_the_same(tmp_path) -> None:
    eng = engine()
    feed(eng, A, Table.PROCESS_EVENTS, exec_row(500, T0 - 5, "/usr/bin/curl", "curl x", 1000))
    feed(
        eng,
        A,
        Table.SOCKET_EVENTS,
        sock_row("connect", 500, T0, "/usr/bin/curl", remote=("10.0.0.2", 80), local=("10.0.0.1", 40000)),
    )
    feed(eng, B, Table.LISTENING_PORTS, listen_row(700, 80, path="/srv", uid=33), now=T0 - 10)
    feed(
        eng,
        B,
        Table.PROCESSES,
        {"pid": 700, "start_time": int(T0 - 200), "path": "/srv", "cmdline": "srv", "uid": 33, "parent": 1},
        now=T0 - 10,
    )
    before = eng.attribute(conn())
    state = json.loads(json.dumps(eng.to_state()))  # plain lists and dicts only
    again = AttributionEngine.from_state(state)
    assert again.attribute(conn()) == before
    assert again.stats().events == eng.stats().events and again.stats().processes == eng.stats().processes
    # a row removed after the restore still finds its entry
    feed(
        again,
        B,
        Table.PROCESSES,
        {"pid": 700, "start_time": int(T0 - 200), "path": "/srv", "cmdline": "srv", "uid": 33, "parent": 1},
        now=T0 + 1,
        action=Action.REMOVED,
    )
    assert not again.hosts[B].proc_rows


@pytest.mark.parametrize("state", [{}, {"version": 99}, [], {"version": 1, "hosts": [{"nohost": 1}]}])
def test_bad_state_is_a_clear_error(state) -> None:
    with pytest.raises(StateError, match="attribution state"):
        AttributionEngine.from_state(state)


def test_connection_checks_its_fields() -> None:
    c = Connection.from_zeek(T0, "CAbc", "::ffff:10.0.0.1", 1, "10.0.0.2", 2, "tcp")
    assert c.orig_h == "10.0.0.1" and c.proto == 6 and c.proto_name == "tcp"
    assert Connection.from_zeek(T0, "C", "fe80::1", 128, "fe80::2", 129, "icmp").proto == 58
    with pytest.raises(ValueError, match="orig_h 'nope' is not an IP address"):
        Connection(T0, "C", "nope", 1, "10.0.0.2", 2, 6)
    with pytest.raises(ValueError, match="unknown protocol 'gre'"):
        Connection.from_zeek(T0, "C", "10.0.0.1", 1, "10.0.0.2", 2, "gre")
    with pytest.raises(ValueError, match="resp_p 70000"):
        Connection(T0, "C", "10.0.0.1", 1, "10.0.0.2", 70000, 6)


def test_user_connections_view() -> None:
    eng = engine()
    feed(eng, A, Table.PROCESS_EVENTS, exec_row(500, T0 - 5, "/usr/bin/curl", "curl x", 1000))
    feed(
        eng,
        A,
        Table.SOCKET_EVENTS,
        sock_row("connect", 500, T0, "/usr/bin/curl", remote=("10.0.0.2", 80), local=("10.0.0.1", 40000), protocol=6),
    )
    feed(eng, A, Table.SOCKET_EVENTS, sock_row("bind", 500, T0, "/usr/bin/curl", local=("0.0.0.0", 5000)))
    views = list(eng.user_connections())
    assert len(views) == 1
    v = views[0]
    assert (v.host_id, v.hostname, v.pid, v.path, v.cmdline, v.uid, v.username) == (
        A,
        "alpha",
        500,
        "/usr/bin/curl",
        "curl x",
        1000,
        "alice",
    )
    assert (v.remote_address, v.remote_port, v.local_port, v.protocol) == ("10.0.0.2", 80, 40000, 6)
    assert v.community_id == conn().community_id
    assert list(eng.user_connections(since=T0 + 1)) == []


def test_answers_have_a_method_or_a_reason() -> None:
    from collector.attribution import SideAttribution

    with pytest.raises(ValueError, match="either a method or a reason"):
        SideAttribution(Side.ORIG)
    with pytest.raises(ValueError, match="either a method or a reason"):
        SideAttribution(Side.ORIG, method=Method.SOCKET_EVENT, reason=Reason.NO_AGENT)


def test_host_clock_is_learned_from_exact_matches() -> None:
    """A host whose clock runs 0.3 s ahead of Zeek's: exact matches teach the engine the
    offset, and connects without a local port then match in a window of the learned spread."""
    eng = engine()  # clock_skew 1.0 s
    ahead = 0.3
    for i in range(8):
        ts = T0 + i
        feed(
            eng,
            A,
            Table.SOCKET_EVENTS,
            sock_row(
                "connect",
                600 + i,
                ts + ahead - 0.001 * (i % 3),
                "/x",
                remote=("10.0.0.2", 80),
                local=("10.0.0.1", 30000 + i),
                uid=0,
            ),
        )
        assert eng.attribute(conn(ts=ts, orig=("10.0.0.1", 30000 + i))).orig.method is Method.SOCKET_EVENT
    assert eng.hosts[A].clock_estimate() == pytest.approx((-ahead + 0.001, 0.001), abs=1e-6)
    # two processes connect 150 ms apart; the agent read neither socket in time
    t = T0 + 100
    for pid, dt in ((701, 0.0), (702, 0.15)):
        feed(
            eng,
            A,
            Table.SOCKET_EVENTS,
            sock_row("connect", pid, t + dt + ahead, "/y", remote=("10.0.0.2", 80), uid=1000),
        )
    first = eng.attribute(conn(ts=t, orig=("10.0.0.1", 41000))).orig
    second = eng.attribute(conn(ts=t + 0.15, orig=("10.0.0.1", 41001))).orig
    assert (first.method, first.pid, second.method, second.pid) == (
        Method.SOCKET_EVENT_TIME,
        701,
        Method.SOCKET_EVENT_TIME,
        702,
    )
    # the same question without the learned clock: both fit the 1 s skew, so neither is named
    fresh = AttributionEngine.from_state(
        {**eng.to_state(), "hosts": [{**h, "offsets": []} for h in eng.to_state()["hosts"]]}
    )
    assert fresh.attribute(conn(ts=t, orig=("10.0.0.1", 41000))).orig.reason is Reason.AMBIGUOUS
    # the learned clock survives persistence
    assert AttributionEngine.from_state(eng.to_state()).hosts[A].clock_estimate() == eng.hosts[A].clock_estimate()


def test_a_reused_four_tuple_never_names_the_earlier_process() -> None:
    """Loopback reuses a TIME_WAIT 4-tuple at once: when the port matches only an earlier connect
    and a connect whose port the host could not read fits the connection's time, both are
    candidates (ambiguous), never the earlier process on its own."""
    eng = engine(clock_skew=1.0)
    feed(
        eng,
        A,
        Table.PROCESS_EVENTS,
        exec_row(501, T0 - 1, "/usr/bin/wget", "wget x", 1000),
        exec_row(502, T0 - 1, "/usr/bin/curl", "curl y", 1001),
    )
    for i in range(8):  # exact matches teach the engine this host's clock (Zeek sees it 3 ms later)
        local = ("10.0.0.1", 41000 + i)
        feed(
            eng,
            A,
            Table.SOCKET_EVENTS,
            sock_row("connect", 501, T0 + i, "/usr/bin/wget", remote=("10.0.0.2", 80), local=local),
        )
        o = eng.attribute(conn(ts=T0 + i + 0.003, orig=local)).orig
        assert (o.method, o.pid) == (Method.SOCKET_EVENT, 501)
    remote = ("10.0.0.2", 80)
    feed(
        eng,
        A,
        Table.SOCKET_EVENTS,
        sock_row("connect", 501, T0 + 10, "/usr/bin/wget", remote=remote, local=("10.0.0.1", 40000)),
    )
    feed(eng, A, Table.SOCKET_EVENTS, sock_row("connect", 502, T0 + 10.4, "/usr/bin/curl", remote=remote))
    o = eng.attribute(conn(ts=T0 + 10.403, orig=("10.0.0.1", 40000))).orig
    assert o.reason is Reason.AMBIGUOUS, o
    assert set(o.candidates) == {"pid 501 (/usr/bin/wget)", "pid 502 (/usr/bin/curl)"}
    # the earlier connection itself is still named exactly
    o = eng.attribute(conn(ts=T0 + 10.003, orig=("10.0.0.1", 40000))).orig
    assert (o.method, o.pid) == (Method.SOCKET_EVENT, 501)
