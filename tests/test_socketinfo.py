"""eventsources.socketinfo: the socket behind an event, on real sockets of this process and others."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from eventsources.socketinfo import Lookup, SocketEnricher, find_inode, lookup, process_start_time, socket_inode
from protocol.community_id import community_id
from tables import procfs as pf

TCP_TEXT = (
    b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    b"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0 100 0 0 10 0\n"
    b"   1: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  4242        0 777 1 0 20 4 30 10 -1\n"
)


def test_find_inode_reads_only_the_matching_line() -> None:
    info = find_inode(TCP_TEXT, 777, socket.AF_INET, socket.IPPROTO_TCP)
    assert info is not None
    assert (info.local_address, info.local_port, info.remote_address, info.remote_port, info.state) == (
        "127.0.0.1",
        50000,
        "127.0.0.1",
        8080,
        "ESTABLISHED",
    )
    # 4242 appears as a uid on the second line and as the inode on the first: the inode wins
    assert find_inode(TCP_TEXT, 4242, socket.AF_INET, socket.IPPROTO_TCP).local_port == 8080
    assert find_inode(TCP_TEXT, 1000, socket.AF_INET, socket.IPPROTO_TCP) is None  # only a uid


@pytest.fixture
def tcp_pair():
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    try:
        yield server, client, accepted
    finally:
        for s in (server, client, accepted):
            s.close()


def ends(info) -> tuple:
    return (
        info.inode,
        info.family,
        info.protocol,
        info.local_address,
        info.local_port,
        info.remote_address,
        info.remote_port,
    )


@pytest.mark.parametrize("use_pidfd", [True, False], ids=["pidfd_getfd", "proc"])
def test_lookup_of_a_connected_socket(tcp_pair, use_pidfd) -> None:
    _, client, accepted = tcp_pair
    found = lookup(os.getpid(), client.fileno(), socket.AF_INET, use_pidfd=use_pidfd)
    assert found.outcome is Lookup.FOUND
    info = found.info
    assert (info.local_address, info.local_port) == client.getsockname()
    assert (info.remote_address, info.remote_port) == client.getpeername()
    assert info.protocol == socket.IPPROTO_TCP and info.inode == os.fstat(client.fileno()).st_ino
    assert lookup(os.getpid(), accepted.fileno(), socket.AF_INET).info.remote_port == client.getsockname()[1]


def test_both_paths_agree_for_another_process() -> None:
    """Another process's socket, through its descriptor copy and through /proc: the same 5-tuple."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        code = f"import socket, sys; s = socket.create_connection(('127.0.0.1', {server.getsockname()[1]})); print(s.fileno(), flush=True); sys.stdin.read()"
        child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            fd = int(child.stdout.readline())
            a = lookup(child.pid, fd, socket.AF_INET)
            b = lookup(child.pid, fd, socket.AF_INET, use_pidfd=False)
        finally:
            child.communicate("")
    assert a.outcome is b.outcome is Lookup.FOUND
    assert ends(a.info) == ends(b.info)
    assert lookup(child.pid, fd, socket.AF_INET).outcome is Lookup.GONE


def test_lookup_outcomes_without_a_socket(tmp_path) -> None:
    with open(tmp_path / "f", "w") as f:
        assert socket_inode(os.getpid(), f.fileno()) is Lookup.NOT_A_SOCKET
        assert lookup(os.getpid(), f.fileno(), socket.AF_INET).outcome is Lookup.NOT_A_SOCKET
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert lookup(int(dead.stdout), 3, socket.AF_INET).outcome is Lookup.GONE
    unix_a, unix_b = socket.socketpair()
    with unix_a, unix_b:  # a socket, but no TCP/UDP one
        assert lookup(os.getpid(), unix_a.fileno(), socket.AF_INET).outcome is Lookup.NOT_A_SOCKET
        assert lookup(os.getpid(), unix_a.fileno(), socket.AF_INET, use_pidfd=False).outcome is Lookup.NOT_LISTED


