"""What an event row needs from /proc about one process, read at event time.

Event sources that only learn a pid (the proc connector, /proc polling) call
:func:`snapshot` right away; :func:`cgroup_of` gives the cgroup path and the container
id for any row (audit included); :class:`FileTimes` the executable's times, read once a
second per path however many times it runs (an exec storm runs a few binaries thousands
of times a second: one ``stat()`` each would be a syscall per event).  Every parser is
:mod:`tables.procfs`'s, the same the processes table uses, so a process's cmdline and
cgroup_path read the same in
``processes`` and ``process_events``.  Errors follow psutil's rules: a vanished process
raises :class:`ProcessGone`, a field we may not read is None.
"""

from __future__ import annotations

import os
from typing import Any

from tables.procfs import (
    GONE,
    STAT_PPID,
    STAT_STARTTIME,
    CgroupReader,
    container_id_from_cgroup,
    executable,
    parse_cmdline,
    parse_stat,
    parse_status,
    read_link,
    read_pid_file,
)

__all__ = [
    "FileTimes",
    "ProcessGone",
    "cgroup_of",
    "container_id_from_cgroup",
    "executable_columns",
    "parse_stat_times",
    "snapshot",
]

#: The event sources' cgroup reader (parses each distinct cgroup file once).
cgroup_of = CgroupReader()


class ProcessGone(Exception):
    """The process exited before we could read it."""


def parse_stat_times(data: bytes) -> tuple[int, int]:
    """(ppid, starttime in clock ticks since boot) from /proc/PID/stat bytes."""
    _, fields = parse_stat(data)
    return int(fields[STAT_PPID]), int(fields[STAT_STARTTIME])


def _gone(pid: int, exc: OSError) -> ProcessGone:
    return ProcessGone(f"process {pid} is gone: {exc}")


def executable_columns(path: str | None) -> dict[str, Any]:
    """mode/owner/times of the executable at ``path``, as process_events shows them ({} when unreadable)."""
    if not path:
        return {}
    try:
        st = os.stat(path)
    except OSError:
        return {}
    return {
        "mode": f"{st.st_mode:07o}",  # as audit's PATH record writes it, e.g. 0100755
        "owner_uid": st.st_uid,
        "owner_gid": st.st_gid,
        "atime": int(st.st_atime),
        "mtime": int(st.st_mtime),
        "ctime": int(st.st_ctime),
        "btime": 0,
    }


#: (atime, mtime, ctime) of a file in whole seconds; all None when it cannot be read
Times = tuple[int | None, int | None, int | None]
_NO_TIMES: Times = (None, None, None)


class FileTimes:
    """The times of executables, each path ``stat()``-ed at most once per ``max_age`` seconds.

    ``times(path, now)``: (atime, mtime, ctime) as of at most ``max_age`` seconds before
    ``now`` (the caller's monotonic clock), all None when the file cannot be read.  The
    cache holds ``max_cached`` paths and starts over when full.
    """

    def __init__(self, max_age: float = 1.0, max_cached: int = 1024) -> None:
        self.max_age = max_age
        self.max_cached = max_cached
        self._cache: dict[str, tuple[float, Times]] = {}
        self.stats = 0  # stat() calls made

    def times(self, path: str | None, now: float) -> Times:
        if not path:
            return _NO_TIMES
        hit = self._cache.get(path)
        if hit is not None and now - hit[0] < self.max_age:
            return hit[1]
        self.stats += 1
        try:
            st = os.stat(path)
        except OSError:
            times = _NO_TIMES
        else:
            times = (int(st.st_atime), int(st.st_mtime), int(st.st_ctime))
        if hit is None and len(self._cache) >= self.max_cached:
            self._cache.clear()
        self._cache[path] = (now, times)
        return times


def snapshot(pid: int, proc_root: str = "/proc") -> dict[str, Any]:
    """What a process_events row needs about ``pid``, read from /proc now.

    Keys: pid, path, cmdline, cmdline_size, cwd, uid, euid, gid, egid, suid, sgid,
    fsuid, fsgid, parent, auid, cgroup_path, container_id.  Unreadable fields are None.
    Raises :class:`ProcessGone` when the process no longer exists.

    The executable is read last: an exiting process loses its memory (cmdline, exe)
    before its working directory, so a row with a path was read whole from a live process.
    """
    base = f"{proc_root}/{pid}/"
    row: dict[str, Any] = {"pid": pid}
    try:
        status = parse_status(read_pid_file(base + "status"))
    except GONE as exc:
        raise _gone(pid, exc) from exc
    except (PermissionError, ValueError):
        status = None
    if status is not None:
        row.update(zip(("uid", "euid", "suid", "fsuid"), status.uids, strict=False))
        row.update(zip(("gid", "egid", "sgid", "fsgid"), status.gids, strict=False))
        row["parent"] = status.parent
    row["cgroup_path"], row["container_id"] = cgroup_of(pid, proc_root)
    row["cwd"] = read_link(base + "cwd") or None
    try:
        row["auid"] = int(read_pid_file(base + "loginuid"))
    except (OSError, ValueError):
        row["auid"] = None  # no audit support in this kernel, or gone (caught below)
    try:
        data = read_pid_file(base + "cmdline")
        row["cmdline"], row["cmdline_size"] = parse_cmdline(data), len(data)
    except PermissionError:
        row["cmdline"] = row["cmdline_size"] = None
    except GONE as exc:
        raise _gone(pid, exc) from exc
    path, _on_disk = executable(base)
    if not path and not os.path.exists(base):
        raise ProcessGone(f"process {pid} is gone")
    row["path"] = path or None  # a kernel thread or zombie has no executable
    return row
