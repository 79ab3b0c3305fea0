"""The one place that reads and parses /proc (and /sys attributes): public, for tables/, eventsources/ and agent/.

Each fact about a process has one parser here, so the process tables and the process
event sources cannot disagree: the command line (:func:`parse_cmdline`), the cgroup path
(:func:`parse_cgroup`, :class:`CgroupReader`), the name and ids of ``status``
(:func:`parse_status`), the executable (:func:`executable`), ``stat`` (:func:`parse_stat`).

Habits from psutil: binary reads in one system call, ``stat`` split on the LAST ``)``
(``comm`` may hold spaces and parentheses), and one mapping of OS errors: a vanished
process (``FileNotFoundError``/``ProcessLookupError``) means "skip the row", a refused
read (``PermissionError``) means "NULL the field".  Text is decoded with
:func:`tables.text.decode`: bytes that are not UTF-8 are kept, never replaced.

The parsers take bytes and return values; only ``read_*`` (:func:`read_attr` for one-value
/sys and /proc attribute files), :func:`executable`,
:func:`list_pids`, :func:`boot_time` and :class:`CgroupReader` touch the filesystem,
always under a caller-given proc root (tests use fixture trees).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .text import decode

__all__ = [
    "CLK_TCK",
    "DELETED",
    "GONE",
    "PAGE_SIZE",
    "STAT_NICE",
    "STAT_NUM_THREADS",
    "STAT_PGRP",
    "STAT_PPID",
    "STAT_RSS",
    "STAT_STARTTIME",
    "STAT_STATE",
    "STAT_STIME",
    "STAT_UTIME",
    "STAT_VSIZE",
    "CgroupReader",
    "ProcStatus",
    "boot_time",
    "container_id_from_cgroup",
    "executable",
    "list_pids",
    "parse_boot_time",
    "parse_cgroup",
    "parse_cmdline",
    "parse_io",
    "parse_ns_inode",
    "parse_socket_inode",
    "parse_stat",
    "parse_status",
    "process_name",
    "read_attr",
    "read_file",
    "read_link",
    "read_pid_file",
    "select_pids",
]

#: Clock ticks per second (``stat`` times are in ticks) and the page size (``rss`` is in pages).
CLK_TCK: int = os.sysconf("SC_CLK_TCK")
PAGE_SIZE: int = os.sysconf("SC_PAGE_SIZE")

#: Errors meaning the process (or its file) is gone: the row is skipped.
GONE = (FileNotFoundError, ProcessLookupError)

# Indexes into the fields after ``comm`` in /proc/<pid>/stat (proc(5) field N is index N - 3).
STAT_STATE = 0
STAT_PPID = 1
STAT_PGRP = 2
STAT_UTIME = 11
STAT_STIME = 12
STAT_NICE = 16
STAT_NUM_THREADS = 17
STAT_STARTTIME = 19
STAT_VSIZE = 20
STAT_RSS = 21

_READ_SIZE = 32768  # /proc files are generated per read; a big buffer gets most in one call

#: What the kernel appends to /proc/<pid>/exe (and fd links) once the file is unlinked.
DELETED = " (deleted)"

#: v1 controllers whose path stands for "the" cgroup of a process on a host without the
#: unified hierarchy, most telling first (``pids`` follows systemd units and containers).
_V1_CONTROLLERS = (b"pids", b"cpu", b"memory", b"name=systemd")

#: A 64-hex container id as docker, containerd, cri-o and podman put it in cgroup paths
#: ("/docker/<id>", "/system.slice/docker-<id>.scope", "/kubepods/.../cri-containerd-<id>.scope",
#: "/machine.slice/libpod-<id>.scope", "crio-<id>.scope").
_CONTAINER_ID = re.compile(r"(?:^|[/\-:_.])([0-9a-f]{64})(?:\.scope)?(?=$|/)")


# ---------------------------------------------------------------------------
# I/O at the edge
# ---------------------------------------------------------------------------


def read_file(path: str) -> bytes:
    """The whole of ``path`` with os.open/os.read, read until end of file.

    seq_file-backed /proc files (maps, net/tcp) return short reads at page boundaries
    long before their end, so a short read is not the end: only an empty one is.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, _READ_SIZE)
        if not data:
            return data
        chunk = os.read(fd, _READ_SIZE)
        if not chunk:
            return data
        chunks = [data, chunk]
        while chunk := os.read(fd, _READ_SIZE):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_pid_file(path: str) -> bytes:
    """A per-process file (stat, status, cmdline, io, cgroup), one read in the usual case.

    These are not record-by-record seq_files: the kernel builds stat/status/io/cgroup in one
    ``single_open`` show() and copies cmdline/environ until the buffer is full, so a read
    shorter than the buffer is the whole file.  That saves the end-of-file read
    :func:`read_file` needs, a syscall per file on the processes hot path.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, _READ_SIZE)
        if len(data) < _READ_SIZE:
            return data
        chunks = [data]
        while chunk := os.read(fd, _READ_SIZE):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_link(path: str) -> str:
    """Target of a /proc symlink (exe, cwd, root, fd/N), "" when it cannot be read.

    As osquery's readProcLink: kernel threads and zombies have no exe/cwd (ENOENT), a
    process of another user may refuse it (EACCES), a vanished process has none: all "".
    """
    try:
        return os.readlink(path)
    except OSError:  # ENOENT, EACCES, EINVAL (a fixture tree's plain file)
        return ""


def executable(pid_dir: str) -> tuple[str, int]:
    """(path, on_disk) of ``<pid_dir>exe`` as osquery's processes table gives them.

    ``pid_dir`` ends in ``/``.  The kernel appends `` (deleted)`` to the link of a binary
    that was unlinked: the suffix is dropped and on_disk is 0, unless a file of that very
    name is the running binary (same device and inode).  No link: ("", -1).
    """
    link = read_link(pid_dir + "exe")
    if not link:
        return "", -1
    if not link.endswith(DELETED):
        return link, 1 if os.path.exists(link) else 0
    try:
        named = os.stat(link)
    except OSError:
        return link[: -len(DELETED)], 0
    try:
        running = os.stat(pid_dir + "exe")
    except OSError:
        return link, -1  # cannot tell which it is (osquery: -1)
    if (named.st_dev, named.st_ino) == (running.st_dev, running.st_ino):
        return link, 1  # the binary's name really ends in " (deleted)"
    return link[: -len(DELETED)], 0


def read_attr(*parts: str) -> str | None:
    """A sysfs/proc attribute file (path given whole or in parts) as stripped text.

    None when it cannot be read for any OS reason: absent, refused, or EINVAL (a down
    link's ``speed``), EIO and the like that some sysfs attributes answer.
    """
    try:
        with open(os.path.join(*parts), "rb") as f:
            return decode(f.read()).strip()
    except OSError:
        return None


def list_pids(proc: str) -> list[int]:
    """Every pid directory under ``proc``, in ascending order."""
    try:
        names = os.listdir(proc)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"proc root {proc!r} does not exist") from exc
    pids = [int(name) for name in names if name.isdigit()]
    pids.sort()
    return pids


def select_pids(proc: str, wanted: Iterable[object] | None) -> list[int]:
    """The pids to read: all of them, or only the pushed-down ``wanted`` ones.

    Non-integer or non-positive values cannot be pids and are dropped; SQLite
    re-checks every constraint, so dropping is safe.
    """
    if wanted is None:
        return list_pids(proc)
    pids: list[int] = []
    for value in wanted:
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and value > 0:
            pids.append(value)
        elif isinstance(value, str) and value.isdigit() and int(value) > 0:
            pids.append(int(value))
    return sorted(set(pids))


def boot_time(proc: str) -> int | None:
    """System boot time in seconds since the Epoch (``btime`` of ``<proc>/stat``), None if unknown."""
    try:
        return parse_boot_time(read_file(f"{proc}/stat"))
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------
# Pure parsers
# ---------------------------------------------------------------------------


def parse_stat(data: bytes) -> tuple[str, list[bytes]]:
    """``/proc/<pid>/stat`` -> (comm, fields after comm); index fields with ``STAT_*``.

    comm sits between the first ``(`` and the LAST ``)``: it may hold spaces and ``)``.
    """
    rpar = data.rfind(b")")
    if rpar < 0:
        raise ValueError(f"malformed stat line: {data[:80]!r}")
    name = decode(data[data.find(b"(") + 1 : rpar])
    return name, data[rpar + 2 :].split()


def process_name(comm: str) -> str:
    """osquery's process name: the ``Name`` of ``status``, made from the ``comm`` of ``stat``.

    The kernel writes the same name in both, escaped in ``status`` only (a newline as
    ``\\n``, a backslash as ``\\\\``); osquery reads it there and trims blanks.  Doing the
    same to ``stat``'s comm gives that name without reading ``status`` as well.
    """
    return comm.replace("\\", "\\\\").replace("\n", "\\n").strip()


@dataclass(frozen=True, slots=True)
class ProcStatus:
    """The ids and parent the tables and event sources take from ``/proc/<pid>/status``."""

    parent: int | None  # PPid
    uids: tuple[int, ...]  # real, effective, saved, filesystem
    gids: tuple[int, ...]


def parse_status(data: bytes) -> ProcStatus:
    """``/proc/<pid>/status`` -> :class:`ProcStatus`; ValueError without Uid/Gid lines."""
    parent = _status_line(data, b"PPid:")
    uids, gids = _status_line(data, b"Uid:"), _status_line(data, b"Gid:")
    if uids is None or gids is None:
        raise ValueError("status has no Uid/Gid lines")
    return ProcStatus(
        parent=int(parent) if parent else None,
        uids=tuple(int(v) for v in uids.split()),
        gids=tuple(int(v) for v in gids.split()),
    )


def _status_line(data: bytes, key: bytes) -> bytes | None:
    """The value of the ``key`` line (key includes the colon), or None."""
    if data.startswith(key):
        start = len(key)
    else:
        start = data.find(b"\n" + key)
        if start < 0:
            return None
        start += len(key) + 1
    end = data.find(b"\n", start)
    return data[start : end if end >= 0 else None]


def parse_cmdline(data: bytes) -> str:
    """NUL-separated argv -> one string, as osquery: NULs become spaces, outer whitespace trimmed.

    The one parser of a command line read from /proc (processes and the process event
    sources); its size (``cmdline_size``) is ``len(data)``.
    """
    return decode(data.replace(b"\0", b" ").strip())


def parse_io(data: bytes) -> dict[str, int]:
    """``/proc/<pid>/io`` -> {"read_bytes": n, "write_bytes": n, ...}."""
    result: dict[str, int] = {}
    for line in data.split(b"\n"):
        key, sep, value = line.partition(b":")
        if sep:
            result[key.decode()] = int(value)
    return result


def parse_cgroup(data: bytes) -> str:
    """The cgroup path of a process from ``/proc/<pid>/cgroup``; "" when no line has one.

    The unified hierarchy's line (``0::/path``, cgroup v2 and hybrid hosts); on a host with
    only v1 hierarchies, the line of the first of ``pids``, ``cpu``, ``memory``,
    ``name=systemd`` it lists, else the first line.  (osquery takes the first line, which
    on v1 hosts depends on mount order and may be a controller a container runtime did
    not join, such as ``misc``.)  The one cgroup parser: processes, process_events and
    socket_events all use it.
    """
    first: bytes | None = None
    by_controller: dict[bytes, bytes] = {}
    for line in data.split(b"\n"):
        parts = line.split(b":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == b"0" and not controllers:
            return decode(path)
        for controller in controllers.split(b","):
            by_controller.setdefault(controller, path)
        if first is None:
            first = path
    for controller in _V1_CONTROLLERS:
        if controller in by_controller:
            return decode(by_controller[controller])
    return decode(first) if first is not None else ""


def container_id_from_cgroup(path: str | None) -> str | None:
    """The 64-hex container id in a cgroup path, else None (the innermost one wins)."""
    if not path:
        return None
    found = _CONTAINER_ID.findall(path)
    return found[-1] if found else None


class CgroupReader:
    """(cgroup path, container id) of a pid, parsed once per distinct ``cgroup`` file text.

    The one cgroup reader of the event sources, cheap on the hot path: most execs share a
    handful of cgroups, so the parse is cached by the file's bytes (bounded).  A process
    that is gone or refused gives (None, None).
    """

    def __init__(self, max_cached: int = 1024) -> None:
        self.max_cached = max_cached
        self._cache: dict[bytes, tuple[str, str | None]] = {}

    def __call__(self, pid: int, proc_root: str = "/proc") -> tuple[str | None, str | None]:
        try:
            data = read_pid_file(f"{proc_root}/{pid}/cgroup")
        except OSError:  # gone already (short-lived), refused, or no such pid
            return None, None
        found = self._cache.get(data)
        if found is None:
            path = parse_cgroup(data)
            found = (path, container_id_from_cgroup(path))
            if len(self._cache) >= self.max_cached:
                self._cache.clear()
            self._cache[data] = found
        return found


def parse_boot_time(data: bytes) -> int:
    """The ``btime`` line of ``/proc/stat``."""
    start = 0 if data.startswith(b"btime ") else data.find(b"\nbtime ") + 1
    if start == 0 and not data.startswith(b"btime "):
        raise ValueError("/proc/stat has no btime line")
    end = data.find(b"\n", start + 6)
    return int(data[start + 6 : end if end >= 0 else None])


def parse_ns_inode(link: str) -> int | None:
    """``net:[4026531840]`` -> 4026531840 (None when the link is not of that form)."""
    start = link.find(":[")
    if start < 0 or not link.endswith("]"):
        return None
    value = link[start + 2 : -1]
    return int(value) if value.isdigit() else None


def parse_socket_inode(link: str) -> int | None:
    """A /proc/<pid>/fd link ``socket:[12345]`` -> 12345; None for anything else."""
    if not link.startswith("socket:["):
        return None
    value = link[8:-1]
    return int(value) if value.isdigit() else None
