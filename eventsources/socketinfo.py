"""The socket behind a socket event, read from /proc while the call is fresh.

Audit records a connect's remote end but not the local port the kernel chose, nor the
protocol; a server's accept is recorded with its peer but not the address it answered on.
The agent sees the process at the syscall: it takes a copy of the process's descriptor
(pidfd_getfd) and asks the socket itself (getsockname, getpeername), or, where that is
refused, follows ``/proc/PID/fd/FD`` to the socket's inode and finds that inode in the
process's own network namespace (``/proc/PID/net/tcp`` and friends, a read of every socket
there: milliseconds on a busy host).  Either gives the whole 5-tuple, so the row can carry
the local end and its Community ID.

Nothing here guesses: the process may be gone, or have closed the descriptor and reused
its number, by the time the event is read.  A socket found is used only if it agrees with
what audit recorded (the remote end of a connect, the peer of an accept, the address of a
bind); otherwise the row keeps its NULLs and the reason is counted.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Any

from protocol.community_id import community_id
from tables import procfs as pf
from tables.process_open_sockets import SocketInfo, parse_inet_sockets

__all__ = [
    "Lookup",
    "SocketEnricher",
    "SocketLookup",
    "find_inode",
    "lookup",
    "process_start_time",
    "socket_inode",
]

SYS_PIDFD_GETFD = 438  # the same number on every architecture (syscalls added after 424 are shared)

_FILES: dict[int, tuple[tuple[str, int], ...]] = {
    socket.AF_INET: (("tcp", socket.IPPROTO_TCP), ("udp", socket.IPPROTO_UDP)),
    socket.AF_INET6: (("tcp6", socket.IPPROTO_TCP), ("udp6", socket.IPPROTO_UDP)),
}


class Lookup(enum.Enum):
    """The outcome of one lookup (counted per outcome by the caller)."""

    FOUND = "found"
    GONE = "process_gone"  # the process, or its descriptor, no longer exists
    NOT_A_SOCKET = "not_a_socket"  # the descriptor now names something else
    NOT_LISTED = "not_listed"  # no TCP/UDP socket of the namespace has that inode (closed meanwhile)
    MISMATCH = "mismatch"  # a socket, but not the one of the event (descriptor reused)


@dataclass(frozen=True)
class SocketLookup:
    outcome: Lookup
    info: SocketInfo | None = None


def find_inode(data: bytes, inode: int, family: int, protocol: int) -> SocketInfo | None:
    """The socket with ``inode`` in /proc/net/{tcp,udp}[6] text, without parsing other lines."""
    needle = b" %d " % inode
    start = data.find(needle)
    while start >= 0:
        line_start = data.rfind(b"\n", 0, start) + 1
        line_end = data.find(b"\n", start)
        line = data[line_start : line_end if line_end >= 0 else len(data)]
        for info in parse_inet_sockets(b"header\n" + line, family, protocol):
            if info.inode == inode:
                return info
        start = data.find(needle, start + 1)
    return None


def socket_inode(pid: int, fd: int, proc_root: str = "/proc") -> int | Lookup:
    """The inode of ``pid``'s descriptor ``fd`` if it is a socket; GONE or NOT_A_SOCKET else."""
    try:
        link = os.readlink(f"{proc_root}/{pid}/fd/{fd}")
    except (FileNotFoundError, ProcessLookupError):
        return Lookup.GONE
    except OSError:
        return Lookup.GONE  # refused (another pid namespace) counts as not readable
    inode = pf.parse_socket_inode(link)
    return inode if inode is not None else Lookup.NOT_A_SOCKET


class _Pidfd:
    """pidfd_getfd(2) (Linux 5.6): a copy of another process's descriptor, so the socket
    itself answers getsockname/getpeername in constant time, in whatever namespace it is.
    Where the kernel (or a security module) refuses it, the /proc path is used instead."""

    available = hasattr(os, "pidfd_open")
    _libc: Any = None

    @classmethod
    def getfd(cls, pid: int, fd: int) -> int | Lookup | None:
        """A descriptor of our own for ``pid``'s ``fd``; GONE; or None (use /proc)."""
        if not cls.available:
            return None
        if cls._libc is None:
            cls._libc = ctypes.CDLL(None, use_errno=True)
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return Lookup.GONE
        except OSError:
            return None
        try:
            dup = cls._libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
            err = ctypes.get_errno()
        finally:
            os.close(pidfd)
        if dup >= 0:
            return int(dup)
        if err in (errno.EBADF, errno.ESRCH):
            return Lookup.GONE
        if err == errno.ENOSYS:
            cls.available = False
        return None


def _socket_of(dup: int) -> SocketLookup:
    """Read our copy ``dup`` of a socket (and close it)."""
    try:
        inode = os.fstat(dup).st_ino
        sock = socket.socket(fileno=dup)
    except OSError:
        os.close(dup)
        return SocketLookup(Lookup.NOT_A_SOCKET)
    with sock:
        if sock.family not in _FILES or sock.type not in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            return SocketLookup(Lookup.NOT_A_SOCKET)
        protocol = socket.IPPROTO_TCP if sock.type == socket.SOCK_STREAM else socket.IPPROTO_UDP
        local = sock.getsockname()
        try:
            remote = sock.getpeername()
        except OSError:
            remote = ("", 0)
    return SocketLookup(
        Lookup.FOUND,
        SocketInfo(inode, int(sock.family), protocol, local[0], local[1], remote[0], remote[1], "", "", False),
    )


