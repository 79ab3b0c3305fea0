"""process_events: every execve/execveat on the host, as kernel audit reported it."""

from __future__ import annotations

from .events import event_table
from .spec import Column

__all__ = ["SPEC"]

SPEC = event_table(
    "process_events",
    "Process executions (execve, execveat) captured from kernel audit as they happen.",
    (
        Column("pid", "BIGINT", "Process (or thread) id"),
        Column("path", "TEXT", "Path of the executed file (the new image)"),
        Column("mode", "TEXT", "Permission bits of the executed file, octal as audit wrote them"),
        Column("cmdline", "TEXT", "Arguments (argv) joined by spaces"),
        Column("cmdline_size", "BIGINT", "Size in bytes of the command line", hidden=True),
        Column("env", "TEXT", "Environment, space-delimited (audit does not record it: NULL)", hidden=True),
        Column("env_count", "BIGINT", "Number of environment variables (NULL from audit)", hidden=True),
        Column("env_size", "BIGINT", "Size in bytes of the environment (NULL from audit)", hidden=True),
        Column("cwd", "TEXT", "Working directory of the process"),
        Column("auid", "BIGINT", "Audit (login) user id at exec"),
        Column("uid", "BIGINT", "Real user id at exec"),
        Column("euid", "BIGINT", "Effective user id at exec"),
        Column("gid", "BIGINT", "Real group id at exec"),
        Column("egid", "BIGINT", "Effective group id at exec"),
        Column("owner_uid", "BIGINT", "User id owning the executed file"),
        Column("owner_gid", "BIGINT", "Group id owning the executed file"),
        Column("atime", "BIGINT", "Executed file's last access, UNIX time"),
        Column("mtime", "BIGINT", "Executed file's last modification, UNIX time"),
        Column("ctime", "BIGINT", "Executed file's last metadata change, UNIX time"),
        Column("btime", "BIGINT", "Executed file's creation, UNIX time (0: not available)"),
        Column(
            "overflows",
            "TEXT",
            "Parts cut short or damaged ('cmdline' when argv was truncated; 'cwd', ...)",
            hidden=True,
        ),
        Column("parent", "BIGINT", "Parent process id, -1 when unknown"),
        Column("time", "BIGINT", "Time of the exec, UNIX time", additional=True),
        Column("timestamp", "DOUBLE", "Time of the exec, UNIX time with audit's millisecond precision", hidden=True),
        Column("uptime", "BIGINT", "Time of the exec, seconds since boot"),
        Column("eid", "TEXT", "Event id", hidden=True),
        Column("status", "BIGINT", "OpenBSM return code on macOS; 0 here (only successful execs are recorded)"),
        Column("fsuid", "BIGINT", "Filesystem user id at exec"),
        Column("suid", "BIGINT", "Saved user id at exec"),
        Column("fsgid", "BIGINT", "Filesystem group id at exec"),
        Column("sgid", "BIGINT", "Saved group id at exec"),
        Column("syscall", "TEXT", "Syscall name: execve or execveat"),
        Column("cgroup_path", "TEXT", "The process's cgroup path, read at event time"),
        Column("container_id", "TEXT", "Container id from the cgroup path, read at event time"),
    ),
    examples=(
        "SELECT pid, parent, path, cmdline, cwd, uid FROM process_events",
        "SELECT path, count(*) AS execs FROM process_events GROUP BY path ORDER BY execs DESC",
    ),
)
