"""``process_open_sockets``: sockets (TCP, UDP, UDP-Lite, raw, ICMP ping, UNIX, packet) and the process holding each.

As osquery on Linux: socket inodes come from the ``socket:[inode]`` links in
``/proc/<pid>/fd``; the sockets themselves from ``/proc/<pid>/net/{tcp,udp,udplite,raw,icmp}[6]``,
``unix`` and ``packet``, read once per network namespace (via the first pid seen in it), so
sockets of other namespaces appear with their ``net_namespace``.  Sockets no process holds
(TIME_WAIT, ...) get pid and fd -1 unless the query constrains pid.

osquery's conventions: ``protocol`` is the protocol of the /proc file (``raw``/``raw6``: 255,
IPPROTO_RAW, with the raw socket's own protocol in ``local_port``, as ``ss`` shows it;
``icmp``/``icmp6`` ping sockets: 1; packet sockets: the ethertype); ``state`` is the TCP
state (``CLOSED`` for state 7), ``NONE`` for packet sockets and empty for the rest.

A pid whose ``ns/net`` link cannot be read (another user's process, or pid 1 in some
containers) is matched to its namespace by the identity (inode) of its ``net/`` files,
which is per namespace: its sockets are not listed a second time under an unknown
namespace (TIME_WAIT sockets, inode 0, cannot be de-duplicated by inode).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from . import procfs as pf
from .spec import Column, QueryContext, Row, TableSpec
from .text import decode

__all__ = [
    "SPEC",
    "TCP_STATES",
    "OpenSocket",
    "SocketInfo",
    "collect_sockets",
    "decode_address",
    "parse_inet_sockets",
    "parse_packet_sockets",
    "parse_unix_sockets",
]

AF_UNIX, AF_INET, AF_INET6, AF_PACKET = socket.AF_UNIX, socket.AF_INET, socket.AF_INET6, 17
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP = 1, 6, 17
IPPROTO_UDPLITE, IPPROTO_RAW = 136, 255

#: include/net/tcp_states.h as osquery names them, indexed by the ``st`` field of /proc/net/tcp.
TCP_STATES = (
    "UNKNOWN",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSED",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
)

#: (file under /proc/<pid>/net, family, protocol osquery reports for its sockets)
_NET_FILES: tuple[tuple[str, int, int], ...] = (
    ("tcp", AF_INET, IPPROTO_TCP),
    ("tcp6", AF_INET6, IPPROTO_TCP),
    ("udp", AF_INET, IPPROTO_UDP),
    ("udp6", AF_INET6, IPPROTO_UDP),
    ("udplite", AF_INET, IPPROTO_UDPLITE),
    ("udplite6", AF_INET6, IPPROTO_UDPLITE),
    ("raw", AF_INET, IPPROTO_RAW),
    ("raw6", AF_INET6, IPPROTO_RAW),
    ("icmp", AF_INET, IPPROTO_ICMP),
    ("icmp6", AF_INET6, IPPROTO_ICMP),  # osquery reports ping6 sockets with protocol 1 as well
)

_SO_ACCEPTCON = 0x10000  # /proc/net/unix Flags: the socket is listening
_SOCK_DGRAM = 2
_SS_UNCONNECTED = 1

#: A /proc/net/unix line: "Num: RefCount Protocol Flags Type St Inode[ Path]" (the path verbatim).
_UNIX_LINE = re.compile(
    rb"^\S+: ([0-9A-Fa-f]+) ([0-9A-Fa-f]+) ([0-9A-Fa-f]+) ([0-9A-Fa-f]+) ([0-9A-Fa-f]+) +(\d+)(?: (.*))?$", re.S
)


class SocketInfo(NamedTuple):
    """One socket as a /proc/net file describes it."""

    inode: int
    family: int
    protocol: int
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    path: str
    state: str
    listening: bool  # unix: listening or a bound datagram socket; inet: remote port 0; packet: always


class OpenSocket(NamedTuple):
    """A socket with its owner (pid/fd -1 when no scanned process holds it) and namespace."""

    pid: int
    fd: int
    net_namespace: int | None
    info: SocketInfo


# ---------------------------------------------------------------------------
# Pure parsers
# ---------------------------------------------------------------------------


def decode_address(hex_address: str, family: int) -> str:
    """/proc/net hex address -> text: IPv4 is one little-endian word, IPv6 four."""
    raw = bytes.fromhex(hex_address)
    if family == AF_INET:
        return socket.inet_ntop(AF_INET, raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(AF_INET6, words)


def parse_inet_sockets(data: bytes, family: int, protocol: int) -> list[SocketInfo]:
    """/proc/net/{tcp,udp,udplite,raw,icmp}[6] text -> sockets; malformed lines are skipped.

    For raw sockets (``protocol`` 255) the "port" field is the socket's IP protocol, kept in
    ``local_port`` as osquery and ``ss`` show it.
    """
    result: list[SocketInfo] = []
    lines = data.decode("ascii", "replace").split("\n")
    for line in lines[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        local, _, lport = fields[1].partition(":")
        remote, _, rport = fields[2].partition(":")
        try:
            inode = int(fields[9])
            local_port, remote_port = int(lport, 16), int(rport, 16)
            local_address = decode_address(local, family)
            remote_address = decode_address(remote, family)
            st = int(fields[3], 16)
        except ValueError:
            continue
        state = (TCP_STATES[st] if 0 < st < len(TCP_STATES) else "UNKNOWN") if protocol == IPPROTO_TCP else ""
        listening = remote_port == 0 if protocol != IPPROTO_TCP else st == 10
        result.append(
            SocketInfo(
                inode, family, protocol, local_address, local_port, remote_address, remote_port, "", state, listening
            )
        )
    return result


def parse_unix_sockets(data: bytes) -> list[SocketInfo]:
    """/proc/net/unix text -> sockets (abstract names start with ``@``); malformed lines skipped.

    The kernel prints a path verbatim, newlines included: a line that is not a socket
    line continues the path of the one before.
    """
    result: list[SocketInfo] = []
    for line in data.split(b"\n")[1:]:
        match = _UNIX_LINE.match(line)
        if match is None:
            if result and result[-1].path and line:
                last = result[-1]
                result[-1] = last._replace(path=last.path + "\n" + decode(line))
            continue
        _ref, protocol, flags, sock_type, st, inode, path = match.groups()
        text = decode(path) if path else ""
        flag_bits, kind, state = int(flags, 16), int(sock_type, 16), int(st, 16)
        listening = bool(flag_bits & _SO_ACCEPTCON) or (kind == _SOCK_DGRAM and state == _SS_UNCONNECTED and bool(text))
        result.append(SocketInfo(int(inode), AF_UNIX, int(protocol, 16), "", 0, "", 0, text, "", listening))
    return result


def parse_packet_sockets(data: bytes) -> list[SocketInfo]:
    """/proc/net/packet text -> AF_PACKET sockets: the ethertype as protocol, state ``NONE`` (osquery)."""
    result: list[SocketInfo] = []
    for line in data.decode("ascii", "replace").split("\n")[1:]:
        fields = line.split()  # sk RefCnt Type Proto Iface R Rmem User Inode
        if len(fields) < 9:
            continue
        try:
            protocol, inode = int(fields[3], 16), int(fields[8])
        except ValueError:
            continue
        result.append(SocketInfo(inode, AF_PACKET, protocol, "", 0, "", 0, "", "NONE", True))
    return result


# ---------------------------------------------------------------------------
# Collection (I/O)
# ---------------------------------------------------------------------------


def _socket_fds(proc: str, pid: int) -> list[tuple[int, int]]:
    """(fd, socket inode) for every socket descriptor of ``pid``; [] if gone or refused."""
    fd_dir = f"{proc}/{pid}/fd/"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return []
    found: list[tuple[int, int]] = []
    readlink = os.readlink
    for name in names:
        try:
            link = readlink(fd_dir + name)
        except OSError:
            continue  # closed meanwhile, or refused
        if link.startswith("socket:["):
            inode = pf.parse_socket_inode(link)
            if inode is not None:
                found.append((int(name), inode))
    return found


def _namespace_sockets(proc: str, pid: int) -> list[SocketInfo] | None:
    """Every socket of ``pid``'s network namespace; None if the pid is gone or refused."""
    base = f"{proc}/{pid}/net/"
    sockets: list[SocketInfo] = []
    readable = False
    for name, family, protocol in _NET_FILES:
        try:
            data = pf.read_file(base + name)
        except OSError:
            continue  # e.g. no IPv6 in this kernel/namespace
        readable = True
        sockets.extend(parse_inet_sockets(data, family, protocol))
    for name, parse in (("unix", parse_unix_sockets), ("packet", parse_packet_sockets)):
        try:
            sockets.extend(parse(pf.read_file(base + name)))
            readable = True
        except OSError:
            pass
    return sockets if readable else None


