"""What an event row needs from /proc about one process, read at event time.

Event sources that only learn a pid (the proc connector, /proc polling) call
:func:`snapshot` right away; :func:`cgroup_of` gives the cgroup path and the
container id for any row (audit included).  Parsers are pure functions on the
file contents; the readers at the bottom do the I/O and follow psutil's rules: a
vanished process raises :class:`ProcessGone`, a field we may not read is None.
"""

from __future__ import annotations

import os
import re
from typing import Any

from tables._procfs import STAT_PPID, STAT_STARTTIME, parse_stat

__all__ = [
    "ProcessGone",
    "cgroup_of",
    "container_id_from_cgroup",
    "executable_columns",
    "parse_cgroup",
    "parse_cmdline",
    "parse_stat_times",
    "parse_status",
    "snapshot",
]

#: A 64-hex container id as docker, containerd, cri-o and podman put it in cgroup paths
#: ("/docker/<id>", "/system.slice/docker-<id>.scope", "/kubepods/.../cri-containerd-<id>.scope",
#: "/machine.slice/libpod-<id>.scope", "crio-<id>.scope").
_CONTAINER_ID = re.compile(r"(?:^|[/\-:_.])([0-9a-f]{64})(?:\.scope)?(?=$|/)")


class ProcessGone(Exception):
    """The process exited before we could read it."""


def parse_cgroup(text: str) -> str | None:
    """The cgroup path from /proc/PID/cgroup text.

    Prefers the unified (v2) line ``0::/path``; on a v1-only host, the line of
    the ``pids``/``cpu``/``memory`` controller or the first line with a path.
    """
    paths: dict[str, str] = {}
    first: str | None = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == "0" and controllers == "":
            return path
        for ctrl in controllers.split(","):
            paths[ctrl] = path
        if first is None:
            first = path
    for ctrl in ("pids", "cpu", "memory", "name=systemd"):
        if ctrl in paths:
            return paths[ctrl]
    return first


def container_id_from_cgroup(path: str | None) -> str | None:
    """The 64-hex container id in a cgroup path, else None (the innermost one wins)."""
    if not path:
        return None
    found = _CONTAINER_ID.findall(path)
    return found[-1] if found else None


def parse_cmdline(data: bytes) -> tuple[str, int]:
    """(argv joined by spaces, size in bytes) from /proc/PID/cmdline bytes, osquery style."""
    size = len(data)
    if data.endswith(b"\0"):
        data = data[:-1]
    args = data.split(b"\0") if data else []
    return " ".join(a.decode("utf-8", "replace") for a in args), size


def parse_status(text: str) -> dict[str, int | None]:
    """uid/euid/suid/fsuid, gid/egid/sgid/fsgid and parent from /proc/PID/status text."""
    out: dict[str, int | None] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "Uid":
            ids = value.split()
            out.update(zip(("uid", "euid", "suid", "fsuid"), (int(v) for v in ids[:4]), strict=False))
        elif key == "Gid":
            ids = value.split()
            out.update(zip(("gid", "egid", "sgid", "fsgid"), (int(v) for v in ids[:4]), strict=False))
        elif key == "PPid":
            out["parent"] = int(value.strip())
    return out


def parse_stat_times(data: bytes) -> tuple[int, int]:
    """(ppid, starttime in clock ticks since boot) from /proc/PID/stat bytes."""
    _, fields = parse_stat(data)
    return int(fields[STAT_PPID]), int(fields[STAT_STARTTIME])


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _gone(pid: int, exc: OSError) -> ProcessGone:
    return ProcessGone(f"process {pid} is gone: {exc}")


def cgroup_of(pid: int, proc_root: str = "/proc") -> tuple[str | None, str | None]:
    """(cgroup path, container id) of ``pid``; (None, None) when it is gone or unreadable."""
    try:
        text = _read_bytes(f"{proc_root}/{pid}/cgroup").decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError):
        return None, None
    path = parse_cgroup(text)
    return path, container_id_from_cgroup(path)


def _readlink(path: str) -> str | None:
    """A /proc symlink target, None when not permitted; ProcessGone-worthy errors propagate."""
    try:
        target = os.readlink(path)
    except PermissionError:
        return None
    return target


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


def snapshot(pid: int, proc_root: str = "/proc") -> dict[str, Any]:
    """What a process_events row needs about ``pid``, read from /proc now.

    Keys: pid, path, cmdline, cmdline_size, cwd, uid, euid, gid, egid, suid, sgid,
    fsuid, fsgid, parent, auid, cgroup_path, container_id.  Unreadable fields are None.
    Raises :class:`ProcessGone` when the process no longer exists.
    """
    base = f"{proc_root}/{pid}"
    row: dict[str, Any] = {"pid": pid}
    try:
        status = _read_bytes(f"{base}/status").decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise _gone(pid, exc) from exc
    row.update(parse_status(status))
    try:
        cmdline, size = parse_cmdline(_read_bytes(f"{base}/cmdline"))
        row["cmdline"], row["cmdline_size"] = cmdline, size
    except PermissionError:
        row["cmdline"] = row["cmdline_size"] = None
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise _gone(pid, exc) from exc
    for key, name in (("path", "exe"), ("cwd", "cwd")):
        try:
            row[key] = _readlink(f"{base}/{name}")
        except (FileNotFoundError, ProcessLookupError):
            # A kernel thread has no exe; a vanished process has no status either.
            if not os.path.exists(base):
                raise ProcessGone(f"process {pid} is gone") from None
            row[key] = None
    try:
        row["auid"] = int(_read_bytes(f"{base}/loginuid"))
    except (OSError, ValueError):
        row["auid"] = None  # no audit support in this kernel, or gone (caught above next time)
    row["cgroup_path"], row["container_id"] = cgroup_of(pid, proc_root)
    return row
