"""process_open_sockets: real sockets the test opens (loopback, UNIX, a netns it creates) and canned /proc/net text."""

from __future__ import annotations

import ast
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

from tables import process_open_sockets as pos
from tables.sqlite import Database
from tests._table_checks import assert_column_types

SPEC = pos.SPEC

TCP4 = b"""  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 31338 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:C350 0100007F:1F90 06 00000000:00000000 03:00001234 00000000     0        0 0 3 0000000000000000
   3: garbage line
"""

TCP6 = b"""  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000200007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 100 0 0 10 0
   2: B80D0120000000000000000001000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4244 1 0000000000000000 100 0 0 10 0
"""

UDP4 = b"""   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 555 2 0000000000000000 0
  124: 0100007F:A000 0100007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 556 2 0000000000000000 0
"""

UNIX = b"""Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 20001 /run/my sock.sock
0000000000000000: 00000002 00000000 00000000 0001 03 20002 /run/my sock.sock
0000000000000000: 00000002 00000000 00010000 0005 01 20003 @abstract-name
0000000000000000: 00000003 00000000 00000000 0001 03 20004
0000000000000000: 00000002 00000000 00000000 0002 01 20005 /dev/log
0000000000000000: 00000002 00000000 00000000 0002 01 20006
bad
"""


def test_decode_address():
    assert pos.decode_address("0100007F", socket.AF_INET) == "127.0.0.1"
    assert pos.decode_address("00000000", socket.AF_INET) == "0.0.0.0"
    assert pos.decode_address("00000000000000000000000001000000", socket.AF_INET6) == "::1"
    assert pos.decode_address("B80D0120000000000000000001000000", socket.AF_INET6) == "2001:db8::1"


def test_parse_tcp4():
    got = pos.parse_inet_sockets(TCP4, socket.AF_INET, socket.IPPROTO_TCP)
    assert len(got) == 3  # the garbage line is skipped
    listen, est, tw = got
    assert (listen.inode, listen.local_address, listen.local_port, listen.state, listen.listening) == (
        31337,
        "127.0.0.1",
        8080,
        "LISTEN",
        True,
    )
    assert (est.remote_address, est.remote_port, est.state, est.listening) == ("127.0.0.1", 54321, "ESTABLISHED", False)
    assert (tw.inode, tw.state) == (0, "TIME_WAIT")
    assert all(s.family == 2 and s.protocol == 6 and s.path == "" for s in got)


def test_parse_tcp6():
    a, b, c = pos.parse_inet_sockets(TCP6, socket.AF_INET6, socket.IPPROTO_TCP)
    assert (a.local_address, a.local_port, a.state, a.family) == ("::1", 22, "LISTEN", 10)
    assert (b.local_address, b.remote_address, b.remote_port) == ("::ffff:127.0.0.1", "::ffff:127.0.0.2", 40000)
    assert (c.local_address, c.local_port) == ("2001:db8::1", 443)


def test_parse_udp():
    bound, connected = pos.parse_inet_sockets(UDP4, socket.AF_INET, socket.IPPROTO_UDP)
    assert (bound.local_address, bound.local_port, bound.protocol, bound.state, bound.listening) == (
        "0.0.0.0",
        68,
        17,
        "",
        True,
    )
    assert (connected.remote_port, connected.listening) == (53, False)


def test_parse_raw():
    raw = UDP4.replace(b"0044", b"0001", 1)
    first = pos.parse_inet_sockets(raw, socket.AF_INET, 255)[0]
    # osquery: protocol IPPROTO_RAW, the raw protocol (ICMP) as local_port, as ss shows 0.0.0.0:1
    assert (first.protocol, first.local_port, first.remote_port, first.state, first.listening) == (255, 1, 0, "", True)


def test_parse_tcp_state_names_are_osquerys():
    text = (
        TCP4.split(b"\n")[0]
        + b"\n"
        + b"".join(
            b"   %d: 0100007F:1F90 0100007F:D431 %02X 00000000:00000000 00:00000000 00000000 0 0 %d 1\n"
            % (i, st, 100 + st)
            for i, st in enumerate(range(14))
        )
    )
    states = {s.inode - 100: s.state for s in pos.parse_inet_sockets(text, socket.AF_INET, socket.IPPROTO_TCP)}
    assert states[7] == "CLOSED"
    assert states[0] == states[12] == states[13] == "UNKNOWN"  # 12 (NEW_SYN_RECV) is not in osquery's list
    assert [states[i] for i in (1, 6, 10, 11)] == ["ESTABLISHED", "TIME_WAIT", "LISTEN", "CLOSING"]


