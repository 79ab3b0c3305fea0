"""The proc connector (NETLINK_CONNECTOR, CN_IDX_PROC): exec/fork/exit as they happen.

The fallback process source when kernel audit is not permitted.  The kernel sends
binary fork/exec/exit notices carrying pids only, so on exec we read
/proc/PID/{exe,cmdline,cwd,status,cgroup} right away (:mod:`eventsources.procinfo`).
A process that exits before we read it still yields a row, with what the notice
carried (pid, parent from its fork) and NULL path/cmdline; such misses are counted.
Overruns show only as ENOBUFS on recv (the kernel keeps no lost counter): counted.

Needs root (CAP_NET_ADMIN) in the initial user and network namespace; elsewhere
start() raises SourceUnavailable with the kernel's answer.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ._netlink import NLMSGHDR, NetlinkReader, open_netlink, pack_nlmsg
from .base import EventSource, Sink, SourceMode, SourceStatus, SourceUnavailable
from .procinfo import ProcessGone, executable_columns, snapshot

__all__ = ["ProcConnectorSource", "ProcEvent", "build_listen_message", "parse_messages"]

log = logging.getLogger(__name__)

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
SOL_NETLINK = 270
NETLINK_DROP_MEMBERSHIP = 2
CN_VAL_PROC = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2

PROC_EVENT_NONE = 0x0
PROC_EVENT_FORK = 0x1
PROC_EVENT_EXEC = 0x2
PROC_EVENT_EXIT = 0x80000000

_NLHDR = NLMSGHDR
_CNMSG = struct.Struct("=IIIIHH")  # cn_msg: idx, val, seq, ack, len, flags
_EVHDR = struct.Struct("=IIQ")  # proc_event: what, cpu, timestamp_ns
_FORK = struct.Struct("=iiii")  # parent_pid, parent_tgid, child_pid, child_tgid
_EXEC = struct.Struct("=ii")  # pid, tgid
_EXIT = struct.Struct("=iiIIii")  # pid, tgid, exit_code, exit_signal, parent_pid, parent_tgid

_KINDS = {PROC_EVENT_NONE: "ack", PROC_EVENT_FORK: "fork", PROC_EVENT_EXEC: "exec", PROC_EVENT_EXIT: "exit"}
_PARENTS_MAX = 65_536  # pids whose parent we remember from their fork notice


@dataclass(frozen=True, slots=True)
class ProcEvent:
    """One decoded proc connector notice (only the kinds we use)."""

    kind: str  # "ack", "fork", "exec", "exit"
    timestamp_ns: int  # kernel monotonic clock (ns since boot)
    pid: int = 0  # tgid of the process concerned (the child for fork)
    tid: int = 0  # thread id (pid in kernel terms)
    parent: int = 0  # parent tgid (fork, exit)
    exit_code: int = 0  # wait status (exit)
    error: int = 0  # ack: errno the kernel answered with


@dataclass(slots=True)
class _Counters:
    events: int = 0
    rows: int = 0
    malformed: int = 0
    enrich_missed: int = 0
    threads_skipped: int = 0


def build_listen_message(op: int = PROC_CN_MCAST_LISTEN, seq: int = 0) -> bytes:
    """nlmsghdr + cn_msg + u32 op: subscribe to (or ignore) process events."""
    payload = struct.pack("=I", op)
    cn = _CNMSG.pack(CN_IDX_PROC, CN_VAL_PROC, seq, 0, len(payload), 0) + payload
    return pack_nlmsg(NLMSG_DONE, cn, seq=seq)


def parse_messages(buf: bytes) -> tuple[list[ProcEvent], int]:
    """Decode one datagram into (events of the kinds we use, malformed message count).

    Kinds we do not use (uid, gid, sid, comm, ptrace, coredump) are skipped silently.
    """
    events: list[ProcEvent] = []
    malformed = 0
    off = 0
    while off + _NLHDR.size <= len(buf):
        length, _type, _flags, _seq, _pid = _NLHDR.unpack_from(buf, off)
        if length < _NLHDR.size or off + length > len(buf):
            malformed += 1
            break
        body = memoryview(buf)[off + _NLHDR.size : off + length]
        off += (length + 3) & ~3
        if len(body) < _CNMSG.size + _EVHDR.size:
            malformed += 1
            continue
        idx, val, _cseq, _ack, dlen, _cflags = _CNMSG.unpack_from(body)
        if idx != CN_IDX_PROC or val != CN_VAL_PROC:
            continue
        data = body[_CNMSG.size : _CNMSG.size + dlen]
        if len(data) < _EVHDR.size:
            malformed += 1
            continue
        what, _cpu, ts = _EVHDR.unpack_from(data)
        kind = _KINDS.get(what)
        if kind is None:
            continue
        try:
            if what == PROC_EVENT_EXEC:
                tid, tgid = _EXEC.unpack_from(data, _EVHDR.size)
                events.append(ProcEvent("exec", ts, pid=tgid, tid=tid))
            elif what == PROC_EVENT_FORK:
                _ppid, ptgid, cpid, ctgid = _FORK.unpack_from(data, _EVHDR.size)
                events.append(ProcEvent("fork", ts, pid=ctgid, tid=cpid, parent=ptgid))
            elif what == PROC_EVENT_EXIT:
                tid, tgid, code, _sig, _ppid, ptgid = _EXIT.unpack_from(data, _EVHDR.size)
                events.append(ProcEvent("exit", ts, pid=tgid, tid=tid, parent=ptgid, exit_code=code))
            else:
                (err,) = struct.unpack_from("=I", data, _EVHDR.size)
                events.append(ProcEvent("ack", ts, error=err))
        except struct.error:
            malformed += 1
    return events, malformed


def exit_status(wait_status: int) -> int:
    """The exit code of a wait status, or -signal when a signal killed the process."""
    if wait_status & 0x7F:
        return -(wait_status & 0x7F)
    return (wait_status >> 8) & 0xFF


def _refused(what: str, exc: OSError) -> str:
    """The status detail for a socket the kernel refused."""
    if exc.errno in (errno.ECONNREFUSED, errno.EPERM, errno.EACCES):
        what = "proc connector subscribe failed (not in the initial network namespace, or no CAP_NET_ADMIN)"
    return f"{what}: {exc}"


class ProcConnectorSource(EventSource):
    """process_events rows from the proc connector (exec; fork and exit optional)."""

    name = "proc_connector"

    def __init__(
        self,
        sink: Sink,
        *,
        proc_root: str = "/proc",
        fork_events: bool = False,
        exit_events: bool = False,
        rcvbuf: int = 8 << 20,
    ) -> None:
        super().__init__(sink)
        self.proc_root = proc_root
        self.fork_events = fork_events
        self.exit_events = exit_events
        self.rcvbuf = rcvbuf
        self._reader = NetlinkReader(self._datagram, what="proc connector")
        self._ack: asyncio.Future[int] | None = None
        self._parents: OrderedDict[int, int] = OrderedDict()
        self._n = _Counters()
        self._mode = SourceMode.INACTIVE
        self._detail = "not started"

    async def start(self) -> None:
        if self._reader.sock is not None:
            return
        try:
            sock = open_netlink(NETLINK_CONNECTOR, groups=CN_IDX_PROC, sock_type=socket.SOCK_DGRAM, rcvbuf=self.rcvbuf)
        except OSError as exc:
            self._fail(_refused("cannot open a NETLINK_CONNECTOR socket", exc))
            raise SourceUnavailable(self._detail) from exc
        try:
            sock.setblocking(False)
            sock.send(build_listen_message(PROC_CN_MCAST_LISTEN))
        except OSError as exc:
            sock.close()
            self._fail(_refused("proc connector subscribe failed (kernel refused)", exc))
            raise SourceUnavailable(self._detail) from exc
        loop = asyncio.get_running_loop()
        self._ack = loop.create_future()
        self._reader.attach(sock, loop)
        try:
            err = await asyncio.wait_for(asyncio.shield(self._ack), timeout=2.0)
        except TimeoutError:
            err = None
        if err:
            await self.stop()
            self._fail(f"proc connector refused the subscription: {os.strerror(err)}")
            raise SourceUnavailable(self._detail)
        self._mode = SourceMode.ACTIVE
        self._detail = (
            "listening to exec"
            + ("/fork" if self.fork_events else "")
            + ("/exit" if self.exit_events else "")
            + " notices; /proc read at exec time (short-lived processes may "
            "yield rows without path/cmdline)"
        )
        if err is None:
            self._detail += "; no ACK from the kernel yet"
        log.info("proc connector: %s", self._detail)

    async def stop(self) -> None:
        sock = self._reader.sock
        if sock is None:
            return
        try:  # leave the group first: the drain below then ends, however fast the host execs
            sock.setsockopt(SOL_NETLINK, NETLINK_DROP_MEMBERSHIP, CN_IDX_PROC)
        except OSError:
            pass
        self._reader.detach()  # and read what is already queued
        try:
            sock.send(build_listen_message(PROC_CN_MCAST_IGNORE))
        except OSError:
            pass  # closing the socket unsubscribes anyway
        sock.close()
        if self._ack is not None and not self._ack.done():
            self._ack.cancel()
        self._mode = SourceMode.STOPPED
        self._detail = "stopped"

    def status(self) -> SourceStatus:
        n = self._n
        return SourceStatus(
            name=self.name,
            mode=self._mode,
            tables=("process_events",),
            events_seen=n.rows,
            kernel_lost=self._reader.overruns,
            parse_errors=n.malformed,
            detail=self._detail,
            extra={
                "notices": n.events,
                "overruns_enobufs": self._reader.overruns,
                "enrich_missed": n.enrich_missed,
                "threads_skipped": n.threads_skipped,
            },
        )

    def _fail(self, detail: str) -> None:
        self._mode = SourceMode.FAILED
        self._detail = detail

    # -- reading ---------------------------------------------------------------------------

    def _datagram(self, buf: bytes) -> None:
        events, bad = parse_messages(buf)
        self._n.malformed += bad
        for ev in events:
            self._handle(ev)

    def _handle(self, ev: ProcEvent) -> None:
        self._n.events += 1
        if ev.kind == "exec":
            self._emit(self._exec_row(ev))
        elif ev.kind == "fork":
            if ev.tid != ev.pid:  # a new thread, not a new process
                self._n.threads_skipped += 1
                return
            self._remember_parent(ev.pid, ev.parent)
            if self.fork_events:
                row = self._exec_row(ev)
                row["syscall"] = "fork"
                row["parent"] = ev.parent
                self._emit(row)
        elif ev.kind == "exit":
            if ev.tid != ev.pid:
                self._n.threads_skipped += 1
                return
            self._parents.pop(ev.pid, None)
            if self.exit_events:
                self._emit(
                    {
                        "pid": ev.pid,
                        "parent": ev.parent,
                        "syscall": "exit",
                        "status": exit_status(ev.exit_code),
                        "time": int(time.time()),
                        "uptime": ev.timestamp_ns // 1_000_000_000,
                    }
                )
        elif ev.kind == "ack" and self._ack is not None and not self._ack.done():
            self._ack.set_result(ev.error)

    def _remember_parent(self, pid: int, parent: int) -> None:
        self._parents[pid] = parent
        if len(self._parents) > _PARENTS_MAX:
            self._parents.popitem(last=False)

    def _exec_row(self, ev: ProcEvent) -> dict[str, Any]:
        row: dict[str, Any]
        try:
            row = snapshot(ev.pid, self.proc_root)
        except ProcessGone:
            self._n.enrich_missed += 1
            row = {"pid": ev.pid, "parent": self._parents.get(ev.pid, -1)}
        row.update(executable_columns(row.get("path")))
        row["syscall"] = "execve"
        row["status"] = 0
        row["time"] = int(time.time())
        row["uptime"] = ev.timestamp_ns // 1_000_000_000
        return row

    def _emit(self, row: dict[str, Any]) -> None:
        self._n.rows += 1
        self.sink("process_events", row)
