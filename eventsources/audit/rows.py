"""One assembled audit event -> a process_events or socket_events row (pure).

Columns follow osquery's audit subscribers: process rows from execve/execveat
(SYSCALL + EXECVE + CWD + PATH item 0), socket rows from connect/bind/accept(4)
(SYSCALL + SOCKADDR; for socketcall(2) -- i386, ppc, s390 -- the call is its a0 and the
real arguments are in the SOCKETCALL record).  Syscall numbers are looked up per
architecture (syscalls.py).  Failed execs are dropped (nothing ran); socket calls are
kept with their status, and with the caller's uid, euid, gid and parent from the SYSCALL
record (as osquery's bpf_socket_events has them).  What needs the host (file times,
cgroup, the socket's local end) is added by the caller at event time.

Every event either makes a row or is counted in ``skipped`` by reason (with details:
which architecture, which syscall).  A damaged record (see records.Damage) is counted
once in ``malformed`` and reported as a :class:`Problem`; the row built from it keeps
what was readable and names the damaged parts in ``overflows`` (``cmdline`` for argv).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .reassemble import AuditEvent
from .records import (
    CWD,
    CWD_LAYOUT,
    EXECVE,
    PATH,
    PATH_LAYOUT,
    SADDR_LAYOUT,
    SOCKADDR,
    SOCKETCALL,
    SYSCALL,
    SYSCALL_LAYOUT,
    Damage,
    Layout,
    Record,
    decode_sockaddr,
    execve_args,
    read_untrusted,
)
from .syscalls import ARCHES, SOCKETCALL_CALLS, X32_SYSCALL_BIT, arch_name, syscall_name

__all__ = ["Problem", "RowBuilder", "event_row"]

EXEC_NAMES = frozenset({"execve", "execveat"})
SOCKET_ACTIONS = {"connect": "connect", "bind": "bind", "accept": "accept", "accept4": "accept"}
EINPROGRESS = 115
EAGAIN = 11
AF_NETLINK = 16
MAX_EXAMPLES = 10

_ID_FIELDS = ("auid", "uid", "euid", "gid", "egid", "suid", "sgid", "fsuid", "fsgid")
#: the layouts records are matched against when the damage of those the row did not read is checked
_LAYOUTS: dict[int, Layout] = {SYSCALL: SYSCALL_LAYOUT, CWD: CWD_LAYOUT, PATH: PATH_LAYOUT, SOCKADDR: SADDR_LAYOUT}

#: the fields a row reads, per record type: damage elsewhere is counted but leaves the row whole
_ROW_FIELDS: dict[int, frozenset[str]] = {
    SYSCALL: frozenset(("arch", "syscall", "success", "exit", "a0", "ppid", "pid", "exe", *_ID_FIELDS)),
    CWD: frozenset({"cwd"}),
    PATH: frozenset({"item", "mode", "ouid", "ogid"}),
    SOCKADDR: frozenset({"saddr"}),
    SOCKETCALL: frozenset({"a0"}),
}
#: what ``overflows`` names for a damaged record a row reads
_PARTS = {
    EXECVE: "cmdline",
    SYSCALL: "syscall",
    CWD: "cwd",
    PATH: "path",
    SOCKADDR: "sockaddr",
    SOCKETCALL: "socketcall",
}
_PART_ORDER = ("cmdline", "syscall", "cwd", "path", "sockaddr", "socketcall")


@dataclass(frozen=True, slots=True)
class Problem:
    """A damaged record: which one (type, log line, event) and what of it could not be read."""

    record: Record
    damage: tuple[Damage, ...]

    @property
    def text(self) -> str:
        """``EXECVE record of event 1700000000.123:42: a1: no closing quote ...`` (without the line)."""
        what = "; ".join(str(d) for d in self.damage[:3])
        if len(self.damage) > 3:
            what += f"; and {len(self.damage) - 3} more"
        return f"{self.record.name} record of event {self.record.event_id}: {what}"

    def __str__(self) -> str:
        where = f"line {self.record.lineno}: " if self.record.lineno is not None else ""
        return where + self.text


class _Ids(dict[str | None, int]):
    """User and group ids as numbers, each distinct text converted once (a host has few; bounded all the same).

    ``ids[text]`` raises ValueError or TypeError (None) as ``int(text)`` would.
    """

    def __missing__(self, text: str | None) -> int:
        value = int(text)  # type: ignore[arg-type]  # None: TypeError, as int(None)
        if len(self) >= 4096:
            self.clear()
        self[text] = value
        return value


_IDS = _Ids()


def _id(text: str | None) -> int | None:
    try:
        return _IDS[text]
    except (TypeError, ValueError):
        return None


def _int(value: str | None, base: int = 10) -> int | None:
    if value is None:
        return None
    try:
        return int(value, base)
    except ValueError:
        return None


class RowBuilder:
    """Turns events into rows and counts what it skipped (and why) and what it could not read."""

    def __init__(
        self,
        *,
        own_pid: int | None = None,
        socket_events: bool = True,
        boot_time: float | None = None,
        on_problem: Callable[[Problem], None] | None = None,
    ) -> None:
        self.own_pid = own_pid
        self.socket_events = socket_events
        self.boot_time = boot_time
        self.on_problem = on_problem
        self.skipped: dict[str, int] = {}
        self.skipped_detail: dict[str, dict[str, int]] = {}  # reason -> {detail: count}, e.g. arch and syscall
        self.malformed = 0  # damaged records
        self.examples: list[str] = []  # the first MAX_EXAMPLES problems, as text

    def _skip(self, why: str, detail: str | None = None) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1
        if detail is not None:
            per = self.skipped_detail.setdefault(why, {})
            per[detail] = per.get(detail, 0) + 1

    def _problem(self, record: Record, damage: tuple[Damage, ...]) -> None:
        problem = Problem(record, damage)
        self.malformed += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(str(problem))
        if self.on_problem is not None:
            self.on_problem(problem)

    def build(self, event: AuditEvent) -> tuple[str, dict[str, Any]] | None:
        """(table, row) for one event, or None (counted in ``skipped``; damage in ``malformed``)."""
        found: dict[int, list[Damage]] = {}  # id(record) -> damage found while building (bad numbers, hex, ...)
        built = self._build(event, found)
        # Every record is checked, those the row does not read too: damage anywhere counts.  The records the row
        # read are known already (a Layout matched them whole, or they were read field by field); the rest are
        # matched against their type's layout or read now.  Record's internals are used here (same package):
        # the properties would cost a call per record on the live hot path.
        damaged = False
        for rec in event.records:
            if not rec._clean:
                if rec._fields is None:
                    layout = _LAYOUTS.get(rec.type)
                    if layout is not None:
                        layout.check(rec)
                    if not rec._clean:
                        rec._parse()
                if rec._damage:
                    damaged = True
        if damaged or found:
            if built is not None:
                row = built[1]
                row["overflows"] = _overflows(event, found, row["overflows"])
            for rec in event.records:
                damage = rec.damage
                extra = found.get(id(rec))
                if damage or extra:
                    self._problem(rec, (*damage, *extra) if extra else damage)
        return built

    def _build(self, event: AuditEvent, found: dict[int, list[Damage]]) -> tuple[str, dict[str, Any]] | None:
        syscall = event.records[0] if event.records else None  # the kernel writes SYSCALL first
        if syscall is None or syscall.type != SYSCALL:
            syscall = event.first(SYSCALL)
            if syscall is None:
                self._skip("no_syscall_record")
                return None
        values = SYSCALL_LAYOUT.values(syscall)
        arch_text, nr_text, success, exit_text, a0, _ppid, pid_text, auid = values[:8]
        try:
            arch = int(arch_text, 16)  # type: ignore[arg-type]  # None: TypeError
            nr = int(nr_text)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            bad = [
                Damage(k, f"unreadable: {text!r}")
                for k, text, v in (("arch", arch_text, _int(arch_text, 16)), ("syscall", nr_text, _int(nr_text)))
                if v is None
            ]
            found.setdefault(id(syscall), []).extend(bad)
            self._skip("malformed")
            return None
        abi = ARCHES.get(arch)
        if abi is None:
            self._skip("unknown_arch", arch_name(arch))
            return None
        name = abi.names.get(nr) if not nr & X32_SYSCALL_BIT else syscall_name(arch, nr)
        via_socketcall = name == "socketcall"
        if via_socketcall:
            call = _int(a0, 16)
            name = SOCKETCALL_CALLS.get(call) if call is not None else None
            if name is None:
                self._skip("other_syscall", f"{abi.name} socketcall {call if call is not None else a0}")
                return None
        if name is None:
            self._skip("other_syscall", f"{abi.name} #{nr}")
            return None
        try:
            pid = int(pid_text)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            found.setdefault(id(syscall), []).append(Damage("pid", f"unreadable: {pid_text!r}"))
            self._skip("malformed")
            return None
        if pid == self.own_pid:
            self._skip("own_pid")
            return None
        ts = event.ts
        exe = values[16]
        if exe is not None and exe[:1] == '"':  # the usual form, read here without a call
            exe = exe[1:-1]
        else:
            exe, problem = read_untrusted(exe)
            if problem is not None:
                found.setdefault(id(syscall), []).append(Damage("exe", problem))
        uptime = int(ts - self.boot_time) if self.boot_time is not None else None
        if name in EXEC_NAMES:
            if success == "no":
                self._skip("failed_exec")
                return None
            return "process_events", self._process(event, values, name, pid, exe, _id(auid), ts, uptime, found)
        if not self.socket_events:
            self._skip("socket_events_off")
            return None
        if via_socketcall:  # socketcall's own a0 is the call number; the call's arguments are in SOCKETCALL
            rec = event.first(SOCKETCALL)
            a0 = rec.fields.get("a0") if rec is not None else None
        common: dict[str, Any] = {
            "pid": pid,
            "path": exe,
            "auid": _id(auid),
            "time": int(ts),
            "timestamp": ts,
            "uptime": uptime,
        }
        row = self._socket(
            event,
            name,
            success,
            exit_text,
            common,
            values,
            fd=_int(a0, 16),
            big_endian=abi.big_endian,
            found=found,
        )
        if row is None:
            return None
        return "socket_events", row

    def _process(
        self,
        event: AuditEvent,
        values: tuple[str | None, ...],
        name: str,
        pid: int,
        exe: str | None,
        auid: int | None,
        ts: float,
        uptime: int | None,
        found: dict[int, list[Damage]],
    ) -> dict[str, Any]:
        execve: list[Record] = []
        cwd = path0 = None
        for rec in event.records:  # one pass: EXECVE records, the CWD, the executable's PATH (item 0)
            rtype = rec.type
            if rtype == EXECVE:
                execve.append(rec)
            elif rtype == CWD:
                if cwd is None:
                    cwd = rec
            elif rtype == PATH and path0 is None and rec.body.startswith("item=0 "):
                path0 = rec
        argv, argc, damage = execve_args(execve)
        for rec, d in damage:
            found.setdefault(id(rec), []).append(d)
        cmdline = " ".join(argv)
        cwd_text = None
        if cwd is not None:
            (text,) = CWD_LAYOUT.values(cwd)
            if text is not None and text[:1] == '"':
                cwd_text = text[1:-1]
            else:
                cwd_text, problem = read_untrusted(text)
                if problem is not None:
                    found.setdefault(id(cwd), []).append(Damage("cwd", problem))
        mode = owner_uid = owner_gid = None
        if path0 is not None:
            _item, mode, ouid, ogid = PATH_LAYOUT.values(path0)
            owner_uid, owner_gid = _id(ouid), _id(ogid)
        # values[5]: ppid; values[8:16]: uid gid euid suid fsuid egid sgid fsgid, all numbers in the usual case
        ids: list[int | None]
        try:  # values[8:16]: uid gid euid suid fsuid egid sgid fsgid
            ids = list(map(_IDS.__getitem__, values[8:16]))
        except (TypeError, ValueError):  # a field absent (None) or unreadable
            ids = [_id(text) for text in values[8:16]]
        uid, gid, euid, suid, fsuid, egid, sgid, fsgid = ids
        ppid = _int(values[5])
        parent = -1 if ppid is None else ppid
        # one literal, always in this key order (the event store keeps rows built alike compactly)
        return {
            "pid": pid,
            "path": exe,
            "auid": auid,
            "time": int(ts),
            "timestamp": ts,
            "uptime": uptime,
            "uid": uid,
            "euid": euid,
            "gid": gid,
            "egid": egid,
            "suid": suid,
            "sgid": sgid,
            "fsuid": fsuid,
            "fsgid": fsgid,
            "cmdline": cmdline,
            "cmdline_size": len(cmdline.encode("utf-8", "surrogateescape")),
            "cwd": cwd_text,
            "parent": parent,
            "syscall": name,
            "status": 0,  # osquery's (macOS) return code column; audit rows are successful execs
            "mode": mode,
            "owner_uid": owner_uid,
            "owner_gid": owner_gid,
            "btime": 0,
            "overflows": "cmdline" if argc is not None and len(argv) < argc else "",
        }

    def _socket(
        self,
        event: AuditEvent,
        name: str,
        success: str | None,
        exit_text: str | None,
        row: dict[str, Any],
        values: tuple[str | None, ...],
        *,
        fd: int | None,
        big_endian: bool,
        found: dict[int, list[Damage]],
    ) -> dict[str, Any] | None:
        action = SOCKET_ACTIONS[name]
        exit_code = _int(exit_text)
        if success == "yes":
            status = "succeeded"
        elif action == "connect" and exit_code == -EINPROGRESS:
            status = "in_progress"
        elif action == "accept" and exit_code == -EAGAIN:
            status = "no_client"
        else:
            status = "failed"
        parent = _int(values[5])  # values: the SYSCALL record's fields in layout order (see _process)
        row.update(
            action=action,
            fd=str(fd) if fd is not None else None,
            uid=_id(values[8]),
            euid=_id(values[10]),
            gid=_id(values[9]),
            parent=parent if parent is not None else -1,
            process_start_time=None,  # read from /proc by the source, at event time
            community_id=None,  # the source's, once it knows the local end and the protocol
            family=None,
            protocol=0,  # not in audit records (osquery reports 0 as well)
            local_address=None,
            remote_address=None,
            local_port=0,  # osquery's defaults: 0 where the record names no port on that side
            remote_port=0,
            socket=None,
            success=1 if status in ("succeeded", "in_progress") else 0,
            status=status,
        )
        rec = event.first(SOCKADDR)
        if rec is not None:
            (saddr,) = SADDR_LAYOUT.values(rec)
            try:
                addr = decode_sockaddr(saddr, big_endian=big_endian) if saddr else None
            except ValueError as exc:
                found.setdefault(id(rec), []).append(Damage("saddr", str(exc)))
                addr = None
            if addr is not None:
                if addr.family == AF_NETLINK:
                    self._skip("netlink_socket")
                    return None
                row["family"] = addr.family
                side = "local" if action == "bind" else "remote"
                if addr.path is not None:
                    row["socket"] = addr.path
                    row[f"{side}_address"] = addr.path
                else:
                    row[f"{side}_address"] = addr.address
                    row[f"{side}_port"] = addr.port
        row["overflows"] = ""
        return row


def _overflows(event: AuditEvent, found: dict[int, list[Damage]], already: str) -> str:
    """The damaged parts a row read (``cmdline,cwd``) added to those ``already`` named."""
    parts = set(already.split(",")) if already else set()
    for rec in event.records:
        part = _PARTS.get(rec.type)
        if part is None or (rec.type == PATH and not rec.body.startswith("item=0 ")):
            continue
        damage = (*rec.damage, *found.get(id(rec), ()))
        fields = _ROW_FIELDS.get(rec.type)
        if any(d.field is None or fields is None or d.field in fields for d in damage):
            parts.add(part)
    return ",".join(p for p in _PART_ORDER if p in parts)


def event_row(event: AuditEvent, **options: Any) -> tuple[str, dict[str, Any]] | None:
    """Convenience: one event -> (table, row) or None, with a throwaway builder."""
    return RowBuilder(**options).build(event)