PACKET = b"""sk               RefCnt Type Proto  Iface R Rmem   User   Inode
00000000de5b3bc8 3      3    0003   0     1 0      0      49702
00000000de5b3bc9 3      2    0800   2     1 0      0      49703
short line
"""


def test_parse_packet():
    got = pos.parse_packet_sockets(PACKET)
    assert [(s.inode, s.family, s.protocol, s.state, s.local_port, s.path) for s in got] == [
        (49702, 17, 3, "NONE", 0, ""),
        (49703, 17, 0x0800, "NONE", 0, ""),
    ]


def test_parse_unix_hostile_paths():
    text = (
        b"Num       RefCount Protocol Flags    Type St Inode Path\n"
        b"0000000000000000: 00000002 00000000 00010000 0001 01 30001  leading space\n"
        b"0000000000000000: 00000002 00000000 00010000 0001 01 30002 /tmp/new\nline\tand \xff\n"
        b"0000000000000000: 00000002 00000000 00010000 0001 01 130003 /tmp/x\r\x1c\x85y\n"
    )
    got = {s.inode: s.path for s in pos.parse_unix_sockets(text)}
    assert got == {30001: " leading space", 30002: "/tmp/new\nline\tand \udcff", 130003: "/tmp/x\r\x1c\udc85y"}


def test_parse_unix():
    got = pos.parse_unix_sockets(UNIX.replace(b"\nbad\n", b"\n"))
    assert [s.inode for s in got] == [20001, 20002, 20003, 20004, 20005, 20006]
    by = {s.inode: s for s in got}
    assert by[20001].path == "/run/my sock.sock" and by[20001].listening
    assert by[20002].path == "/run/my sock.sock" and not by[20002].listening  # accepted connection
    assert by[20003].path == "@abstract-name" and by[20003].listening
    assert by[20004].path == "" and not by[20004].listening
    assert by[20005].listening  # bound datagram socket with a path
    assert not by[20006].listening
    assert all(s.family == 1 and s.protocol == 0 for s in got)


# ---------------------------------------------------------------------------
# Real sockets
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def db() -> Database:
    return Database([SPEC])


@pytest.fixture
def opened(tmp_path):
    """Sockets of every kind, held by this process: {name: socket}."""
    made: dict[str, socket.socket] = {}
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen()
    made["tcp4"] = s
    s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s6.bind(("::1", 0))
    s6.listen()
    made["tcp6"] = s6
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    made["udp4"] = u
    unix_path = str(tmp_path / "test.sock")
    ux = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ux.bind(unix_path)
    ux.listen()
    made["unix"] = ux
    abstract = f"\0agentd-test-{uuid.uuid4().hex[:8]}"
    ua = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ua.bind(abstract)
    ua.listen()
    made["abstract"] = ua
    client = socket.create_connection(s.getsockname())
    server, _ = s.accept()
    made["client"], made["server"] = client, server
    yield made
    for sock in made.values():
        sock.close()


def _by_inode(rows: list[dict]) -> dict[int, dict]:
    return {r["socket"]: r for r in rows}


def test_sockets_of_this_process(db, opened):
    pid = os.getpid()
    rows = db.execute(f"SELECT * FROM process_open_sockets WHERE pid = {pid}").dicts()
    assert {r["pid"] for r in rows} == {pid}
    by = _by_inode(rows)
    ns = str(os.stat("/proc/self/ns/net").st_ino)
    for name, sock in opened.items():
        r = by[os.fstat(sock.fileno()).st_ino]
        assert r["fd"] == sock.fileno()
        assert r["net_namespace"] == ns
        assert r["family"] == {"tcp6": 10, "unix": 1, "abstract": 1}.get(name, 2)
    tcp4 = by[os.fstat(opened["tcp4"].fileno()).st_ino]
    assert (tcp4["protocol"], tcp4["local_address"], tcp4["local_port"], tcp4["state"]) == (
        6,
        "127.0.0.1",
        opened["tcp4"].getsockname()[1],
        "LISTEN",
    )
    tcp6 = by[os.fstat(opened["tcp6"].fileno()).st_ino]
    assert (tcp6["local_address"], tcp6["local_port"], tcp6["state"]) == (
        "::1",
        opened["tcp6"].getsockname()[1],
        "LISTEN",
    )
    udp = by[os.fstat(opened["udp4"].fileno()).st_ino]
    assert (udp["protocol"], udp["local_port"], udp["remote_port"]) == (17, opened["udp4"].getsockname()[1], 0)
    unix = by[os.fstat(opened["unix"].fileno()).st_ino]
    assert (unix["path"], unix["protocol"]) == (opened["unix"].getsockname(), 0)
    abstract = by[os.fstat(opened["abstract"].fileno()).st_ino]
    assert abstract["path"] == "@" + opened["abstract"].getsockname()[1:].decode()


