"""Real processes, sockets, packets and namespaces for the attribution tests and bench.

- :class:`Server`: a real TCP server process (stdlib Python, run as any uid) that reports
  every connection it accepts, with the pid the client wrote first; it answers at once,
  after a think time, or holds a connection open until told to release it.
- :func:`client_argv`: a short-lived client (bash's /dev/tcp) as a given uid: it connects,
  writes its pid, waits for the server's answer and exits.
- :class:`SynCapture`: connections as Zeek sees them: an AF_PACKET socket on an interface
  records the first SYN of every TCP connection with the kernel's timestamp.
- :func:`veth_namespace`: a network namespace joined to this one by a veth pair, with
  IPv4 and IPv6 addresses; names carry the pid and everything is removed in a finally.
- :func:`query`: rows of the agent's own tables, here or inside a namespace.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Servers and clients run as other users: they need an interpreter outside root's home.
SYSTEM_PYTHON = "/usr/bin/python3"
BASH = shutil.which("bash") or "/bin/bash"
SETPRIV = shutil.which("setpriv")
IP = shutil.which("ip")

SERVER_CODE = r"""
import heapq, json, os, selectors, socket, sys, time
hold = sys.argv[1] == "hold"
think = float(sys.argv[1][6:]) / 1000 if sys.argv[1].startswith("think:") else 0.0
due = []  # (time, seq, conn): answers delayed by the think time
sel = selectors.DefaultSelector()
ports = {}
for address in sys.argv[2:]:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((address, 0))
    s.listen(256)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, "listen")
    ports[address] = s.getsockname()[1]
print(json.dumps({"pid": os.getpid(), "uid": os.getuid(), "ports": ports}), flush=True)
sel.register(sys.stdin, selectors.EVENT_READ, "control")
held, pending = {}, {}
def answer(conn):
    try:
        conn.sendall(b"ok\n")
    except OSError:
        pass
    conn.close()
seq = 0
while True:
    while due and due[0][0] <= time.monotonic():
        answer(heapq.heappop(due)[2])
    for key, _ in sel.select(max(0.0, due[0][0] - time.monotonic()) if due else None):
        if key.data == "listen":
            try:
                conn, peer = key.fileobj.accept()
            except BlockingIOError:
                continue
            conn.setblocking(False)
            pending[conn] = (b"", peer, conn.getsockname(), time.time())
            sel.register(conn, selectors.EVENT_READ, "conn")
        elif key.data == "conn":
            conn = key.fileobj
            data, peer, local, t = pending[conn]
            try:
                chunk = conn.recv(64)
            except BlockingIOError:
                continue
            data += chunk
            if chunk and b"\n" not in data:
                pending[conn] = (data, peer, local, t)
                continue
            sel.unregister(conn)
            del pending[conn]
            try:
                pid = int(data.split(b"\n")[0])
            except ValueError:
                pid = None
            print(json.dumps({"client_pid": pid, "peer": list(peer[:2]), "local": list(local[:2]), "t": t}), flush=True)
            if hold and pid is not None:
                held[pid] = conn
            elif think:
                seq += 1
                heapq.heappush(due, (time.monotonic() + think, seq, conn))
            else:
                answer(conn)
        else:
            line = sys.stdin.readline()
            if not line or line.strip() == "quit":
                sys.exit(0)
            cmd, _, arg = line.strip().partition(" ")
            if cmd == "release" and int(arg) in held:
                answer(held.pop(int(arg)))
"""


UDP_SERVER_CODE = r"""
import json, os, select, socket, sys, time
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 0))
print(json.dumps({"pid": os.getpid(), "uid": os.getuid(), "ports": {sys.argv[1]: s.getsockname()[1]}}), flush=True)
held = {}
while True:
    ready, _, _ = select.select([s, sys.stdin], [], [])
    if s in ready:
        data, peer = s.recvfrom(64)
        pid = int(data)
        held[pid] = peer
        print(json.dumps({"client_pid": pid, "peer": list(peer[:2]), "local": list(s.getsockname()[:2]), "t": time.time()}), flush=True)
    if sys.stdin in ready:
        line = sys.stdin.readline()
        if not line or line.strip() == "quit":
            sys.exit(0)
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "release" and int(arg) in held:
            s.sendto(b"ok", held.pop(int(arg)))
"""

UDP_CLIENT_CODE = r"""
import os, socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], int(sys.argv[2])))
s.send(str(os.getpid()).encode())
s.settimeout(30)
s.recv(64)
"""


def udp_client_argv(uid: int, host: str, port: int) -> list[str]:
    """A UDP client as ``uid``: connect, send its pid, wait for the answer, exit."""
    return as_user(uid, [SYSTEM_PYTHON, "-I", "-S", "-c", UDP_CLIENT_CODE, host, str(port)])


@dataclass(frozen=True)
class Accepted:
    """One connection the server accepted: the client's pid (as it wrote it) and both ends."""

    client_pid: int
    peer: tuple[str, int]
    local: tuple[str, int]
    t: float  # when the server accepted it (its clock: this machine's)


