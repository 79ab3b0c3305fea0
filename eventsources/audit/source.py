"""AuditSource: process_events and socket_events from the kernel audit netlink socket.

Owner mode (nobody else owns audit): register as the audit pid on the event socket,
enable audit, ``backlog_limit`` 8192 and ``backlog_wait_time`` 0 (a slow reader
loses records, counted by the kernel, instead of stalling the host), and install
``exit,always`` rules for both ABIs with our key and ``pid!=`` ourselves.
Read-only mode (auditd owns it): read the multicast group next to it and add only
our keyed rules.  stop() puts back exactly what start() found.

With a ``state_path``, owner mode first saves the state it found to that file
(atomically) and a clean stop deletes it after restoring; a file still there at
start was left by a crashed run, and is the state stop() puts back (the kernel
shows what the crashed run set).  A corrupt file is logged and ignored.

Control requests go over their own socket; the event socket is read on the event
loop (``add_reader``) in a tight non-blocking loop, then left alone for ``LINGER``
(10 ms; 50 ms under a CPU budget) once emptied so records are read in batches rather than one wake-up per
exec; records are parsed lazily and only for the types rows are built from.

A socket_events row is completed at event time from /proc (eventsources/socketinfo.py):
the caller's start time and, while the process still holds the socket, its local end,
protocol and Community ID.

Each batch's cost is measured (the event loop thread's CPU time).  Under a CPU budget
(:meth:`AuditSource.set_cpu_budget`, from agentd's watchdog) the source degrades to keep
to it (:mod:`eventsources.budget`): rows without the /proc reads first (``cgroup_path``,
``container_id`` and the file times NULL, counted in ``enrichment_skipped``; a socket_events
row keeps its local end and Community ID, what attribution joins on), then new
events dropped unread (counted in ``shed``).  The socket is read all the while: the kernel
never loses records because of it (with ``audit -f 2`` a kernel loss would panic the host).
"""

from __future__ import annotations

import asyncio
import atexit
import errno
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from tables.procfs import CgroupReader, boot_time

from .._netlink import NetlinkReader
from ..base import EventSource, Sink, SourceMode, SourceStatus, SourceUnavailable
from ..budget import CpuBudget, Level
from ..procinfo import FileTimes
from ..socketinfo import SocketEnricher
from .netlink import AUDIT_NLGRP_READLOG, AuditNetlink, AuditStatus, NetlinkError, open_audit_socket
from .reassemble import AuditEvent, Reassembler
from .records import CWD, EOE, EXECVE, PATH, SOCKADDR, SOCKETCALL, SYSCALL, Record, RecordError, parse_message
from .rows import RowBuilder
from .rules import AUDIT_NOT_EQUAL, AUDIT_PID, DEFAULT_KEY, agent_rules, native_abis, parse_rule
from .state import SavedState, StateFileError, load_state, remove_state, save_state

__all__ = ["AuditSource", "pid_alive"]

log = logging.getLogger(__name__)

MODES = ("auto", "owner", "read-only")
RCVBUF = 32 << 20  # kauditd must never wait on us: 32 MiB of records
LIVE_TYPES = frozenset({SYSCALL, PATH, SOCKADDR, SOCKETCALL, CWD, EXECVE, EOE})  # PROCTITLE is not needed live
BATCH = 1024  # datagrams per readable callback before yielding to the loop
#: Seconds between reads of a socket that was emptied: an exec's ~8 records read in batches, not one by one.
#: Short by default: a socket_events row is completed from /proc while its process still holds the socket
#: (a client that lives 25 ms is gone after a 50 ms wait, and attribution loses its local port).
LINGER = 0.01
#: Under a CPU budget (the watchdog's): fewer, larger reads; the cheaper path before rows go lean.
LINGER_BUDGET = 0.05
MAX_EXAMPLES = 5
MAX_DROPPING = 4096  # events being dropped at once (their remaining records are dropped as they come)


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _comm(pid: int, proc_root: str) -> str:
    try:
        with open(f"{proc_root}/{pid}/comm", "rb") as f:
            return f.read().strip().decode("utf-8", "replace")
    except OSError:
        return "?"