def test_connected_pair(db, opened):
    client, server = opened["client"], opened["server"]
    rows = _by_inode(db.execute("SELECT * FROM process_open_sockets").dicts())  # full scan this time
    c = rows[os.fstat(client.fileno()).st_ino]
    s = rows[os.fstat(server.fileno()).st_ino]
    assert (c["pid"], c["state"], c["remote_address"], c["remote_port"]) == (
        os.getpid(),
        "ESTABLISHED",
        "127.0.0.1",
        server.getsockname()[1],
    )
    assert (s["state"], s["local_port"], s["remote_port"]) == (
        "ESTABLISHED",
        server.getsockname()[1],
        client.getsockname()[1],
    )


def test_socket_of_child_process(db, tmp_path):
    code = (
        "import socket,sys,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen();"
        "print(s.getsockname()[1], flush=True); time.sleep(300)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        port = int(child.stdout.readline())
        rows = db.execute(f"SELECT pid, local_port, state FROM process_open_sockets WHERE local_port = {port}").dicts()
        assert rows == [{"pid": child.pid, "local_port": port, "state": "LISTEN"}]
        assert db.execute(f"SELECT pid FROM process_open_sockets WHERE pid = {child.pid}").dicts() == [
            {"pid": child.pid}
        ]
    finally:
        child.kill()
        child.wait()


def test_netns_socket_has_that_namespace(db):
    name = f"agentd-test-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"ip netns add refused: {made.stderr.strip()}")
    child = None
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        code = (
            "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen();"
            "print(s.getsockname()[1], flush=True); time.sleep(300)"
        )
        child = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
        )
        port = int(child.stdout.readline())
        ns_inode = str(os.stat(f"/run/netns/{name}").st_ino)
        assert ns_inode != str(os.stat("/proc/self/ns/net").st_ino)
        rows = db.execute(
            f"SELECT pid, net_namespace, local_address, state FROM process_open_sockets WHERE local_port = {port}"
        ).dicts()
        assert {"pid": child.pid, "net_namespace": ns_inode, "local_address": "127.0.0.1", "state": "LISTEN"} in rows
    finally:
        if child is not None:
            child.kill()
            child.wait()
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_pid_filter_excludes_others_and_orphans(db, opened):
    rows = db.execute(f"SELECT pid, fd FROM process_open_sockets WHERE pid IN ({os.getpid()}, 999999999)").dicts()
    assert rows and all(r["pid"] == os.getpid() and r["fd"] >= 0 for r in rows)
    # pid -1 (held by nobody) still works: it needs the full scan
    orphans = db.execute("SELECT pid, fd FROM process_open_sockets WHERE pid = -1").dicts()
    assert all(r == {"pid": -1, "fd": -1} for r in orphans)


def test_column_types(db, opened):
    result = db.execute("SELECT * FROM process_open_sockets")
    assert result.columns == list(SPEC.column_names)
    assert result.rows
    assert_column_types(SPEC, result.dicts())


# ---------------------------------------------------------------------------
# Every socket family osquery lists, live
# ---------------------------------------------------------------------------


