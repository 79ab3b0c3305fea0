"""Status tables: osquery's exact columns, values from a daemon state, the monitoring pack's queries."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from agent.events import EventManager, EventOptions
from agent.options import Options
from agent.status_tables import AGENT_SERVICE, SPECS, AgentInfo, QueryStats, build_distro, flag_rows
from tables.registry import all_specs
from tables.sqlite import Database

# osquery's columns (osquery-tables.json, specs/utility/*.table), in order, with types.
OSQUERY_COLUMNS = {
    "osquery_info": [
        ("pid", "INTEGER"),
        ("uuid", "TEXT"),
        ("instance_id", "TEXT"),
        ("version", "TEXT"),
        ("config_hash", "TEXT"),
        ("config_valid", "INTEGER"),
        ("extensions", "TEXT"),
        ("build_platform", "TEXT"),
        ("build_distro", "TEXT"),
        ("start_time", "INTEGER"),
        ("watcher", "INTEGER"),
        ("platform_mask", "INTEGER"),
    ],
    "osquery_schedule": [
        ("name", "TEXT"),
        ("query", "TEXT"),
        ("interval", "INTEGER"),
        ("executions", "BIGINT"),
        ("last_executed", "BIGINT"),
        ("denylisted", "INTEGER"),
        ("output_size", "BIGINT"),
        ("wall_time", "BIGINT"),
        ("wall_time_ms", "BIGINT"),
        ("last_wall_time_ms", "BIGINT"),
        ("user_time", "BIGINT"),
        ("last_user_time", "BIGINT"),
        ("system_time", "BIGINT"),
        ("last_system_time", "BIGINT"),
        ("average_memory", "BIGINT"),
        ("last_memory", "BIGINT"),
    ],
    "osquery_packs": [
        ("name", "TEXT"),
        ("platform", "TEXT"),
        ("version", "TEXT"),
        ("shard", "INTEGER"),
        ("discovery_cache_hits", "INTEGER"),
        ("discovery_executions", "INTEGER"),
        ("active", "INTEGER"),
    ],
    "osquery_events": [
        ("name", "TEXT"),
        ("publisher", "TEXT"),
        ("type", "TEXT"),
        ("subscriptions", "INTEGER"),
        ("events", "INTEGER"),
        ("refreshes", "INTEGER"),
        ("active", "INTEGER"),
    ],
    "osquery_flags": [
        ("name", "TEXT"),
        ("type", "TEXT"),
        ("description", "TEXT"),
        ("default_value", "TEXT"),
        ("value", "TEXT"),
        ("shell_only", "INTEGER"),
    ],
}

# osquery-monitoring.conf's queries that use these tables, verbatim.
MONITORING_SCHEDULE = (
    "select name, interval, executions, output_size, wall_time, (user_time/executions) as avg_user_time, "
    "(system_time/executions) as avg_system_time, average_memory, last_executed, denylisted from osquery_schedule;"
)
MONITORING_EVENTS = "select name, publisher, type, subscriptions, events, active from osquery_events;"
MONITORING_INFO = (
    "select i.*, p.resident_size, p.user_time, p.system_time, time.minutes as counter "
    "from osquery_info i, processes p, time where p.pid = i.pid;"
)


@dataclass
class State:
    """The daemon's state as the tables see it (the AgentView protocol)."""

    info: AgentInfo
    queries: dict[str, QueryStats] = field(default_factory=dict)
    packs: list[dict[str, Any]] = field(default_factory=list)
    flags: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def state() -> State:
    info = AgentInfo(uuid="u-1", instance_id="i-1", config_hash="abc", config_valid=True, host_identifier="h")
    procs = QueryStats(name="procs", query="SELECT pid FROM processes", interval=10)
    procs.record(finished=1000, wall_ms=30, user_ms=20, system_ms=10, memory=4096, rows=5, lines=5, output_bytes=500)
    procs.record(finished=1010, wall_ms=10, user_ms=6, system_ms=4, memory=8192, rows=5, lines=0, output_bytes=0)
    slow = QueryStats(name="pack_p_slow", query="SELECT 1", interval=60, pack="p")
    slow.record(
        finished=1000,
        wall_ms=2000,
        user_ms=1900,
        system_ms=0,
        memory=0,
        rows=0,
        lines=0,
        output_bytes=0,
        error="query exceeded the time limit of 1 s and was interrupted",
    )
    slow.denylisted_until = time.time() + 3600
    return State(
        info=info,
        queries={"procs": procs, "pack_p_slow": slow},
        packs=[
            {
                "name": "p",
                "platform": "linux",
                "version": "",
                "shard": 0,
                "discovery_cache_hits": 0,
                "discovery_executions": 1,
                "active": 1,
            }
        ],
        flags=flag_rows(Options(schedule_timeout=5.0)),
    )