@dataclass(slots=True)
class _Listing:
    """The sockets of one network namespace, and its inode once a pid's ``ns/net`` link gave it."""

    inode: int | None
    sockets: list[SocketInfo]


def _namespace_key(proc: str, pid: int) -> tuple[int, int] | None:
    """What identifies ``pid``'s network namespace without its ``ns/net`` link.

    The entries of ``/proc/<pid>/net/`` are the namespace's own (one inode per namespace,
    the same for every pid in it), and stat() needs no ptrace access; None if gone.
    """
    for name in ("unix", "tcp", "dev"):
        try:
            st = os.stat(f"{proc}/{pid}/net/{name}")
        except OSError:
            continue
        return st.st_dev, st.st_ino
    return None


def collect_sockets(proc: str, wanted_pids: Iterable[object] | None) -> Iterator[OpenSocket]:
    """Sockets per network namespace, joined to the (pid, fd) holding each.

    With ``wanted_pids`` only those processes are scanned and only their sockets
    returned; without, every process is scanned and unheld sockets come with pid -1.
    """
    if wanted_pids is not None and -1 in wanted_pids:
        wanted_pids = None  # pid -1 means "held by no process": needs the full scan
    pids = pf.select_pids(proc, wanted_pids)
    owners: dict[int, tuple[int, int]] = {}
    known: set[int] = set()  # namespace inodes already listed
    listed: dict[tuple[int, int], _Listing] = {}  # by namespace identity (:func:`_namespace_key`)
    for pid in pids:
        fds = _socket_fds(proc, pid)
        if not fds and wanted_pids is not None:
            continue  # nothing of this pid to report: no need for its namespace
        for fd, inode in fds:
            owners.setdefault(inode, (pid, fd))
        ns_link = pf.read_link(f"{proc}/{pid}/ns/net")
        ns = pf.parse_ns_inode(ns_link) if ns_link else None
        if ns is not None and ns in known:
            continue
        key = _namespace_key(proc, pid)
        if key is None:
            continue  # gone
        entry = listed.get(key)
        if entry is None:
            sockets = _namespace_sockets(proc, pid)
            if sockets is None:
                continue
            listed[key] = _Listing(ns, sockets)
        elif entry.inode is None:
            entry.inode = ns  # listed through a pid whose link was refused; now we know its inode
        if ns is not None:
            known.add(ns)
    seen: set[int] = set()
    for listing in listed.values():
        ns = listing.inode
        for info in listing.sockets:
            inode = info.inode
            if inode:  # inode 0: TIME_WAIT & co, no socket object; each one is distinct
                if inode in seen:
                    continue
                seen.add(inode)
            owner = owners.get(inode) if inode else None
            if owner is None:
                if wanted_pids is not None:
                    continue
                owner = (-1, -1)
            yield OpenSocket(owner[0], owner[1], ns, info)


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per socket, osquery's columns."""
    for s in collect_sockets(context.paths.proc, context.values("pid")):
        info = s.info
        yield {
            "pid": s.pid,
            "fd": s.fd,
            "socket": info.inode,
            "family": info.family,
            "protocol": info.protocol,
            "local_address": info.local_address,
            "remote_address": info.remote_address,
            "local_port": info.local_port,
            "remote_port": info.remote_port,
            "path": info.path,
            "state": info.state,
            "net_namespace": str(s.net_namespace) if s.net_namespace is not None else None,
        }


SPEC = TableSpec(
    name="process_open_sockets",
    description="Processes which have open network sockets on the system.",
    columns=(
        Column("pid", "INTEGER", "Process (or thread) ID", additional=True),
        Column("fd", "BIGINT", "Socket file descriptor number"),
        Column("socket", "BIGINT", "Socket handle or inode number"),
        Column("family", "INTEGER", "Network protocol (IPv4, IPv6)"),
        Column("protocol", "INTEGER", "Transport protocol (TCP/UDP)"),
        Column("local_address", "TEXT", "Socket local address"),
        Column("remote_address", "TEXT", "Socket remote address"),
        Column("local_port", "INTEGER", "Socket local port"),
        Column("remote_port", "INTEGER", "Socket remote port"),
        Column("path", "TEXT", "For UNIX sockets (family=AF_UNIX), the domain path"),
        Column("state", "TEXT", "TCP socket state"),
        Column("net_namespace", "TEXT", "The inode number of the network namespace"),
    ),
    generate=generate,
    examples=(
        "SELECT * FROM process_open_sockets WHERE pid = 1",
        "SELECT DISTINCT pid, remote_address, remote_port FROM process_open_sockets WHERE remote_address <> ''",
    ),
)
