"""One assembled audit event -> a process_events or socket_events row (pure).

Columns follow osquery's audit subscribers: process rows from execve/execveat
(SYSCALL + EXECVE + CWD + PATH item 0), socket rows from connect/bind/accept(4)
(SYSCALL + SOCKADDR; for i386's socketcall(2) the call is its a0 and the real
arguments are in the SOCKETCALL record).  Failed execs are dropped (nothing ran); socket calls are
kept with their status, and with the caller's uid, euid, gid and parent from the SYSCALL
record (as osquery's bpf_socket_events has them).  What needs the host (file times,
cgroup, the socket's local end) is added by the caller at event time.
"""

from __future__ import annotations

from typing import Any

from .reassemble import AuditEvent
from .records import CWD, EXECVE, PATH, SOCKADDR, SOCKETCALL, SYSCALL, decode_sockaddr, decode_untrusted, execve_args
from .rules import SOCKETCALL_CALLS, syscall_name

__all__ = ["RowBuilder", "event_row"]

EXEC_NAMES = frozenset({"execve", "execveat"})
SOCKET_ACTIONS = {"connect": "connect", "bind": "bind", "accept": "accept", "accept4": "accept"}
EINPROGRESS = 115
EAGAIN = 11
AF_NETLINK = 16

_ID_FIELDS = ("auid", "uid", "euid", "gid", "egid", "suid", "sgid", "fsuid", "fsgid")


def _int(value: str | None, base: int = 10) -> int | None:
    if value is None:
        return None
    try:
        return int(value, base)
    except ValueError:
        return None


class RowBuilder:
    """Turns events into rows and counts what it skipped (and why)."""

    def __init__(
        self, *, own_pid: int | None = None, socket_events: bool = True, boot_time: float | None = None
    ) -> None:
        self.own_pid = own_pid
        self.socket_events = socket_events
        self.boot_time = boot_time
        self.skipped: dict[str, int] = {}
        self.malformed = 0

    def _skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def build(self, event: AuditEvent) -> tuple[str, dict[str, Any]] | None:
        """(table, row) for one event, or None (counted in ``skipped``/``malformed``)."""
        syscall = event.first(SYSCALL)
        if syscall is None:
            self._skip("no_syscall_record")
            return None
        f = syscall.fields
        arch = _int(f.get("arch"), 16)
        nr = _int(f.get("syscall"))
        if arch is None or nr is None:
            self.malformed += 1
            return None
        name = syscall_name(arch, nr)
        via_socketcall = name == "socketcall"
        if via_socketcall:
            call = _int(f.get("a0"), 16)
            name = SOCKETCALL_CALLS.get(call) if call is not None else None
        if name is None:
            self._skip("other_syscall")
            return None
        pid = _int(f.get("pid"))
        if pid is None:
            self.malformed += 1
            return None
        if pid == self.own_pid:
            self._skip("own_pid")
            return None
        ts = event.ts
        common: dict[str, Any] = {
            "pid": pid,
            "path": decode_untrusted(f.get("exe")),
            "auid": _int(f.get("auid")),
            "time": int(ts),
            "timestamp": ts,
            "uptime": int(ts - self.boot_time) if self.boot_time is not None else None,
        }
        if name in EXEC_NAMES:
            if f.get("success") == "no":
                self._skip("failed_exec")
                return None
            return "process_events", self._process(event, f, name, common)
        if not self.socket_events:
            self._skip("socket_events_off")
            return None
        args = f
        if via_socketcall:  # socketcall's own a0 is the call number; the call's arguments are in SOCKETCALL
            rec = event.first(SOCKETCALL)
            args = rec.fields if rec is not None else {}
        row = self._socket(event, f, name, common, fd=_int(args.get("a0"), 16))
        if row is None:
            return None
        return "socket_events", row

    def _process(self, event: AuditEvent, f: dict[str, str], name: str, row: dict[str, Any]) -> dict[str, Any]:
        for key in _ID_FIELDS:
            row[key] = _int(f.get(key))
        argv, argc = execve_args(event.of_type(EXECVE))
        cmdline = " ".join(argv)
        row["cmdline"] = cmdline
        row["cmdline_size"] = len(cmdline.encode("utf-8", "replace"))
        row["overflows"] = "cmdline" if argc is not None and len(argv) < argc else ""
        cwd = event.first(CWD)
        row["cwd"] = decode_untrusted(cwd.fields.get("cwd")) if cwd else None
        row["parent"] = _int(f.get("ppid"), 10)
        if row["parent"] is None:
            row["parent"] = -1
        row["syscall"] = name
        row["status"] = 0  # osquery's (macOS) return code column; audit rows are successful execs
        exe_path = None
        for rec in event.of_type(PATH):
            if rec.body.startswith("item=0 "):
                exe_path = rec.fields
                break
        if exe_path is not None:
            row["mode"] = exe_path.get("mode")
            row["owner_uid"] = _int(exe_path.get("ouid"))
            row["owner_gid"] = _int(exe_path.get("ogid"))
        else:
            row["mode"] = row["owner_uid"] = row["owner_gid"] = None
        row["btime"] = 0
        return row

    def _socket(
        self, event: AuditEvent, f: dict[str, str], name: str, row: dict[str, Any], *, fd: int | None
    ) -> dict[str, Any] | None:
        action = SOCKET_ACTIONS[name]
        exit_code = _int(f.get("exit"))
        if f.get("success") == "yes":
            status = "succeeded"
        elif action == "connect" and exit_code == -EINPROGRESS:
            status = "in_progress"
        elif action == "accept" and exit_code == -EAGAIN:
            status = "no_client"
        else:
            status = "failed"
        parent = _int(f.get("ppid"))
        row.update(
            action=action,
            fd=str(fd) if fd is not None else None,
            uid=_int(f.get("uid")),
            euid=_int(f.get("euid")),
            gid=_int(f.get("gid")),
            parent=parent if parent is not None else -1,
            process_start_time=None,  # read from /proc by the source, at event time
            community_id=None,  # the source's, once it knows the local end and the protocol
            family=None,
            protocol=0,  # not in audit records (osquery reports 0 as well)
            local_address=None,
            remote_address=None,
            local_port=None,
            remote_port=None,
            socket=None,
            success=1 if status in ("succeeded", "in_progress") else 0,
            status=status,
        )
        rec = event.first(SOCKADDR)
        if rec is not None:
            saddr = rec.fields.get("saddr")
            try:
                addr = decode_sockaddr(saddr) if saddr else None
            except ValueError:
                self.malformed += 1
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
        return row


def event_row(event: AuditEvent, **options: Any) -> tuple[str, dict[str, Any]] | None:
    """Convenience: one event -> (table, row) or None, with a throwaway builder."""
    return RowBuilder(**options).build(event)
