"""The kernel audit netlink protocol on raw sockets: message codec and control requests.

``socket(AF_NETLINK, SOCK_RAW, NETLINK_AUDIT)``; every message is a 16-byte
``nlmsghdr`` (host order) and a payload.  Control requests (AUDIT_GET/SET, rule
add/delete/list) are answered by an ``NLMSG_ERROR`` ack and, for GET and LIST,
by replies that may come before or after the ack.  Audit *records* come one per
datagram, with an unreliable ``nlmsg_len`` on the unicast path, so a record's text
is the whole datagram after the header.

:class:`AuditNetlink` is a small blocking client with timeouts; callers on an
event loop run its requests in a thread or during setup/teardown.  Socket setup and
the ``nlmsghdr`` codec are the shared ones of :mod:`eventsources._netlink`.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time
from dataclasses import astuple, dataclass, fields

from .._netlink import NLMSGHDR, open_netlink, pack_nlmsg

__all__ = [
    "AUDIT_NLGRP_READLOG",
    "NETLINK_AUDIT",
    "AuditNetlink",
    "AuditStatus",
    "NetlinkError",
    "pack_message",
    "parse_control_datagram",
]

NETLINK_AUDIT = 9
AUDIT_NLGRP_READLOG = 1  # multicast group: a read-only copy of every record

NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE, NLMSG_OVERRUN = 1, 2, 3, 4

AUDIT_GET = 1000
AUDIT_SET = 1001
AUDIT_ADD_RULE = 1011
AUDIT_DEL_RULE = 1012
AUDIT_LIST_RULES = 1013
AUDIT_FIRST_USER_MSG = 1100  # types from here on are records, not control replies

# struct audit_status mask bits
STATUS_ENABLED = 0x0001
STATUS_FAILURE = 0x0002
STATUS_PID = 0x0004
STATUS_RATE_LIMIT = 0x0008
STATUS_BACKLOG_LIMIT = 0x0010
STATUS_BACKLOG_WAIT_TIME = 0x0020
STATUS_LOST = 0x0040

_ERRNO = struct.Struct("=i")


@dataclass(slots=True)
class AuditStatus:
    """``struct audit_status`` (44 bytes on 5.x+ kernels; older ones send fewer fields)."""

    mask: int = 0
    enabled: int = 0
    failure: int = 0
    pid: int = 0
    rate_limit: int = 0
    backlog_limit: int = 0
    lost: int = 0
    backlog: int = 0
    feature_bitmap: int = 0
    backlog_wait_time: int = 0
    backlog_wait_time_actual: int = 0

    STRUCT = struct.Struct("=11I")

    @classmethod
    def unpack(cls, data: bytes) -> AuditStatus:
        data = data[: cls.STRUCT.size].ljust(cls.STRUCT.size, b"\0")
        return cls(*cls.STRUCT.unpack(data))

    def pack(self) -> bytes:
        return self.STRUCT.pack(*astuple(self))


_STATUS_FIELDS = tuple(f.name for f in fields(AuditStatus))


class NetlinkError(OSError):
    """The kernel answered a request with an error (errno set)."""


def pack_message(mtype: int, payload: bytes = b"", *, seq: int = 0, flags: int = NLM_F_REQUEST | NLM_F_ACK) -> bytes:
    """One netlink message: header + payload (padded to 4 bytes)."""
    return pack_nlmsg(mtype, payload, flags=flags, seq=seq)


def parse_control_datagram(buf: bytes) -> list[tuple[int, int, int, bytes]]:
    """Split a datagram into (type, flags, seq, payload) messages.

    A record (type >= 1100) always fills the rest of the datagram: its nlmsg_len
    is not trustworthy on the unicast path.
    """
    out: list[tuple[int, int, int, bytes]] = []
    off = 0
    size = len(buf)
    while off + NLMSGHDR.size <= size:
        length, mtype, flags, seq, _portid = NLMSGHDR.unpack_from(buf, off)
        if mtype >= AUDIT_FIRST_USER_MSG or length < NLMSGHDR.size:
            out.append((mtype, flags, seq, buf[off + NLMSGHDR.size :]))
            break
        out.append((mtype, flags, seq, buf[off + NLMSGHDR.size : off + length]))
        off += (length + 3) & ~3
    return out


def open_audit_socket(groups: int = 0, rcvbuf: int = 0) -> socket.socket:
    """A bound NETLINK_AUDIT socket (``groups`` = multicast bitmask); OSError when refused."""
    return open_netlink(NETLINK_AUDIT, groups=groups, rcvbuf=rcvbuf)


class AuditNetlink:
    """Blocking request/ack client on one audit socket.

    Records that arrive while waiting for an answer (on a socket that also
    receives events) are kept in ``stash`` as (type, payload) for the caller.
    """

    def __init__(self, sock: socket.socket | None = None, *, timeout: float = 2.0) -> None:
        self.sock = sock if sock is not None else open_audit_socket()
        self.timeout = timeout
        self.stash: list[tuple[int, bytes]] = []
        self._seq = (os.getpid() << 8) & 0x7FFFFFFF

    def close(self) -> None:
        self.sock.close()

    def request(self, mtype: int, payload: bytes = b"", *, reply: int | None = None) -> tuple[int, list[bytes]]:
        """Send one request; wait for its ack (and replies of type ``reply``).

        Returns (ack value, replies).  A negative ack raises :class:`NetlinkError`.
        """
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        seq = self._seq
        self.sock.send(pack_message(mtype, payload, seq=seq))
        replies: list[bytes] = []
        acked, done, ack_value = False, reply is None, 0
        deadline = time.monotonic() + self.timeout
        blocking = self.sock.gettimeout()
        try:
            while not (acked and done):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"audit netlink request {mtype}: no answer in {self.timeout:.1f} s")
                self.sock.settimeout(left)
                buf = self.sock.recv(1 << 16)
                for rtype, flags, rseq, data in parse_control_datagram(buf):
                    if rtype >= AUDIT_FIRST_USER_MSG and rtype != reply:
                        self.stash.append((rtype, data))
                    elif rseq != seq:
                        continue  # a late answer to an earlier request
                    elif rtype == NLMSG_ERROR:
                        ack_value = _ERRNO.unpack_from(data)[0]
                        if ack_value < 0:
                            err = -ack_value
                            raise NetlinkError(err, f"audit netlink request {mtype}: {os.strerror(err)}")
                        acked = True
                    elif rtype == NLMSG_DONE:
                        done = True
                    elif rtype == reply:
                        replies.append(data)
                        if not flags & NLM_F_MULTI:
                            done = True
        finally:
            self.sock.settimeout(blocking)
        return ack_value, replies

    # -- requests ------------------------------------------------------------------------
    def get_status(self) -> AuditStatus:
        _, replies = self.request(AUDIT_GET, reply=AUDIT_GET)
        if not replies:
            raise NetlinkError(errno.EPROTO, "audit netlink AUDIT_GET: no status reply")
        return AuditStatus.unpack(replies[0])

    def set_status(self, **values: int) -> int:
        """AUDIT_SET the named fields (mask computed); returns the ack value."""
        bits = {
            "enabled": STATUS_ENABLED,
            "failure": STATUS_FAILURE,
            "pid": STATUS_PID,
            "rate_limit": STATUS_RATE_LIMIT,
            "backlog_limit": STATUS_BACKLOG_LIMIT,
            "backlog_wait_time": STATUS_BACKLOG_WAIT_TIME,
            "lost": STATUS_LOST,
        }
        status = AuditStatus()
        for name, value in values.items():
            if name not in bits:
                raise ValueError(f"audit status field {name!r} cannot be set (settable: {sorted(bits)})")
            status.mask |= bits[name]
            setattr(status, name, value)
        ack, _ = self.request(AUDIT_SET, status.pack())
        return ack

    def list_rules(self) -> list[bytes]:
        """Every rule the kernel holds, as raw ``struct audit_rule_data`` bytes."""
        _, replies = self.request(AUDIT_LIST_RULES, reply=AUDIT_LIST_RULES)
        return replies

    def add_rule(self, rule: bytes) -> None:
        self.request(AUDIT_ADD_RULE, rule)

    def delete_rule(self, rule: bytes) -> None:
        self.request(AUDIT_DEL_RULE, rule)
