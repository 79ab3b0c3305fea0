"""``processes``: every process from /proc, with osquery's columns and Linux semantics.

Each /proc file is read only when a column that needs it is selected, and
``WHERE pid = X`` / ``IN (...)`` reads only those pid directories.  As osquery: ``name`` is
the ``Name`` of ``status`` (made from ``stat``'s comm, escaped as the kernel escapes it
there), ``cmdline`` has NULs as spaces and no outer whitespace, a link that cannot be read
(exe, cwd, root) is ``''``, and ``path`` loses the `` (deleted)`` the kernel appends for an
unlinked binary (``on_disk`` 0).  All parsing
is :mod:`tables.procfs`'s, shared with the process event sources.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from . import procfs as pf
from .procfs import (
    STAT_NICE,
    STAT_NUM_THREADS,
    STAT_PGRP,
    STAT_PPID,
    STAT_RSS,
    STAT_STARTTIME,
    STAT_STATE,
    STAT_STIME,
    STAT_UTIME,
    STAT_VSIZE,
)
from .spec import Column, QueryContext, Row, TableSpec

# Which columns each source feeds; a source is read only if one of its columns is used.
_STAT_COLUMNS = (
    "name",
    "state",
    "parent",
    "pgroup",
    "nice",
    "threads",
    "user_time",
    "system_time",
    "start_time",
    "resident_size",
    "total_size",
)
_STATUS_COLUMNS = ("uid", "gid", "euid", "egid", "suid", "sgid")
_IO_COLUMNS = ("disk_bytes_read", "disk_bytes_written")

#: Columns osquery defines only on Windows or macOS: hidden here, always NULL.
_OTHER_PLATFORM_COLUMNS = (
    Column("elevated_token", "INTEGER", "Process uses elevated token yes=1, no=0 (Windows)", hidden=True),
    Column("secure_process", "INTEGER", "Process is secure (IUM) yes=1, no=0 (Windows)", hidden=True),
    Column("protection_type", "TEXT", "The protection type of the process (Windows)", hidden=True),
    Column("virtual_process", "INTEGER", "Process is virtual yes=1, no=0 (Windows)", hidden=True),
    Column("elapsed_time", "BIGINT", "Elapsed time in seconds this process has been running (Windows)", hidden=True),
    Column("handle_count", "BIGINT", "Total number of handles the process has open (Windows)", hidden=True),
    Column("percent_processor_time", "BIGINT", "Processor time in 100 ns ticks (Windows)", hidden=True),
    Column("upid", "BIGINT", "A 64bit pid that is never reused (macOS)", hidden=True),
    Column("uppid", "BIGINT", "The 64bit parent pid that is never reused (macOS)", hidden=True),
    Column("cpu_type", "INTEGER", "Processor type the process runs for (macOS)", hidden=True),
    Column("cpu_subtype", "INTEGER", "Processor subtype the process runs for (macOS)", hidden=True),
    Column("translated", "INTEGER", "Running under Rosetta yes=1, no=0, error=-1 (macOS)", hidden=True),
)


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per process directory under ``context.paths.proc`` (or per pushed-down pid)."""
    proc = context.paths.proc
    used = context.any_used
    want_stat = used(*_STAT_COLUMNS)
    want_status = used(*_STATUS_COLUMNS)
    want_cmdline = used("cmdline")
    want_exe = used("path", "on_disk")
    want_cwd = used("cwd")
    want_root = used("root")
    want_io = used(*_IO_COLUMNS)
    want_cgroup = used("cgroup_path")
    want_wired = used("wired_size")
    boot = pf.boot_time(proc) if used("start_time") else None
    ticks = pf.CLK_TCK
    page = pf.PAGE_SIZE
    wanted = context.values("pid")
    pids = pf.select_pids(proc, wanted)
    read_file = pf.read_pid_file
    parse_stat = pf.parse_stat
    parse_status = pf.parse_status
    process_name = pf.process_name
    gone = pf.GONE
    any_file = want_stat or want_status or want_cmdline or want_io or want_cgroup

    for pid in pids:
        base = f"{proc}/{pid}/"
        row: Row = {"pid": pid}
        try:
            if want_stat:
                try:
                    comm, f = parse_stat(read_file(base + "stat"))
                    row["name"] = process_name(comm)
                    # a dozen int()s cost less than choosing among them
                    row["state"] = f[STAT_STATE].decode()
                    row["parent"] = int(f[STAT_PPID])
                    row["pgroup"] = int(f[STAT_PGRP])
                    row["user_time"] = int(f[STAT_UTIME]) * 1000 // ticks
                    row["system_time"] = int(f[STAT_STIME]) * 1000 // ticks
                    row["nice"] = int(f[STAT_NICE])
                    row["threads"] = int(f[STAT_NUM_THREADS])
                    row["start_time"] = boot + int(f[STAT_STARTTIME]) // ticks if boot is not None else -1
                    row["total_size"] = int(f[STAT_VSIZE])
                    row["resident_size"] = int(f[STAT_RSS]) * page
                except PermissionError:
                    pass  # the stat columns stay NULL
                except (ValueError, IndexError):
                    continue  # torn or foreign content: not a process we can describe
            if want_status:
                try:
                    status = parse_status(read_file(base + "status"))
                    uids, gids = status.uids, status.gids
                    row["uid"], row["euid"], row["suid"] = uids[0], uids[1], uids[2]
                    row["gid"], row["egid"], row["sgid"] = gids[0], gids[1], gids[2]
                except (PermissionError, ValueError, IndexError):
                    pass  # refused or foreign content: these columns stay NULL
            if want_cmdline:
                try:
                    row["cmdline"] = pf.parse_cmdline(read_file(base + "cmdline"))
                except PermissionError:
                    pass
            if want_io:
                try:
                    io = pf.parse_io(read_file(base + "io"))
                except (PermissionError, ValueError):
                    pass  # /proc/<pid>/io needs ptrace access: NULL, as a refused field
                else:
                    row["disk_bytes_read"] = io.get("read_bytes")
                    written = io.get("write_bytes")
                    if written is not None:
                        written -= io.get("cancelled_write_bytes", 0)
                    row["disk_bytes_written"] = written
            if want_cgroup:
                try:
                    row["cgroup_path"] = pf.parse_cgroup(read_file(base + "cgroup"))
                except PermissionError:
                    pass
            if not any_file and wanted is not None and not os.path.isdir(base):
                continue  # a pushed-down pid that does not exist
        except gone:
            continue  # the process exited mid-scan
        if want_exe:
            row["path"], row["on_disk"] = pf.executable(base)
        if want_cwd:
            row["cwd"] = pf.read_link(base + "cwd")
        if want_root:
            row["root"] = pf.read_link(base + "root")
        if want_wired:
            row["wired_size"] = 0  # Linux has no unpageable-memory counter (as osquery)
        yield row


