"""process_events / socket_events specs: osquery's columns, and rows from audit events queried by SQL."""

from __future__ import annotations

import json
from pathlib import Path

from eventsources.audit.logfile import ReplayStats, replay
from tables.events import EventStore
from tables.registry import get_spec
from tables.sqlite import Database

PROCESS_COLUMNS = [
    ("pid", "BIGINT"),
    ("path", "TEXT"),
    ("mode", "TEXT"),
    ("cmdline", "TEXT"),
    ("cmdline_size", "BIGINT"),
    ("env", "TEXT"),
    ("env_count", "BIGINT"),
    ("env_size", "BIGINT"),
    ("cwd", "TEXT"),
    ("auid", "BIGINT"),
    ("uid", "BIGINT"),
    ("euid", "BIGINT"),
    ("gid", "BIGINT"),
    ("egid", "BIGINT"),
    ("owner_uid", "BIGINT"),
    ("owner_gid", "BIGINT"),
    ("atime", "BIGINT"),
    ("mtime", "BIGINT"),
    ("ctime", "BIGINT"),
    ("btime", "BIGINT"),
    ("overflows", "TEXT"),
    ("parent", "BIGINT"),
    ("time", "BIGINT"),
    ("timestamp", "DOUBLE"),
    ("uptime", "BIGINT"),
    ("eid", "TEXT"),
    ("status", "BIGINT"),
    ("fsuid", "BIGINT"),
    ("suid", "BIGINT"),
    ("fsgid", "BIGINT"),
    ("sgid", "BIGINT"),
    ("syscall", "TEXT"),
    ("cgroup_path", "TEXT"),
    ("container_id", "TEXT"),
]
SOCKET_COLUMNS = [
    ("action", "TEXT"),
    ("pid", "BIGINT"),
    ("path", "TEXT"),
    ("fd", "TEXT"),
    ("auid", "BIGINT"),
    ("family", "INTEGER"),
    ("protocol", "INTEGER"),
    ("local_address", "TEXT"),
    ("remote_address", "TEXT"),
    ("local_port", "INTEGER"),
    ("remote_port", "INTEGER"),
    ("socket", "TEXT"),
    ("overflows", "TEXT"),
    ("time", "BIGINT"),
    ("timestamp", "DOUBLE"),
    ("uptime", "BIGINT"),
    ("eid", "TEXT"),
    ("success", "INTEGER"),
    ("status", "TEXT"),
    ("uid", "BIGINT"),
    ("euid", "BIGINT"),
    ("gid", "BIGINT"),
    ("parent", "BIGINT"),
    ("process_start_time", "BIGINT"),
    ("cgroup_path", "TEXT"),
    ("container_id", "TEXT"),
    ("community_id", "TEXT"),
]


def test_columns_match_osquery() -> None:
    proc, sock = get_spec("process_events"), get_spec("socket_events")
    reference = json.loads((Path(__file__).parent / "fixtures" / "osquery_schema.json").read_text())
    for spec in (proc, sock):  # osquery's hidden flags (what SELECT * shows) as well as names and types
        ours = {c.name: (c.type, c.hidden) for c in spec.columns}
        assert {n: ours.get(n) for n, *_ in reference[spec.name]["columns"]} == {
            n: (t, hidden) for n, t, hidden, _required in reference[spec.name]["columns"]
        }
    assert [(c.name, c.type) for c in proc.columns] == PROCESS_COLUMNS
    assert [(c.name, c.type) for c in sock.columns] == SOCKET_COLUMNS
    assert {c.name for c in proc.columns if c.hidden} == {
        "cmdline_size",
        "env",
        "env_count",
        "env_size",
        "overflows",
        "eid",
        "timestamp",
    }
    # the agent's additions are hidden (SELECT * is osquery's), but for the cgroup, container and
    # Community ID columns at the end
    assert {c.name for c in sock.columns if c.hidden} == {
        "protocol",
        "socket",
        "overflows",
        "eid",
        "success",
        "timestamp",
        "uid",
        "euid",
        "gid",
        "parent",
        "process_start_time",
    }
    assert [c.name for c in proc.columns if c.additional] == ["time"] == [c.name for c in sock.columns if c.additional]
    assert proc.event and sock.event


LOG = [
    'type=SYSCALL msg=audit(1700000000.1:1): arch=c000003e syscall=59 success=yes exit=0 a0=0 ppid=10 pid=11 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 exe="/usr/bin/id"',
    'type=EXECVE msg=audit(1700000000.1:1): argc=2 a0="id" a1="-u"',
    'type=PROCTITLE msg=audit(1700000000.1:1): proctitle="id"',
    'type=SYSCALL msg=audit(1700000000.2:2): arch=c000003e syscall=49 success=yes exit=0 a0=5 ppid=10 pid=12 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 exe="/usr/sbin/sshd"',
    "type=SOCKADDR msg=audit(1700000000.2:2): saddr=0A000016000000000000000000000000000000000000000000000000",
    'type=PROCTITLE msg=audit(1700000000.2:2): proctitle="sshd"',
]


def test_rows_queryable_through_sql() -> None:
    stores = {"process_events": EventStore("process_events"), "socket_events": EventStore("socket_events")}
    for table, row in replay([line + "\n" for line in LOG], ReplayStats()):
        stores[table].add(row)
    db = Database([get_spec("process_events"), get_spec("socket_events")], services={"event_stores": stores})
    res = db.execute("SELECT pid, parent, path, cmdline, syscall FROM process_events")
    assert res.rows == [(11, 10, "/usr/bin/id", "id -u", "execve")]
    res = db.execute(
        "SELECT action, family, local_address, local_port, status, success, eid IS NOT NULL, overflows "
        "FROM socket_events"
    )
    assert res.rows == [("bind", 10, "::", 22, "succeeded", 1, 1, "")]
