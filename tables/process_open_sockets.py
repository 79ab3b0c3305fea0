"""``process_open_sockets``: sockets (IPv4, IPv6, UNIX, raw) and the process holding each.

As osquery on Linux: socket inodes come from the ``socket:[inode]`` links in
``/proc/<pid>/fd``; the sockets themselves from ``/proc/<pid>/net/{tcp,tcp6,udp,udp6,raw,raw6,unix}``
read once per network namespace (via the first pid seen in it), so sockets of other
namespaces appear with their ``net_namespace``.  Sockets no process holds (TIME_WAIT,
...) get pid and fd -1 unless the query constrains pid.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from . import _procfs as pf
from .spec import Column, QueryContext, Row, TableSpec

__all__ = [
    "SPEC",
    "TCP_STATES",
    "OpenSocket",
    "SocketInfo",
    "collect_sockets",
    "decode_address",
    "parse_inet_sockets",
    "parse_unix_sockets",
]

AF_UNIX, AF_INET, AF_INET6 = socket.AF_UNIX, socket.AF_INET, socket.AF_INET6
IPPROTO_TCP, IPPROTO_UDP = socket.IPPROTO_TCP, socket.IPPROTO_UDP

#: include/net/tcp_states.h, indexed by the ``st`` field of /proc/net/tcp.
TCP_STATES = (
    "UNKNOWN",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
    "NEW_SYN_RECV",
)

_SO_ACCEPTCON = 0x10000  # /proc/net/unix Flags: the socket is listening
_SOCK_DGRAM = 2
_SS_UNCONNECTED = 1

#: (file under /proc/<pid>/net, family, protocol; None: raw, protocol from the port field)
_NET_FILES: tuple[tuple[str, int, int | None], ...] = (
    ("tcp", AF_INET, IPPROTO_TCP),
    ("tcp6", AF_INET6, IPPROTO_TCP),
    ("udp", AF_INET, IPPROTO_UDP),
    ("udp6", AF_INET6, IPPROTO_UDP),
    ("raw", AF_INET, None),
    ("raw6", AF_INET6, None),
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
    listening: bool  # TCP LISTEN, bound unconnected UDP, listening/bound UNIX


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


def parse_inet_sockets(data: bytes, family: int, protocol: int | None) -> list[SocketInfo]:
    """/proc/net/{tcp,udp,raw}[6] text -> sockets; malformed lines are skipped.

    ``protocol=None`` means raw sockets, whose protocol number sits in the port field.
    """
    result: list[SocketInfo] = []
    lines = data.decode("ascii", "replace").splitlines()
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
        if protocol == IPPROTO_TCP:
            state = TCP_STATES[st] if 0 < st < len(TCP_STATES) else "UNKNOWN"
            listening = st == 10
            proto = protocol
        elif protocol == IPPROTO_UDP:
            state = ""
            listening = remote_port == 0
            proto = protocol
        else:  # raw: "port" is the IP protocol number
            state, listening, proto = "", False, local_port
            local_port = remote_port = 0
        result.append(
            SocketInfo(
                inode, family, proto, local_address, local_port, remote_address, remote_port, "", state, listening
            )
        )
    return result


def parse_unix_sockets(data: bytes) -> list[SocketInfo]:
    """/proc/net/unix text -> sockets (abstract names start with ``@``); malformed lines skipped."""
    result: list[SocketInfo] = []
    lines = data.decode("utf-8", "replace").splitlines()
    for line in lines[1:]:
        fields = line.split(maxsplit=7)
        if len(fields) < 7:
            continue
        try:
            protocol = int(fields[2], 16)
            flags = int(fields[3], 16)
            sock_type = int(fields[4], 16)
            st = int(fields[5], 16)
            inode = int(fields[6])
        except ValueError:
            continue
        path = fields[7] if len(fields) > 7 else ""
        listening = bool(flags & _SO_ACCEPTCON) or (sock_type == _SOCK_DGRAM and st == _SS_UNCONNECTED and bool(path))
        result.append(SocketInfo(inode, AF_UNIX, protocol, "", 0, "", 0, path, "", listening))
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
    try:
        sockets.extend(parse_unix_sockets(pf.read_file(base + "unix")))
        readable = True
    except OSError:
        pass
    return sockets if readable else None


def collect_sockets(proc: str, wanted_pids: Iterable[object] | None) -> Iterator[OpenSocket]:
    """Sockets per network namespace, joined to the (pid, fd) holding each.

    With ``wanted_pids`` only those processes are scanned and only their sockets
    returned; without, every process is scanned and unheld sockets come with pid -1.
    """
    if wanted_pids is not None and -1 in wanted_pids:
        wanted_pids = None  # pid -1 means "held by no process": needs the full scan
    pids = pf.select_pids(proc, wanted_pids)
    owners: dict[int, tuple[int, int]] = {}
    namespaces: dict[int | None, list[SocketInfo]] = {}
    unknown_ns_pids: list[int] = []
    for pid in pids:
        fds = _socket_fds(proc, pid)
        if not fds and wanted_pids is not None:
            continue  # nothing of this pid to report: no need for its namespace
        for fd, inode in fds:
            owners.setdefault(inode, (pid, fd))
        ns_link = pf.read_link(f"{proc}/{pid}/ns/net")
        ns = pf.parse_ns_inode(ns_link) if ns_link else None
        if ns is None:
            unknown_ns_pids.append(pid)  # ns link refused: read last, for what is left
        elif ns not in namespaces:
            listed = _namespace_sockets(proc, pid)
            if listed is not None:
                namespaces[ns] = listed
    for pid in unknown_ns_pids:
        listed = _namespace_sockets(proc, pid)
        if listed is not None:
            namespaces[None] = listed  # sockets not seen in any known namespace
            break
    seen: set[int] = set()
    for ns, sockets in namespaces.items():
        for info in sockets:
            inode = info.inode
            if inode:  # inode 0: TIME_WAIT & co, no socket object; each one is distinct
                if inode in seen:
                    continue  # the same socket listed twice (ns unknown for some pids)
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