SPEC = TableSpec(
    name="processes",
    description="All running processes on the host system.",
    columns=(
        Column("pid", "BIGINT", "Process (or thread) ID", index=True),
        Column("name", "TEXT", "The process path or shorthand argv[0]"),
        Column("path", "TEXT", "Path to executed binary"),
        Column("cmdline", "TEXT", "Complete argv"),
        Column("state", "TEXT", "Process state"),
        Column("cwd", "TEXT", "Process current working directory"),
        Column("root", "TEXT", "Process virtual root directory"),
        Column("uid", "BIGINT", "Unsigned user ID"),
        Column("gid", "BIGINT", "Unsigned group ID"),
        Column("euid", "BIGINT", "Unsigned effective user ID"),
        Column("egid", "BIGINT", "Unsigned effective group ID"),
        Column("suid", "BIGINT", "Unsigned saved user ID"),
        Column("sgid", "BIGINT", "Unsigned saved group ID"),
        Column("on_disk", "INTEGER", "The process path exists yes=1, no=0, unknown=-1"),
        Column("wired_size", "BIGINT", "Bytes of unpageable memory used by process"),
        Column("resident_size", "BIGINT", "Bytes of private memory used by process"),
        Column("total_size", "BIGINT", "Total virtual memory size"),
        Column("user_time", "BIGINT", "CPU time in milliseconds spent in user space"),
        Column("system_time", "BIGINT", "CPU time in milliseconds spent in kernel space"),
        Column("disk_bytes_read", "BIGINT", "Bytes read from disk"),
        Column("disk_bytes_written", "BIGINT", "Bytes written to disk"),
        Column("start_time", "BIGINT", "Process start time in seconds since Epoch, in case of error -1"),
        Column("parent", "BIGINT", "Process parent's PID"),
        Column("pgroup", "BIGINT", "Process group"),
        Column("threads", "INTEGER", "Number of threads used by process"),
        Column("nice", "INTEGER", "Process nice level (-20 to 20, default 0)"),
        *_OTHER_PLATFORM_COLUMNS,
        Column("cgroup_path", "TEXT", "The full hierarchical path of the process's control group"),
    ),
    generate=generate,
    examples=(
        "SELECT * FROM processes WHERE pid = 1",
        "SELECT pid, name, cmdline FROM processes WHERE on_disk = 0",
    ),
)