@pytest.fixture
def events():
    """A real event manager with a real source: /proc polling (events are not started here)."""
    return EventManager(EventOptions(process_events_source="proc_poll", disable_hardware_events=True))


@pytest.fixture
def db(state, events):
    specs = {s.name: s for s in (*all_specs(), *SPECS, *events.specs())}
    database = Database(specs.values(), services={AGENT_SERVICE: state, **events.services})
    yield database
    database.close()


@pytest.mark.parametrize("table", sorted(OSQUERY_COLUMNS))
def test_osquery_columns_exact(table):
    spec = next(s for s in SPECS if s.name == table)
    visible = [(c.name, c.type) for c in spec.columns if not c.hidden]
    assert visible == OSQUERY_COLUMNS[table]


def test_osquery_schedule_values(db):
    rows = {r["name"]: r for r in db.execute("SELECT * FROM osquery_schedule").dicts()}
    procs = rows["procs"]
    assert procs["executions"] == 2 and procs["last_executed"] == 1010
    assert procs["wall_time_ms"] == 40 and procs["last_wall_time_ms"] == 10 and procs["wall_time"] == 0
    assert procs["user_time"] == 26 and procs["system_time"] == 14
    assert procs["average_memory"] == 6144 and procs["last_memory"] == 8192
    assert procs["output_size"] == 500 and procs["denylisted"] == 0
    assert rows["pack_p_slow"]["denylisted"] == 1 and rows["pack_p_slow"]["wall_time"] == 2
    assert db.execute("SELECT blacklisted FROM osquery_schedule WHERE name = 'pack_p_slow'").rows == [(1,)]


def test_agent_schedule_values(db):
    rows = {r["name"]: r for r in db.execute("SELECT * FROM agent_schedule").dicts()}
    slow = rows["pack_p_slow"]
    assert slow["pack"] == "p" and slow["errors"] == 1 and "time limit" in slow["last_error"]
    assert slow["denylisted"] == 1 and slow["denylisted_until"] > time.time()
    assert rows["procs"]["last_rows"] == 5 and rows["procs"]["last_lines"] == 0 and rows["procs"]["errors"] == 0


def test_monitoring_pack_queries_run(db):
    result = db.execute(MONITORING_SCHEDULE)
    by_name = {r["name"]: r for r in result.dicts()}
    assert by_name["procs"]["avg_user_time"] == 13 and by_name["procs"]["avg_system_time"] == 7
    info = db.execute(MONITORING_INFO).dicts()
    assert len(info) == 1
    row = info[0]
    assert row["pid"] == os.getpid() and row["uuid"] == "u-1" and row["config_valid"] == 1
    assert row["resident_size"] > 0 and row["counter"] is not None
    assert row["platform_mask"] == 9 and row["build_platform"] == "linux" and row["watcher"] == -1


async def test_monitoring_events_query(db, events):
    await events.start()
    try:
        events.sink("process_events", {"pid": 1, "path": "/bin/true"})
        rows = {(r["name"], r["type"]): r for r in db.execute(MONITORING_EVENTS).dicts()}
    finally:
        await events.stop()
    publisher = rows[("proc_poll", "publisher")]
    assert publisher["active"] == 1 and publisher["subscriptions"] == 1
    subscriber = rows[("process_events", "subscriber")]
    assert subscriber["publisher"] == "proc_poll" and subscriber["events"] == 1 and subscriber["active"] == 1


def test_info_without_daemon_describes_this_process():
    database = Database(SPECS)
    try:
        info = database.execute("SELECT pid, config_valid FROM osquery_info").rows
        assert info == [(os.getpid(), 0)]
        agent = database.execute("SELECT daemon, resident_size FROM agent_info").dicts()[0]
        assert agent["daemon"] == 0 and agent["resident_size"] > 0
        assert database.execute("SELECT * FROM osquery_schedule").rows == []
    finally:
        database.close()


def test_packs_and_flags(db):
    assert db.execute("SELECT name, active FROM osquery_packs").rows == [("p", 1)]
    flags = {r["name"]: r for r in db.execute("SELECT * FROM osquery_flags").dicts()}
    assert flags["schedule_timeout"]["value"] == "5.0" and flags["schedule_timeout"]["default_value"] == "10.0"
    assert flags["disable_events"]["type"] == "bool" and flags["disable_events"]["value"] == "false"


def test_build_distro(tmp_path):
    path = tmp_path / "os-release"
    path.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n')
    assert build_distro(str(path)) == "debian12"
    assert build_distro(str(tmp_path / "missing")) == ""
