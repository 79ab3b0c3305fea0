"""Shared /proc readers and pure parsers for the process and socket tables.

Habits from psutil: binary reads in one system call, ``stat`` split on the LAST ``)``
(``comm`` may hold spaces and parentheses), and one mapping of OS errors: a vanished
process (``FileNotFoundError``/``ProcessLookupError``) means "skip the row", a refused
read (``PermissionError``) means "NULL the field".

The parsers take bytes/str and return values; only ``read_*``/``list_pids``/``boot_time``
touch the filesystem, always under a caller-given proc root (tests use fixture trees).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

__all__ = [
    "CLK_TCK",
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
    "boot_time",
    "list_pids",
    "parse_boot_time",
    "parse_cgroup_path",
    "parse_cmdline",
    "parse_io",
    "parse_ns_inode",
    "parse_socket_inode",
    "parse_stat",
    "parse_status_ids",
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


def read_link(path: str) -> str | None:
    """Target of a /proc symlink (exe, cwd, root), "" when it has none, None when refused.

    Kernel threads and zombies have no exe/cwd (ENOENT): that is "", as osquery reports.
    A process that vanished gives "" too; its row was already decided by an earlier read.
    """
    try:
        return os.readlink(path)
    except PermissionError:
        return None
    except GONE:
        return ""
    except OSError:  # e.g. EINVAL on a fixture tree's plain file
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
    name = data[data.find(b"(") + 1 : rpar].decode("utf-8", "replace")
    return name, data[rpar + 2 :].split()


def parse_status_ids(data: bytes) -> tuple[list[int], list[int]]:
    """The ``Uid:`` and ``Gid:`` lines of ``/proc/<pid>/status``: ([real, effective, saved, fs] x2)."""
    return _status_ints(data, b"\nUid:"), _status_ints(data, b"\nGid:")


def _status_ints(data: bytes, key: bytes) -> list[int]:
    start = data.find(key)
    if start < 0:
        raise ValueError(f"status has no {key.strip().decode()} line")
    start += len(key)
    end = data.find(b"\n", start)
    return [int(v) for v in data[start : end if end >= 0 else None].split()]


def parse_cmdline(data: bytes) -> str:
    """NUL-separated argv -> one space-joined string (osquery's ``cmdline``)."""
    if not data:
        return ""
    return data.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")


def parse_io(data: bytes) -> dict[str, int]:
    """``/proc/<pid>/io`` -> {"read_bytes": n, "write_bytes": n, ...}."""
    result: dict[str, int] = {}
    for line in data.split(b"\n"):
        key, sep, value = line.partition(b":")
        if sep:
            result[key.decode()] = int(value)
    return result


def parse_cgroup_path(data: bytes) -> str:
    """The process's cgroup path: the unified (``0::``) hierarchy, else the first listed."""
    if data.startswith(b"0::"):
        start = 3
    else:
        start = data.find(b"\n0::") + 4
        if start == 3:  # no unified hierarchy (cgroup v1 only): the first line's path
            first = data.split(b"\n", 1)[0]
            return first.split(b":", 2)[2].decode("utf-8", "replace") if first.count(b":") >= 2 else ""
    end = data.find(b"\n", start)
    return data[start : end if end >= 0 else None].decode("utf-8", "replace")


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
