"""listening_ports: listeners the test opens (TCP 127.0.0.1 / ::1, UDP, UNIX path and abstract, a netns)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid

import pytest

from tables import listening_ports
from tables.sqlite import Database
from tests._table_checks import assert_column_types

SPEC = listening_ports.SPEC


@pytest.fixture(scope="module")
def db() -> Database:
    return Database([SPEC])


@pytest.fixture
def listeners(tmp_path):
    made: dict[str, socket.socket] = {}

    def add(name: str, family: int, kind: int, address, listen: bool = True) -> None:
        s = socket.socket(family, kind)
        s.bind(address)
        if listen:
            s.listen()
        made[name] = s

    add("tcp4", socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 0))
    add("tcp6", socket.AF_INET6, socket.SOCK_STREAM, ("::1", 0))
    add("udp4", socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 0), listen=False)
    add("udp6", socket.AF_INET6, socket.SOCK_DGRAM, ("::1", 0), listen=False)
    add("unix", socket.AF_UNIX, socket.SOCK_STREAM, str(tmp_path / "l.sock"))
    add("abstract", socket.AF_UNIX, socket.SOCK_STREAM, f"\0agentd-lp-{uuid.uuid4().hex[:8]}")
    add("bound_tcp", socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 0), listen=False)  # not listening
    made["raw"] = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    made["raw6"] = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    made["packet"] = socket.socket(17, socket.SOCK_RAW, socket.htons(0x0003))  # AF_PACKET, ETH_P_ALL
    client = socket.create_connection(made["tcp4"].getsockname())
    server, _ = made["tcp4"].accept()
    made["client"], made["server"] = client, server
    yield made
    for s in made.values():
        s.close()


def _inode(s: socket.socket) -> int:
    return os.fstat(s.fileno()).st_ino


@pytest.mark.parametrize("where", ["", f"WHERE pid = {os.getpid()}"])
def test_listeners_appear(db, listeners, where):
    rows = {r["socket"]: r for r in db.execute(f"SELECT * FROM listening_ports {where}").dicts()}
    pid = os.getpid()
    expect = {
        "tcp4": (6, 2, "127.0.0.1"),
        "tcp6": (6, 10, "::1"),
        "udp4": (17, 2, "127.0.0.1"),
        "udp6": (17, 10, "::1"),
    }
    for name, (protocol, family, address) in expect.items():
        s = listeners[name]
        r = rows[_inode(s)]
        assert (r["pid"], r["fd"], r["port"], r["protocol"], r["family"], r["address"], r["path"]) == (
            pid,
            s.fileno(),
            s.getsockname()[1],
            protocol,
            family,
            address,
            "",
        )
    # osquery: UNIX sockets have port 0 and socket 0 (found here by fd)
    by_fd = {(r["pid"], r["fd"]): r for r in db.execute(f"SELECT * FROM listening_ports {where}").dicts()}
    unix = by_fd[(pid, listeners["unix"].fileno())]
    assert (unix["family"], unix["path"], unix["port"], unix["socket"]) == (1, listeners["unix"].getsockname(), 0, 0)
    abstract = by_fd[(pid, listeners["abstract"].fileno())]
    assert (abstract["path"], abstract["socket"]) == ("@" + listeners["abstract"].getsockname()[1:].decode(), 0)
    # raw sockets listen (remote port 0): protocol 255 and their own protocol as the port (osquery)
    raw, raw6 = rows[_inode(listeners["raw"])], rows[_inode(listeners["raw6"])]
    assert (raw["pid"], raw["fd"], raw["protocol"], raw["port"], raw["family"], raw["address"]) == (
        pid,
        listeners["raw"].fileno(),
        255,
        socket.IPPROTO_ICMP,
        2,
        "0.0.0.0",
    )
    assert (raw6["protocol"], raw6["port"], raw6["family"], raw6["address"]) == (255, socket.IPPROTO_ICMPV6, 10, "::")
    packet = rows[_inode(listeners["packet"])]
    assert (packet["pid"], packet["family"], packet["protocol"], packet["port"], packet["address"]) == (
        pid,
        17,
        3,
        0,
        "",
    )
    for name in ("bound_tcp", "client", "server"):  # not listening
        assert _inode(listeners[name]) not in rows
    ns = str(os.stat("/proc/self/ns/net").st_ino)
    assert rows[_inode(listeners["tcp4"])]["net_namespace"] == ns


def test_closed_listener_disappears(db):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    assert db.execute(f"SELECT pid FROM listening_ports WHERE port = {port}").dicts() == [{"pid": os.getpid()}]
    s.close()
    assert db.execute(f"SELECT pid FROM listening_ports WHERE port = {port}").dicts() == []


def test_listener_in_created_netns(db):
    name = f"agentd-lp-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"ip netns add refused: {made.stderr.strip()}")
    child = None
    try:
        code = (
            "import socket,time; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0',0));"
            "print(s.getsockname()[1], flush=True); time.sleep(300)"
        )
        child = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
        )
        port = int(child.stdout.readline())
        ns_inode = str(os.stat(f"/run/netns/{name}").st_ino)
        rows = db.execute(
            f"SELECT pid, protocol, family, net_namespace FROM listening_ports WHERE port = {port}"
        ).dicts()
        assert {"pid": child.pid, "protocol": 17, "family": 2, "net_namespace": ns_inode} in rows
    finally:
        if child is not None:
            child.kill()
            child.wait()
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_column_types(db, listeners):
    result = db.execute("SELECT * FROM listening_ports")
    assert result.columns == list(SPEC.column_names)
    assert result.rows
    assert_column_types(SPEC, result.dicts())
