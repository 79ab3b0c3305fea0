"""socket_events: connect/bind/accept calls on the host, as kernel audit reported them."""

from __future__ import annotations

from .events import event_table
from .spec import Column

__all__ = ["SPEC"]

SPEC = event_table(
    "socket_events",
    "Socket connect, bind and accept calls captured from kernel audit as they happen.",
    (
        Column("action", "TEXT", "The socket call: connect, bind or accept"),
        Column("pid", "BIGINT", "Process (or thread) id"),
        Column("path", "TEXT", "Path of the process's executable"),
        Column("fd", "TEXT", "The socket's file descriptor"),
        Column("auid", "BIGINT", "Audit (login) user id"),
        Column("family", "INTEGER", "Address family (2 AF_INET, 10 AF_INET6, 1 AF_UNIX)"),
        Column(
            "protocol",
            "INTEGER",
            "Protocol id (6 TCP, 17 UDP) when the agent could read the socket at event time; else 0 (audit lacks it)",
            hidden=True,
        ),
        Column(
            "local_address", "TEXT", "Local address (bind; connect and accept when the agent could read the socket)"
        ),
        Column("remote_address", "TEXT", "Remote address (connect, accept)"),
        Column(
            "local_port",
            "INTEGER",
            "Local port (bind; connect and accept when the agent could read the socket); else 0, as osquery",
        ),
        Column("remote_port", "INTEGER", "Remote port (connect, accept); else 0, as osquery"),
        Column("socket", "TEXT", "Path of a UNIX domain socket ('@name' when abstract)", hidden=True),
        Column(
            "overflows",
            "TEXT",
            "Parts of the audit records that were damaged or cut short ('sockaddr', ...)",
            hidden=True,
        ),
        Column("time", "BIGINT", "Time of the call, UNIX time", additional=True),
        Column("timestamp", "DOUBLE", "Time of the call, UNIX time with audit's millisecond precision", hidden=True),
        Column("uptime", "BIGINT", "Time of the call, seconds since boot"),
        Column("eid", "TEXT", "Event id", hidden=True),
        Column(
            "success", "INTEGER", "1 when the call succeeded or is in progress (deprecated: use status)", hidden=True
        ),
        Column(
            "status",
            "TEXT",
            "succeeded, failed, in_progress (non-blocking connect) or no_client (empty non-blocking accept)",
        ),
        Column("uid", "BIGINT", "The caller's user id (from the audit record)", hidden=True),
        Column("euid", "BIGINT", "The caller's effective user id (from the audit record)", hidden=True),
        Column("gid", "BIGINT", "The caller's group id (from the audit record)", hidden=True),
        Column(
            "parent", "BIGINT", "The caller's parent process id (from the audit record), -1 when unknown", hidden=True
        ),
        Column(
            "process_start_time",
            "BIGINT",
            "The caller's start time as processes.start_time gives it (read at event time; NULL when gone)",
            hidden=True,
        ),
        Column("cgroup_path", "TEXT", "The process's cgroup path, read at event time"),
        Column("container_id", "TEXT", "Container id from the cgroup path, read at event time"),
        Column(
            "community_id",
            "TEXT",
            "Community ID v1 of the TCP/UDP flow (as Zeek's conn.log), when the agent could read both ends",
        ),
    ),
    examples=(
        "SELECT pid, path, remote_address, remote_port, status FROM socket_events WHERE action = 'connect'",
        "SELECT pid, path, local_address, local_port FROM socket_events WHERE action = 'bind'",
    ),
)