def _unavailable(what: str, exc: OSError) -> SourceUnavailable:
    reasons = {
        errno.EPERM: "not permitted (needs CAP_AUDIT_CONTROL in the initial pid namespace)",
        errno.ECONNREFUSED: "refused (audit control only works from the initial user namespace; in a container?)",
        errno.EPROTONOSUPPORT: "the kernel has no audit support (CONFIG_AUDIT off)",
        errno.EACCES: "access denied",
    }
    reason = reasons.get(exc.errno or 0, os.strerror(exc.errno) if exc.errno else str(exc))
    return SourceUnavailable(f"audit: {what}: {reason} [{exc}]")


class AuditSource(EventSource):
    """Kernel audit -> ``sink("process_events", row)`` / ``sink("socket_events", row)``."""

    name = "audit"

    def __init__(
        self,
        sink: Sink,
        *,
        socket_events: bool = False,
        mode: str = "auto",
        backlog_limit: int = 8192,
        proc_root: str = "/proc",
        key: str = DEFAULT_KEY,
        reorder_timeout: float = 2.0,
        status_interval: float = 5.0,
        state_path: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        super().__init__(sink)
        if mode not in MODES:
            raise ValueError(f"audit mode must be one of {MODES}, not {mode!r}")
        self.socket_events = socket_events
        self.requested_mode = mode
        self.backlog_limit = backlog_limit
        self.proc_root = proc_root
        self.key = key
        self.status_interval = status_interval
        self.state_path = state_path
        self.own_pid = os.getpid()
        self.mode = SourceMode.INACTIVE
        self.detail = ""
        self._ctl: AuditNetlink | None = None
        self._ctl_lock = threading.Lock()  # the control socket serves one request at a time
        self._events: socket.socket | None = None
        self._saved: AuditStatus | None = None
        self._set_pid = False
        self._changed: dict[str, int] = {}  # status field -> value to put back
        self._state_file = False  # the state file is ours: delete it once restored
        self.crash_recovered: SavedState | None = None  # a crashed run's saved state, being restored
        self._rules: list[bytes] = []
        self._pending_stash: list[tuple[int, bytes]] = []  # records that came with the AUDIT_SET ack
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._reader = NetlinkReader(
            self._feed_many,
            what="audit",
            batch=BATCH,
            before_batch=self._tick,
            after_batch=self._tock,
            linger=LINGER,
            many=True,
        )
        self._clock = clock  # the reader's clock (monotonic seconds), read once per batch
        self._cpu_clock = cpu_clock  # this thread's CPU seconds: what a batch cost
        self._now = clock()
        self._batch_cpu = 0.0  # the thread's CPU time when the batch began
        self._budget = CpuBudget()  # no budget until the watchdog sets one
        self._lean = False  # this batch: rows without the /proc reads
        self._shed = False  # this batch: new events dropped unread
        self._dropping: set[bytes] = set()  # audit(TS:SERIAL) of events being dropped
        self._file_times = FileTimes()
        self._reasm = Reassembler(timeout=reorder_timeout)
        self._builder = RowBuilder(own_pid=self.own_pid, socket_events=socket_events)
        self._cgroup_of = CgroupReader()  # the one cgroup reader of the event sources (tables.procfs)
        self._sockets = SocketEnricher(proc_root=proc_root)
        # counters
        self.records = 0
        self.ignored_records = 0
        self.events_seen = 0
        self.parse_errors = 0
        self.parse_examples: list[str] = []
        self.sink_errors = 0
        self.stale_rules_removed = 0
        self.cpu_seconds = 0.0  # CPU time spent reading and turning records into rows
        self.batches = 0  # reads of the event socket
        self.events_shed = 0  # events dropped unread to keep within the CPU budget
        self.enrichment_skipped = 0  # rows made without the /proc reads, to keep within the CPU budget
        self._lost_start: int | None = None
        self._lost_now = 0
        self._backlog = 0

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        if self._events is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._builder.boot_time = self._sockets.boot_time = boot_time(self.proc_root)
        setup = asyncio.ensure_future(asyncio.to_thread(self._setup))
        try:
            await asyncio.shield(setup)
        except asyncio.CancelledError:
            # the thread goes on; once it is done, put back whatever it changed
            try:
                await setup
            except BaseException:  # noqa: BLE001 - a failed setup has restored already
                pass
            await asyncio.to_thread(self._restore)
            self.mode, self.detail = SourceMode.INACTIVE, "start was cancelled; audit state restored"
            raise
        atexit.register(self._restore)  # a process that exits without stop() still restores
        assert self._events is not None
        stash, self._pending_stash = self._pending_stash, []
        for rtype, payload in stash:
            self.records += 1
            if rtype in LIVE_TYPES:
                self._feed_record(rtype, payload)
        self._reader.attach(self._events, self._loop)
        self._task = asyncio.create_task(self._housekeeping(), name="audit-housekeeping")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - teardown must go on
                pass
            self._task = None
        self._reader.detach()  # and read what is queued; the socket is closed by _restore
        for event in self._reasm.flush():
            self._emit(event)
        await asyncio.to_thread(self._restore)
        atexit.unregister(self._restore)
        if self.mode in (SourceMode.OWNER, SourceMode.READ_ONLY, SourceMode.LOST):
            self.detail = f"stopped (was {self.mode}); audit state restored"
            self.mode = SourceMode.STOPPED

    def set_cpu_budget(self, budget: float | None) -> bool:
        """Keep the source's CPU within ``budget`` seconds a second (None: no budget), degrading as needed."""
        self._budget.set_rate(budget, self._clock())
        self._reader.linger = LINGER if budget is None else LINGER_BUDGET
        if budget is None:
            self._lean = self._shed = False
        return True

    def status(self) -> SourceStatus:
        lost = self._lost_now - self._lost_start if self._lost_start is not None else 0
        budget = self._budget.rate
        detail = self.detail
        if budget is not None:
            detail += f"; CPU budget {100 * budget:.1f}% of a core (watchdog): {self.events_shed} events shed"
        return SourceStatus(
            name=self.name,
            mode=self.mode,
            tables=("process_events", "socket_events") if self.socket_events else ("process_events",),
            events_seen=self.events_seen,
            kernel_lost=lost,
            parse_errors=self.parse_errors + self._builder.malformed,
            detail=detail,
            shed=self.events_shed,
            degraded=self.enrichment_skipped,
            cpu_seconds=self.cpu_seconds,
            extra={
                "records": self.records,
                "ignored_records": self.ignored_records,
                "socket_overruns": self.overruns,
                "incomplete_events": self._reasm.timed_out + self._reasm.evicted,
                "pending_events": len(self._reasm),
                "skipped": dict(self._builder.skipped),
                "rules": len(self._rules),
                "stale_rules_removed": self.stale_rules_removed,
                "kernel_lost_total": self._lost_now,
                "kernel_backlog": self._backlog,
                "sink_errors": self.sink_errors,
                "socket_lookups": dict(self._sockets.counts),
                "parse_error_examples": (self.parse_examples + self._builder.examples)[:MAX_EXAMPLES],
                "state_path": self.state_path,
                "crash_recovered": self.crash_recovered is not None,
                "cpu_budget": budget,
                "level": ("shed" if self._shed else "lean" if self._lean else "full") if budget is not None else None,
                "enrichment_skipped": self.enrichment_skipped,
                "cpu_s": round(self.cpu_seconds, 3),
                "batches": self.batches,
                "file_stats": self._file_times.stats,
            },
        )

    # -- setup and restore (blocking; run in a thread) -------------------------------------
    def _setup(self) -> None:
        try:
            self._ctl = AuditNetlink(open_audit_socket())
        except OSError as exc:
            raise _unavailable("cannot open the audit netlink socket", exc) from exc
        try:
            self._setup_with(self._ctl)
        except BaseException as exc:
            self._restore()
            self.mode, self.detail = SourceMode.FAILED, str(exc)
            raise

    def _setup_with(self, ctl: AuditNetlink) -> None:
        try:
            found = ctl.get_status()
        except OSError as exc:
            raise _unavailable("AUDIT_GET refused", exc) from exc
        self._saved = found
        self._lost_start = self._lost_now = found.lost
        owner = found.pid if found.pid and found.pid != self.own_pid and pid_alive(found.pid) else 0
        if found.enabled == 2 and self.requested_mode == "owner":
            raise SourceUnavailable("audit: the audit configuration is locked (enabled=2) until reboot")
        if owner and self.requested_mode == "owner":
            raise SourceUnavailable(
                f"audit: {_comm(owner, self.proc_root)} (pid {owner}) owns audit; mode=owner does not take it over"
            )
        read_only = owner or self.requested_mode == "read-only" or found.enabled == 2
        mode = SourceMode.READ_ONLY if read_only else SourceMode.OWNER
        if mode == SourceMode.OWNER:  # read-only mode changes no settings: a state file is left as it is
            self._save_found(found, pid_free=found.pid == 0)  # before anything changes
        self._remove_stale_rules(ctl)
        if mode == SourceMode.OWNER:
            try:
                self._become_owner(ctl, found)
            except NetlinkError as exc:
                if exc.errno != errno.EEXIST or self.requested_mode == "owner":
                    raise _unavailable("registering as the audit pid failed", exc) from exc
                mode = SourceMode.READ_ONLY  # someone registered between our GET and SET
                owner = ctl.get_status().pid
                self._changed.clear()  # the new owner's settings are not ours to undo
                if self.crash_recovered is not None:
                    self._state_file = False  # kept, as in read-only mode: not ours to act on now
                    self.crash_recovered = None
        if mode == SourceMode.READ_ONLY:
            self._open_multicast()
            who = (
                f"{_comm(owner, self.proc_root)} (pid {owner}) owns audit" if owner else "read-only mode was requested"
            )
            self.detail = f"{who}; reading the audit multicast group (best effort, drops show as socket_overruns)"
            if found.enabled == 0:
                self.detail += "; audit is disabled by its owner, so no records will arrive"
            if found.enabled == 2:
                self.detail += "; audit configuration is locked (enabled=2), rules cannot be added"
        self.mode = mode
        if found.enabled != 2:
            self._add_rules(ctl)
        if mode == SourceMode.OWNER:
            self.detail = (
                f"owner: audit pid {self.own_pid}, backlog_limit {self.backlog_limit}, backlog_wait_time 0, "
                f"{len(self._rules)} rules with key {self.key!r}"
            )
            if self.crash_recovered is not None:
                self.detail += (
                    f"; a crashed run (pid {self.crash_recovered.agent_pid}) left audit changed: "
                    f"stop() puts back what it found ({self.state_path})"
                )

    def _save_found(self, found: AuditStatus, *, pid_free: bool) -> None:
        """Record the state to put back: a crashed run's file, or else ``found``, saved first."""
        if self.state_path is None:
            return
        try:
            saved = load_state(self.state_path)
        except StateFileError as exc:
            log.warning("audit: ignoring the corrupt state file %s (%s); starting fresh", self.state_path, exc)
            saved = None
        if saved is not None:
            self.crash_recovered = saved
            self._state_file = True
            log.warning(
                "audit: %s was left by a crashed run (pid %d): audit settings will be restored to %s on stop",
                self.state_path,
                saved.agent_pid,
                saved.settings(),
            )
            for name, value in saved.settings().items():
                if getattr(found, name) != value:
                    self._changed[name] = value  # what the crashed run changed
            return
        state = SavedState.from_status(found, agent_pid=self.own_pid, pid_free=pid_free, saved_at=time.time())
        try:
            save_state(self.state_path, state)
        except OSError as exc:
            log.warning(
                "audit: cannot save the audit state to %s (%s); a crash would leave audit changed", self.state_path, exc
            )
            return
        self._state_file = True

    def _remove_stale_rules(self, ctl: AuditNetlink) -> None:
        """Delete rules with our key whose agent (the excluded pid) is dead: a crashed earlier run."""
        for raw in ctl.list_rules():
            try:
                rule = parse_rule(raw)
            except ValueError:
                continue
            if rule.key != self.key:
                continue
            agent = rule.field_value(AUDIT_PID, AUDIT_NOT_EQUAL)
            if isinstance(agent, int) and agent != self.own_pid and pid_alive(agent):
                continue  # another live agent's rule
            try:
                ctl.delete_rule(rule.raw)
                self.stale_rules_removed += 1
            except NetlinkError as exc:
                log.warning("audit: cannot delete a stale rule with key %r: %s", self.key, exc)

    def _become_owner(self, ctl: AuditNetlink, found: AuditStatus) -> None:
        try:
            sock = open_audit_socket(rcvbuf=RCVBUF)
        except OSError as exc:
            raise _unavailable("cannot open the audit event socket", exc) from exc
        self._events = sock
        events = AuditNetlink(sock)
        # the kernel sends records to the portid of the socket that sent AUDIT_SET pid
        events.set_status(pid=self.own_pid)
        self._set_pid = True
        self._pending_stash = events.stash
        try:
            if found.backlog_limit != self.backlog_limit:
                ctl.set_status(backlog_limit=self.backlog_limit)
                self._changed.setdefault("backlog_limit", found.backlog_limit)
            if found.backlog_wait_time != 0:
                ctl.set_status(backlog_wait_time=0)
                self._changed.setdefault("backlog_wait_time", found.backlog_wait_time)
        except NetlinkError as exc:  # old kernels without backlog_wait_time
            log.warning("audit: cannot set backlog settings: %s", exc)
        if found.enabled == 0:
            ctl.set_status(enabled=1)
            self._changed.setdefault("enabled", 0)

    def _open_multicast(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None
        try:
            self._events = open_audit_socket(groups=1 << (AUDIT_NLGRP_READLOG - 1), rcvbuf=RCVBUF)
        except OSError as exc:
            raise _unavailable("cannot join the audit multicast group (needs CAP_AUDIT_READ)", exc) from exc

    def _add_rules(self, ctl: AuditNetlink) -> None:
        for arch in native_abis():
            for rule in agent_rules(arch, socket_events=self.socket_events, key=self.key, exclude_pid=self.own_pid):
                try:
                    ctl.add_rule(rule)
                except NetlinkError as exc:
                    if exc.errno == errno.EEXIST:
                        continue  # the same rule (same pid) is there already; not ours to delete
                    raise _unavailable(f"adding the audit rule for arch 0x{arch:08x} failed", exc) from exc
                self._rules.append(rule)

    def _restore(self) -> None:
        """Put back what _setup found; every step is attempted, failures are logged."""
        with self._ctl_lock:
            self._restore_locked()

    def _restore_locked(self) -> None:
        ctl = self._ctl
        if ctl is None:
            return
        restored = True
        try:
            for rule in self._rules[:]:
                try:
                    ctl.delete_rule(rule)
                except OSError as exc:
                    log.error("audit: could not delete our rule: %s", exc)
                self._rules.remove(rule)
            if self._set_pid:
                try:
                    if ctl.get_status().pid == self.own_pid:
                        ctl.set_status(pid=0)
                except OSError as exc:
                    log.error("audit: could not clear the audit pid: %s", exc)
                self._set_pid = False
            for name in ("backlog_limit", "backlog_wait_time", "enabled"):
                if name in self._changed:
                    try:
                        ctl.set_status(**{name: self._changed[name]})
                    except OSError as exc:
                        restored = False
                        log.error("audit: could not restore %s=%s: %s", name, self._changed[name], exc)
                    del self._changed[name]
            if self._state_file and self.state_path is not None:
                self._state_file = False
                if restored:
                    try:
                        remove_state(self.state_path)
                    except OSError as exc:
                        log.error("audit: could not delete the state file %s: %s", self.state_path, exc)
                else:
                    log.error("audit: keeping %s: the next start restores from it", self.state_path)
        finally:
            ctl.close()
            self._ctl = None
            if self._events is not None:
                self._events.close()
                self._events = None

    # -- reading -------------------------------------------------------------------------
    @property
    def overruns(self) -> int:
        """ENOBUFS on the event socket: multicast copies dropped because our buffer overflowed."""
        return self._reader.overruns

    def _tick(self) -> None:
        """Before a batch: read the clocks once; what the budget allows this batch."""
        self._now = now = self._clock()
        self._batch_cpu = self._cpu_clock()
        self.batches += 1
        if self._budget.rate is not None:
            level = self._budget.level(now)
            self._lean = level is not Level.FULL
            self._shed = level is Level.SHED

    def _tock(self) -> None:
        """After a batch: what it cost."""
        spent = self._cpu_clock() - self._batch_cpu
        self.cpu_seconds += spent
        if self._budget.rate is not None:
            self._budget.charge(spent, self._now)

    def _feed(self, buf: bytes) -> None:
        """One datagram (see :meth:`_feed_many`)."""
        self._feed_many([buf])

    def _feed_many(self, bufs: list[bytes]) -> None:
        """Datagrams as one read took them: header parsed on bytes, body kept as text for lazy field parsing.

        The hot path (eight datagrams per exec), so written as one loop over locals.  Records of
        types no row is built from are counted and dropped before any parsing; a record with
        the same ``audit(TS:SERIAL)`` as the one before it (an exec's records come in a row)
        joins that record's event without its header being parsed again.
        """
        reasm = self._reasm
        push = reasm.push
        now = self._now
        live = LIVE_TYPES
        ignored = 0
        dropping, shed = self._dropping, self._shed
        event: AuditEvent | None = None  # the open event the previous record joined
        stamp_of_event = b""
        for buf in bufs:
            rtype = buf[4] | buf[5] << 8 if len(buf) >= 24 else 0
            if rtype not in live:
                ignored += 1
                continue
            close = buf.find(b")", 22)  # b"audit(" starts at 16
            if close < 0:
                self._parse_error(f"record type {rtype}: no audit(TS:SERIAL) header: {buf[16:80]!r}")
                event = None
                continue
            if rtype == PATH and not buf.startswith(b": item=0 ", close + 1):
                ignored += 1  # only the executable's PATH record (item 0) is used
                continue
            stamp = buf[22:close]
            if event is not None and stamp == stamp_of_event and buf.startswith(b"audit(", 16):
                if rtype == EOE:
                    ended = reasm.end(event)
                    event = None
                    self._emit(ended)
                else:
                    body = buf[close + 2 :].decode("latin-1").strip(" \0\n")
                    event.records.append(Record(rtype, event.ts, event.serial, body))
                continue
            if dropping and stamp in dropping:  # a record of an event being dropped
                if rtype == EOE:
                    dropping.discard(stamp)
                ignored += 1
                continue
            if shed and rtype == SYSCALL:  # over the CPU budget: a new event (SYSCALL comes first) is dropped
                if len(dropping) >= MAX_DROPPING:
                    dropping.clear()
                dropping.add(stamp)
                self.events_shed += 1
                ignored += 1
                event = None
                continue
            colon = stamp.rfind(b":")
            try:
                if colon < 0 or not buf.startswith(b"audit(", 16):
                    raise ValueError("no audit(TS:SERIAL) header")
                serial = int(stamp[colon + 1 :])
                ts = float(stamp[:colon])
            except ValueError as exc:
                self._parse_error(f"record type {rtype}: {exc}: {buf[16:80]!r}")
                event = None
                continue
            body = buf[close + 2 :].decode("latin-1").strip(" \0\n")
            done = push(Record(rtype, ts, serial, body), now)
            event, stamp_of_event = reasm.current, stamp
            if done is not None:
                self._emit(done)
        self.records += len(bufs)
        self.ignored_records += ignored

    def _feed_record(self, rtype: int, payload: bytes) -> None:
        try:
            record = parse_message(rtype, payload.decode("latin-1"))
        except RecordError as exc:
            self._parse_error(str(exc))
            return
        event = self._reasm.push(record, self._clock())
        if event is not None:
            self._emit(event)

    def _parse_error(self, what: str) -> None:
        self.parse_errors += 1
        if len(self.parse_examples) < MAX_EXAMPLES:
            self.parse_examples.append(what)

    def _emit(self, event: AuditEvent) -> None:
        built = self._builder.build(event)
        if built is None:
            return
        table, row = built
        if self._lean:  # over the CPU budget: no cgroup or file-time reads (the same columns, NULL)
            row["cgroup_path"] = row["container_id"] = None
            if table == "process_events":
                row["atime"] = row["mtime"] = row["ctime"] = None
            self.enrichment_skipped += 1
        else:
            row["cgroup_path"], row["container_id"] = self._cgroup_of(row["pid"], self.proc_root)
            if table == "process_events":
                row["atime"], row["mtime"], row["ctime"] = self._file_times.times(row["path"], self._now)
        if table == "socket_events":  # even when lean: the local end and Community ID are what attribution joins on
            syscall = event.first(SYSCALL)
            exit_code = syscall.fields.get("exit") if syscall is not None else None
            try:
                code = int(exit_code) if exit_code is not None else None
            except ValueError:
                code = None
            self._sockets.enrich(row, code, self._now)
        self.events_seen += 1
        try:
            self.sink(table, row)
        except Exception:
            self.sink_errors += 1
            log.exception("audit: the sink refused a %s row", table)

    async def _housekeeping(self) -> None:
        """Flush events whose EOE never came; poll the kernel's lost counter and ownership."""
        next_status = 0.0
        while True:
            await asyncio.sleep(0.25)
            self._now = now = self._clock()
            for event in self._reasm.expire(now):
                self._emit(event)
            if now >= next_status:
                next_status = now + self.status_interval
                await self._poll_status()

    async def _poll_status(self) -> None:
        ctl = self._ctl
        if ctl is None:
            return
        try:
            st = await asyncio.to_thread(self._get_status)
        except OSError as exc:
            log.warning("audit: AUDIT_GET failed: %s", exc)
            return
        self._observe(st)

    def _observe(self, st: AuditStatus) -> None:
        """Take in the kernel's counters, and notice when another process took audit from us."""
        self._lost_now = st.lost
        self._backlog = st.backlog
        if self.mode == SourceMode.OWNER and st.pid != self.own_pid:
            self.mode = SourceMode.LOST
            self.detail = f"audit ownership lost to pid {st.pid} ({_comm(st.pid, self.proc_root)})"
            log.warning("audit: %s", self.detail)
            self._set_pid = False

    def _get_status(self) -> AuditStatus:
        with self._ctl_lock:
            if self._ctl is None:
                raise OSError(errno.EBADF, "audit: the control socket is closed")
            return self._ctl.get_status()

    def poll_status_now(self) -> AuditStatus | None:
        """Synchronously refresh the lost counter and the ownership check (used by tests and the bench)."""
        if self._ctl is None:
            return None
        st = self._get_status()
        self._observe(st)
        return st