class Server:
    """A TCP server process listening on port 0 of each address, as ``uid``."""

    def __init__(
        self,
        addresses: list[str],
        *,
        uid: int = 0,
        hold: bool = False,
        think_ms: float = 0.0,
        netns: str | None = None,
        udp: bool = False,
    ) -> None:
        mode = "hold" if hold else f"think:{think_ms}" if think_ms else "answer"
        argv = [SYSTEM_PYTHON, "-I", "-S", "-c", SERVER_CODE, mode, *addresses]
        if udp:  # one address, always holding: the answer goes out on release
            argv = [SYSTEM_PYTHON, "-I", "-S", "-c", UDP_SERVER_CODE, addresses[0]]
        if uid:
            argv = as_user(uid, argv)
        if netns:
            argv = [IP or "ip", "netns", "exec", netns, *argv]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        assert self.proc.stdout is not None
        hello = self.proc.stdout.readline()
        if not hello:
            self.close()
            raise RuntimeError(f"the test server did not start: {argv}")
        info = json.loads(hello)
        self.pid: int = info["pid"]
        self.uid: int = info["uid"]
        self.ports: dict[str, int] = info["ports"]
        self.accepted: dict[int, Accepted] = {}

    def next_accepted(self) -> Accepted:
        """Block until the server reports its next connection."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the test server exited")
        data = json.loads(line)
        found = Accepted(data["client_pid"], tuple(data["peer"]), tuple(data["local"]), data["t"])  # type: ignore[arg-type]
        self.accepted[found.client_pid] = found
        return found

    def release(self, client_pid: int) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"release {client_pid}\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def as_user(uid: int, argv: list[str]) -> list[str]:
    """``argv`` run as ``uid`` (its own gid, no supplementary groups), via setpriv."""
    if SETPRIV is None:
        raise RuntimeError("setpriv (util-linux) is needed to run as another user")
    return [SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", *argv]


def client_argv(uid: int, host: str, port: int, *, netns: str | None = None) -> list[str]:
    """A short-lived client as ``uid``: connect, write its pid, wait for the answer, exit."""
    script = f"exec 3<>/dev/tcp/{host}/{port} || exit 1; echo $$ >&3; read -r -t 30 reply <&3; exit 0"
    argv = [BASH, "--norc", "--noprofile", "-c", script]
    if uid:
        argv = as_user(uid, argv)
    if netns:
        argv = [IP or "ip", "netns", "exec", netns, *argv]
    return argv


# -- packets ------------------------------------------------------------------------------
ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35
PACKET_OUTGOING = 4


@dataclass(frozen=True)
class Syn:
    """The first packet of a connection (a TCP SYN, a UDP flow's first datagram): what
    Zeek's conn.log calls ts and id."""

    ts: float
    orig_h: str
    orig_p: int
    resp_h: str
    resp_p: int
    proto: int = socket.IPPROTO_TCP

    def uid(self) -> str:
        return "C" + secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")[:17]


def parse_syn(frame: bytes) -> tuple[str, int, str, int, int] | None:
    """(src, sport, dst, dport, proto) of an Ethernet frame carrying a TCP SYN without ACK or
    a UDP datagram, else None."""
    if len(frame) < 14:
        return None
    ethertype = int.from_bytes(frame[12:14], "big")
    ip = frame[14:]
    if ethertype == 0x0800 and len(ip) >= 20:
        header, proto = (ip[0] & 0x0F) * 4, ip[9]
        src, dst = socket.inet_ntop(socket.AF_INET, ip[12:16]), socket.inet_ntop(socket.AF_INET, ip[16:20])
    elif ethertype == 0x86DD and len(ip) >= 40:
        header, proto = 40, ip[6]
        src, dst = socket.inet_ntop(socket.AF_INET6, ip[8:24]), socket.inet_ntop(socket.AF_INET6, ip[24:40])
    else:
        return None
    transport = ip[header:]
    if proto == socket.IPPROTO_TCP:
        if len(transport) < 14:
            return None
        flags = transport[13]
        if not flags & 0x02 or flags & 0x10:  # SYN, not SYN-ACK
            return None
    elif proto != socket.IPPROTO_UDP or len(transport) < 8:
        return None
    sport, dport = struct.unpack("!HH", transport[:4])
    return src, sport, dst, dport, proto


class SynCapture:
    """Every TCP connection and UDP flow start on ``ifname`` with the kernel's receive timestamp."""

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((ifname, 0))
        self.syns: list[Syn] = []
        self._seen: dict[tuple[str, int, str, int, int], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"syn-capture-{ifname}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        loopback = self.ifname == "lo"
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if not ready:
                continue
            data, ancdata, _, address = self.sock.recvmsg(65535, socket.CMSG_SPACE(16))
            if loopback and address[2] == PACKET_OUTGOING:
                continue  # loopback shows each packet leaving and arriving: take it once
            found = parse_syn(data)
            if found is None:
                continue
            ts = time.time()
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
                    sec, nsec = struct.unpack("qq", payload[:16])
                    ts = sec + nsec / 1e9
            src, sport, dst, dport, proto = found
            if proto == socket.IPPROTO_UDP and (dst, dport, src, sport, proto) in self._seen:
                continue  # a reply within a UDP flow Zeek already has
            last = self._seen.get(found)
            if last is not None and (proto == socket.IPPROTO_UDP or ts - last < 3.5):
                continue  # a retransmitted SYN, or the flow's next datagram: the same connection
            self._seen[found] = ts
            self.syns.append(Syn(ts, *found))

    def close(self) -> list[Syn]:
        time.sleep(0.1)  # let the last packets in
        self._stop.set()
        self._thread.join()
        self.sock.close()
        return self.syns

    def __enter__(self) -> SynCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._stop.is_set():
            self.close()


# -- namespaces ---------------------------------------------------------------------------
@dataclass
class VethNamespace:
    """A namespace ``netns`` joined to this one: ``outer`` here, ``inner`` there."""

    netns: str
    outer: str
    inner: str
    outer_v4: str
    inner_v4: str
    outer_v6: str
    inner_v6: str
    inode: str = ""
    cleanup_errors: list[str] = field(default_factory=list)


def _ip(*args: str) -> None:
    result = subprocess.run([IP or "ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@contextlib.contextmanager
def veth_namespace(tag: str = "") -> Iterator[VethNamespace]:
    """A fresh namespace and veth pair, unique to this process; removed in a finally."""
    if IP is None:
        raise OSError("iproute2's ip is not installed")
    pid = os.getpid()
    a, b = 100 + (pid >> 8) % 150, pid % 256
    suffix = f"{tag}{pid}"[-9:]
    lab = VethNamespace(
        netns=f"zkattr-{suffix}",
        outer=f"zko{suffix}",
        inner=f"zki{suffix}",
        outer_v4=f"10.{a}.{b}.1",
        inner_v4=f"10.{a}.{b}.2",
        outer_v6=f"fd00:{a:x}:{b:x}::1",
        inner_v6=f"fd00:{a:x}:{b:x}::2",
    )
    created: list[str] = []
    try:
        _ip("netns", "add", lab.netns)
        created.append("netns")
        _ip("link", "add", lab.outer, "type", "veth", "peer", "name", lab.inner)
        created.append("link")
        _ip("link", "set", lab.inner, "netns", lab.netns)
        _ip("addr", "add", f"{lab.outer_v4}/24", "dev", lab.outer)
        _ip("-6", "addr", "add", f"{lab.outer_v6}/64", "dev", lab.outer, "nodad")
        _ip("link", "set", lab.outer, "up")
        inside = ("netns", "exec", lab.netns, IP)
        _ip(*inside, "addr", "add", f"{lab.inner_v4}/24", "dev", lab.inner)
        _ip(*inside, "-6", "addr", "add", f"{lab.inner_v6}/64", "dev", lab.inner, "nodad")
        _ip(*inside, "link", "set", lab.inner, "up")
        _ip(*inside, "link", "set", "lo", "up")
        lab.inode = str(os.stat(f"/run/netns/{lab.netns}").st_ino)
        yield lab
    finally:
        if "link" in created:
            try:
                _ip("link", "del", lab.outer)
            except OSError as exc:
                if "Cannot find device" not in str(exc):
                    lab.cleanup_errors.append(str(exc))
        if "netns" in created:
            try:
                _ip("netns", "del", lab.netns)
            except OSError as exc:
                lab.cleanup_errors.append(str(exc))


def own_netns_inode() -> str:
    return os.readlink("/proc/self/ns/net").partition("[")[2].rstrip("]")


# -- the agent's tables ---------------------------------------------------------------------
_QUERY = (
    "import json, sys; sys.path.insert(0, sys.argv[1]); "
    "from tables.registry import all_specs; from tables.sqlite import Database; "
    "print(json.dumps(Database(all_specs()).execute(sys.argv[2]).dicts()))"
)


def query(sql: str, *, netns: str | None = None) -> list[dict[str, Any]]:
    """Rows of the agent's tables for ``sql``, read here or inside ``netns``."""
    if netns is None:
        from tables.registry import all_specs
        from tables.sqlite import Database

        return Database(all_specs()).execute(sql).dicts()
    out = subprocess.run(
        [IP or "ip", "netns", "exec", netns, sys.executable, "-c", _QUERY, REPO, sql],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def syn_of(syns: list[Syn], accepted: Accepted) -> Syn | None:
    """The first packet of the connection the server reported: same ends, the last one
    before the server took it (ephemeral ports come back: an earlier connection may have
    had the same ends)."""
    peer, local = accepted.peer, accepted.local
    found = [
        s
        for s in syns
        if s.orig_p == peer[1]
        and s.resp_p == local[1]
        and same_address(s.orig_h, peer[0])
        and same_address(s.resp_h, local[0])
        and s.ts <= accepted.t + 0.5
    ]
    return max(found, key=lambda s: s.ts) if found else None


def same_address(a: str, b: str) -> bool:
    return ipaddress.ip_address(a.partition("%")[0]) == ipaddress.ip_address(b.partition("%")[0])