def connect_row(sock: socket.socket, pid: int | None = None, **over) -> dict:
    family = sock.family
    peer = sock.getpeername()
    row = {
        "action": "connect",
        "pid": pid or os.getpid(),
        "fd": str(sock.fileno()),
        "family": int(family),
        "protocol": 0,
        "local_address": None,
        "local_port": 0,  # as the audit row builder leaves it (osquery's default)
        "remote_address": peer[0],
        "remote_port": peer[1],
        "status": "succeeded",
    }
    row.update(over)
    return row


def test_enricher_completes_a_connect_row(tcp_pair) -> None:
    _, client, _ = tcp_pair
    enricher = SocketEnricher(boot_time=pf.boot_time("/proc"))
    row = connect_row(client)
    enricher.enrich(row, 0, now=1.0)
    local = client.getsockname()
    assert (row["local_address"], row["local_port"], row["protocol"]) == (local[0], local[1], 6)
    assert row["community_id"] == community_id(6, local[0], "127.0.0.1", local[1], client.getpeername()[1])
    assert row["process_start_time"] == process_start_time(os.getpid(), pf.boot_time("/proc"))
    assert abs(row["process_start_time"] - __import__("psutil").Process().create_time()) <= 1
    assert enricher.counts == {"found": 1}


def test_enricher_refuses_a_reused_descriptor(tcp_pair) -> None:
    _, client, _ = tcp_pair
    enricher = SocketEnricher(boot_time=pf.boot_time("/proc"))
    row = connect_row(client, remote_port=client.getpeername()[1] + 1)  # the event was for another peer
    enricher.enrich(row, 0, now=1.0)
    assert row["local_port"] == 0 and row["protocol"] == 0 and "community_id" not in row
    assert enricher.counts == {"mismatch": 1}


def test_enricher_accept_uses_the_returned_descriptor(tcp_pair) -> None:
    server, client, accepted = tcp_pair
    enricher = SocketEnricher(boot_time=pf.boot_time("/proc"))
    peer = client.getsockname()
    row = {
        "action": "accept",
        "pid": os.getpid(),
        "fd": str(server.fileno()),
        "family": 2,
        "protocol": 0,
        "remote_address": peer[0],
        "remote_port": peer[1],
        "status": "succeeded",
    }
    enricher.enrich(row, accepted.fileno(), now=1.0)
    assert (row["local_address"], row["local_port"]) == accepted.getsockname()
    assert row["community_id"] == community_id(6, peer[0], "127.0.0.1", peer[1], accepted.getsockname()[1])


def test_enricher_ipv6_udp_and_bind() -> None:
    enricher = SocketEnricher(boot_time=pf.boot_time("/proc"))
    try:
        server = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        server.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    client = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    with server, client:
        client.connect(server.getsockname()[:2])
        row = connect_row(client)
        enricher.enrich(row, 0, now=1.0)
        assert (row["local_address"], row["local_port"], row["protocol"]) == ("::1", client.getsockname()[1], 17)
        assert row["community_id"] == community_id(17, "::1", "::1", client.getsockname()[1], server.getsockname()[1])
        bind = {"action": "bind", "pid": os.getpid(), "fd": str(server.fileno()), "family": 10, "protocol": 0}
        bind |= {"local_address": "::1", "local_port": 0, "status": "succeeded"}  # bind to port 0: the kernel chose
        enricher.enrich(bind, 0, now=1.0)
        assert (bind["local_port"], bind["protocol"]) == (server.getsockname()[1], 17)
        assert "community_id" not in bind


def test_enricher_budget_and_failed_calls(tcp_pair) -> None:
    _, client, _ = tcp_pair
    enricher = SocketEnricher(boot_time=pf.boot_time("/proc"), budget=2)
    rows = [connect_row(client) for _ in range(4)]
    for row in rows[:3]:
        enricher.enrich(row, 0, now=10.0)
    enricher.enrich(rows[3], 0, now=11.0)  # a second later the bucket has refilled
    assert [r["local_port"] != 0 for r in rows] == [True, True, False, True]
    assert enricher.counts == {"found": 3, "over_budget": 1}
    failed = connect_row(client, status="failed")
    enricher.enrich(failed, 0, now=12.0)
    assert failed["local_port"] == 0 and enricher.counts["found"] == 3