def lookup(
    pid: int, fd: int, family: int, proc_root: str = "/proc", *, need_peer: bool = False, use_pidfd: bool = True
) -> SocketLookup:
    """The TCP or UDP socket behind ``pid``'s ``fd``.

    From the socket itself where pidfd_getfd allows (constant time); else, or when the peer
    is needed and not known yet (a connect still in progress), from the process's namespace
    in /proc (a read of every socket of the namespace)."""
    if use_pidfd and proc_root == "/proc":
        dup = _Pidfd.getfd(pid, fd)
        if isinstance(dup, Lookup):
            return SocketLookup(dup)
        if dup is not None:
            found = _socket_of(dup)
            if found.info is None or not need_peer or found.info.remote_port:
                return found
    return _lookup_proc(pid, fd, family, proc_root)


def _lookup_proc(pid: int, fd: int, family: int, proc_root: str) -> SocketLookup:
    inode = socket_inode(pid, fd, proc_root)
    if isinstance(inode, Lookup):
        return SocketLookup(inode)
    for name, protocol in _FILES.get(family, ()):
        try:
            data = pf.read_file(f"{proc_root}/{pid}/net/{name}")
        except (FileNotFoundError, ProcessLookupError):
            return SocketLookup(Lookup.GONE)
        except OSError:
            continue
        info = find_inode(data, inode, family, protocol)
        if info is not None:
            return SocketLookup(Lookup.FOUND, info)
    return SocketLookup(Lookup.NOT_LISTED)


def process_start_time(pid: int, boot_time: int | None, proc_root: str = "/proc") -> int | None:
    """``pid``'s start as processes.start_time gives it (UNIX seconds), None when gone."""
    if boot_time is None:
        return None
    try:
        _, fields = pf.parse_stat(pf.read_pid_file(f"{proc_root}/{pid}/stat"))
        return boot_time + int(fields[pf.STAT_STARTTIME]) // pf.CLK_TCK
    except (OSError, ValueError, IndexError):
        return None


def _address(text: object) -> str | None:
    """Comparable address text (IPv4-mapped IPv6 as IPv4), None when not an address."""
    if text is None:
        return None
    try:
        address = ipaddress.ip_address(str(text).partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


class SocketEnricher:
    """Completes socket_events rows from /proc at event time, within a lookup budget.

    ``budget`` lookups per second at most (a token bucket on the caller's monotonic
    clock): a host accepting thousands of connections per second must not spend its CPU
    on /proc/net; rows over budget keep their NULLs and are counted.  ``counts`` holds
    one counter per :class:`Lookup` outcome plus ``over_budget`` and ``start_time_gone``.
    """

    def __init__(self, *, proc_root: str = "/proc", boot_time: int | None = None, budget: float = 2000.0) -> None:
        self.proc_root = proc_root
        self.boot_time = boot_time
        self.budget = budget
        self._tokens = budget
        self._last: float | None = None
        self.counts: dict[str, int] = {}

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def _take(self, now: float) -> bool:
        if self._last is not None:
            self._tokens = min(self.budget, self._tokens + (now - self._last) * self.budget)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def enrich(self, row: dict[str, Any], exit_code: int | None, now: float) -> None:
        """Fill process_start_time, and for IP sockets the local end, protocol and community_id."""
        pid = row["pid"]
        start = process_start_time(pid, self.boot_time, self.proc_root)
        row["process_start_time"] = start
        if start is None:
            self._count("start_time_gone")
        family, action = row.get("family"), row.get("action")
        if family not in _FILES or row.get("status") == "failed":
            return
        fd = exit_code if action == "accept" else _to_int(row.get("fd"))
        if fd is None or fd < 0:
            return
        if not self._take(now):
            self._count("over_budget")
            return
        found = lookup(pid, fd, family, self.proc_root, need_peer=action != "bind")
        if found.info is None:
            self._count(found.outcome.value)
            return
        info = found.info
        if not _agrees(row, action, info) or (start is not None and start > row.get("time", start) + 1):
            self._count(Lookup.MISMATCH.value)  # another socket on that descriptor, or another process on that pid
            return
        self._count(Lookup.FOUND.value)
        row["protocol"] = info.protocol
        row["local_address"], row["local_port"] = info.local_address, info.local_port
        local, remote = _address(info.local_address), _address(row.get("remote_address"))
        if action == "bind" or info.protocol not in (socket.IPPROTO_TCP, socket.IPPROTO_UDP):
            return
        if local is None or remote is None or ipaddress.ip_address(local).is_unspecified:
            return
        try:
            row["community_id"] = community_id(info.protocol, local, remote, info.local_port, row["remote_port"])
        except (ValueError, KeyError):
            pass


def _to_int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _agrees(row: dict[str, Any], action: object, info: SocketInfo) -> bool:
    """The socket found is the one of the event: same remote end, or the bound address."""
    if action == "bind":
        port = row.get("local_port")
        bound = _address(row.get("local_address"))
        return (not port or port == info.local_port) and bound in (None, _address(info.local_address))
    return (
        _address(row.get("remote_address")) == _address(info.remote_address)
        and row.get("remote_port") == info.remote_port
    )