def test_raw_packet_and_udplite_sockets(db):
    """SOCK_RAW (protocol 255, raw protocol as local_port), AF_PACKET (family 17) and UDP-Lite, as osquery."""
    made = {
        "raw": socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
        "raw6": socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6),
        "packet": socket.socket(17, socket.SOCK_RAW, socket.htons(0x0800)),  # AF_PACKET, ETH_P_IP
        "udplite": socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 136),
    }
    fds = {name: s.fileno() for name, s in made.items()}
    try:
        made["udplite"].bind(("127.0.0.1", 0))
        udplite_port = made["udplite"].getsockname()[1]
        rows = _by_inode(db.execute(f"SELECT * FROM process_open_sockets WHERE pid = {os.getpid()}").dicts())
        got = {
            name: {k: rows[os.fstat(s.fileno()).st_ino][k] for k in ("fd", "family", "protocol", "local_port", "state")}
            for name, s in made.items()
        }
    finally:
        for s in made.values():
            s.close()
    assert got["raw"] == {"fd": fds["raw"], "family": 2, "protocol": 255, "local_port": 1, "state": ""}
    assert got["raw6"] == {"fd": fds["raw6"], "family": 10, "protocol": 255, "local_port": 58, "state": ""}
    assert got["packet"] == {"fd": fds["packet"], "family": 17, "protocol": 0x0800, "local_port": 0, "state": "NONE"}
    assert got["udplite"] == {
        "fd": fds["udplite"],
        "family": 2,
        "protocol": 136,
        "local_port": udplite_port,
        "state": "",
    }


def test_icmp_ping_sockets_in_a_namespace(db):
    """Unprivileged ICMP (ping) sockets, /proc/net/icmp and icmp6, allowed in a namespace the test creates."""
    name = f"agentd-ping-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"ip netns add refused: {made.stderr.strip()}")
    child = None
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        code = (
            "import socket, time\n"
            "open('/proc/sys/net/ipv4/ping_group_range', 'w').write('0 0')\n"
            "a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP); a.bind(('127.0.0.1', 0))\n"
            "b = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6); b.bind(('::1', 0))\n"
            "print(a.fileno(), a.getsockname()[1], b.fileno(), b.getsockname()[1], flush=True)\n"
            "time.sleep(300)\n"
        )
        child = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
        )
        line = child.stdout.readline().split()
        if len(line) != 4:
            pytest.skip("ping sockets are not permitted in a new network namespace here")
        fd4, ident4, fd6, ident6 = map(int, line)
        rows = db.execute(
            f"SELECT fd, family, protocol, local_address, local_port, state FROM process_open_sockets "
            f"WHERE pid = {child.pid} AND family IN (2, 10)"
        ).dicts()
    finally:
        if child is not None:
            child.kill()
            child.wait()
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    assert {
        "fd": fd4,
        "family": 2,
        "protocol": 1,
        "local_address": "127.0.0.1",
        "local_port": ident4,
        "state": "",
    } in rows
    assert {"fd": fd6, "family": 10, "protocol": 1, "local_address": "::1", "local_port": ident6, "state": ""} in rows


def test_time_wait_listed_once_when_some_namespace_links_are_refused(tmp_path):
    """As nobody, root's processes' ns/net links are refused; TIME_WAIT sockets (inode 0) must not double.

    The query runs in a child that dropped to nobody: its own ns link is readable, those of
    root's processes in the same namespace are not, so the namespace is reached both ways.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    client_port, server_port = client.getsockname()[1], listener.getsockname()[1]
    client.close()  # the side that closes first goes to TIME_WAIT
    assert server.recv(1) == b""  # the server saw the FIN: its close is passive, only the client waits
    server.close()
    deadline = time.monotonic() + 10
    while not any(
        s.local_port == client_port and s.state == "TIME_WAIT"
        for s in pos.parse_inet_sockets(pos.pf.read_file("/proc/self/net/tcp"), socket.AF_INET, socket.IPPROTO_TCP)
    ):
        assert time.monotonic() < deadline, "no TIME_WAIT socket appeared"
        time.sleep(0.01)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # drop to nobody and query; never returns into pytest
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            result = Database([SPEC]).execute(
                "SELECT pid, state, local_port, remote_port, net_namespace FROM process_open_sockets "
                f"WHERE local_port = {client_port} OR remote_port = {client_port}"
            )
            os.write(write_end, repr(result.rows).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        out = pipe.read().decode()
    _, status = os.waitpid(child, 0)
    listener.close()
    assert os.waitstatus_to_exitcode(status) == 0
    rows = ast.literal_eval(out)
    ns = str(os.stat("/proc/self/ns/net").st_ino)
    time_wait = [r for r in rows if r[1] == "TIME_WAIT"]
    assert time_wait == [(-1, "TIME_WAIT", client_port, server_port, ns)]
