"""Netlink plumbing shared by the kernel event sources (audit, proc connector, uevents).

* :func:`open_netlink`: a bound ``AF_NETLINK`` socket, with a big receive buffer when asked;
* :func:`pack_nlmsg` / :data:`NLMSGHDR`: the 16-byte ``struct nlmsghdr`` (host order);
* :class:`NetlinkReader`: drains a non-blocking socket from the event loop into a
  callback, one datagram at a time (or a list of them per read, for a busy source),
  until EAGAIN; ENOBUFS (the kernel dropped datagrams because the receive buffer was
  full) is counted, not fatal.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import socket
import struct
from collections.abc import Callable

__all__ = ["NLMSGHDR", "SO_RCVBUFFORCE", "NetlinkReader", "open_netlink", "pack_nlmsg", "set_rcvbuf"]

log = logging.getLogger(__name__)

SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
NLMSGHDR = struct.Struct("=IHHII")  # nlmsg_len, nlmsg_type, nlmsg_flags, nlmsg_seq, nlmsg_pid (port id)
RECV_SIZE = 65536  # larger than any datagram these families send
MANY_CHUNK = 1024  # datagrams handed over at most per call, with ``many`` (a drain until EAGAIN is unbounded)


def set_rcvbuf(sock: socket.socket, size: int) -> None:
    """Ask for a ``size``-byte receive buffer: SO_RCVBUFFORCE (root), else SO_RCVBUF (capped by rmem_max)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def open_netlink(protocol: int, *, groups: int = 0, sock_type: int = socket.SOCK_RAW, rcvbuf: int = 0) -> socket.socket:
    """A netlink socket bound to ``groups`` (multicast bitmask); OSError when refused (nothing leaks)."""
    sock = socket.socket(socket.AF_NETLINK, sock_type, protocol)
    try:
        sock.bind((0, groups))
        if rcvbuf:
            set_rcvbuf(sock, rcvbuf)
    except BaseException:
        sock.close()
        raise
    return sock


def pack_nlmsg(mtype: int, payload: bytes = b"", *, flags: int = 0, seq: int = 0) -> bytes:
    """One netlink message: header + payload, padded to 4 bytes (``nlmsg_len`` counts no padding)."""
    pad = (-len(payload)) % 4
    return NLMSGHDR.pack(NLMSGHDR.size + len(payload), mtype, flags, seq, 0) + payload + b"\0" * pad


class NetlinkReader:
    """Feeds every datagram of a non-blocking netlink socket to ``handle`` from the event loop.

    ``batch`` caps the datagrams read per readable callback (None: until EAGAIN), so a
    flood cannot starve the loop; ``before_batch`` runs once per callback (e.g. to read
    the clock once), ``after_batch`` once it has handled what it read (e.g. to measure
    its cost).  ``overruns`` counts ENOBUFS over the reader's whole life.
    With ``many``, ``handle`` gets the list of datagrams one read took, in order (one
    call per read instead of one per datagram: audit sends eight per exec).
    ``linger`` (seconds) stops watching the socket for that long after a callback that
    emptied it, so a steady trickle is read in batches (fewer wake-ups of the loop);
    the kernel keeps queueing into the socket buffer meanwhile.
    """

    def __init__(
        self,
        handle: Callable[..., object],  # one datagram (bytes), or with ``many`` a list of them
        *,
        what: str,
        batch: int | None = None,
        before_batch: Callable[[], object] | None = None,
        after_batch: Callable[[], object] | None = None,
        linger: float = 0.0,
        many: bool = False,
    ) -> None:
        self.handle = handle
        self.after_batch = after_batch
        self.many = many
        self.what = what
        self.batch = batch
        self.before_batch = before_batch
        self.linger = linger
        self.overruns = 0
        self.sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._resume: asyncio.TimerHandle | None = None

    def attach(self, sock: socket.socket, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Make ``sock`` non-blocking and read it whenever it is readable."""
        self.detach(drain=False)
        sock.setblocking(False)
        self._loop = loop or asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)
        self.sock = sock

    def detach(self, *, drain: bool = True) -> socket.socket | None:
        """Stop watching; read what is queued already (``drain``); return the socket, still open."""
        sock, self.sock = self.sock, None
        if sock is None:
            return None
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        if self._loop is not None:
            self._loop.remove_reader(sock.fileno())
            self._loop = None
        if drain:
            if self.before_batch is not None:
                self.before_batch()
            self.drain(sock)
            if self.after_batch is not None:
                self.after_batch()
        return sock

    def _readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        if self.before_batch is not None:
            self.before_batch()
        emptied = self.drain(sock, self.batch)
        if self.after_batch is not None:
            self.after_batch()
        if emptied and self.linger > 0 and self._loop is not None:
            self._loop.remove_reader(sock.fileno())
            self._resume = self._loop.call_later(self.linger, self._watch_again, sock)

    def _watch_again(self, sock: socket.socket) -> None:
        self._resume = None
        if self.sock is sock and self._loop is not None:
            self._loop.add_reader(sock.fileno(), self._readable)

    def drain(self, sock: socket.socket, limit: int | None = None) -> bool:
        """Read ``sock`` (non-blocking) until EAGAIN, or ``limit`` datagrams; count ENOBUFS.

        True when the socket was emptied (False: ``limit`` reached or a read error).
        """
        recv = sock.recv
        bufs: list[bytes] = []
        handle = bufs.append if self.many else self.handle
        emptied = False
        try:
            for _ in itertools.repeat(None) if limit is None else range(limit):
                try:
                    buf = recv(RECV_SIZE)
                except (BlockingIOError, InterruptedError):
                    emptied = True
                    break
                except OSError as exc:
                    if exc.errno == errno.ENOBUFS:  # the receive buffer overflowed: datagrams were lost
                        self.overruns += 1
                        continue
                    log.warning("%s: reading the netlink socket failed: %s", self.what, exc)
                    break
                handle(buf)
                if len(bufs) >= MANY_CHUNK:  # a drain until EAGAIN hands its datagrams over in chunks
                    chunk, bufs = bufs, []
                    handle = bufs.append
                    self.handle(chunk)
        finally:
            if bufs:
                self.handle(bufs)
        return emptied
