"""agent.status: one row per query for both schedule tables, and the view that builds the status."""

from __future__ import annotations

import os

from agent.config import AgentConfig, ScheduledQuery
from agent.events import EventManager, EventOptions
from agent.packs import PackDiscovery
from agent.schedule import Schedule
from agent.state import StateDB
from agent.status import Activity, AgentInfo, QueryStats, QueryStatus, Status, StatusView, TableMode
from agent.status_tables import AGENT_SCHEDULE, OSQUERY_SCHEDULE
from tests._clock import Clock


def test_one_row_serves_both_schedule_tables_and_the_status():
    stats = QueryStats(name="q", query="SELECT 1", interval=60, pack="p")
    stats.record(finished=1000, wall_ms=2500, user_ms=7, system_ms=3, memory=4096, rows=2, lines=1, output_bytes=99)
    stats.denylisted_until = 2000.0
    row = stats.row(now=1500)
    for spec in (OSQUERY_SCHEDULE, AGENT_SCHEDULE):
        assert {c.name for c in spec.columns} <= set(row), spec.name
    assert (row["wall_time"], row["denylisted"], row["blacklisted"], row["denylisted_until"]) == (2, 1, 1, 2000)
    assert stats.row(now=2500)["denylisted_until"] == 0  # expired: shown as not denylisted
    entry = QueryStatus.from_row(row, interval=57)
    assert (entry.name, entry.pack, entry.interval, entry.denylisted, entry.last_rows) == ("q", "p", 57, True, 2)


def test_the_view_reads_the_parts_as_they_are_now(tmp_path):
    clock = Clock()
    statedb = StateDB(str(tmp_path / "agentd.db"))
    try:
        schedule = Schedule(statedb, clock=clock, splay_percent=0, seed="s")
        events = EventManager(EventOptions(disable_events=True))
        activity = Activity()
        view = StatusView(
            AgentInfo(host_identifier="box"),
            activity,
            schedule=schedule,
            packs=PackDiscovery(AgentConfig(), refresh_interval=3600),
            events=events,
            flags=(),
            clock=clock,
            own_rss=lambda: 1234,
        )
        empty = view.build()
        assert isinstance(empty, Status) and empty.schedule == () and empty.agent.rss_bytes == 1234
        assert empty.agent.config_path == "<embedded default>" and empty.agent.pid == os.getpid()
        assert [b.mode for b in empty.events.buffers] == [TableMode.IDLE] * 3  # not started yet

        schedule.add(ScheduledQuery(name="q", query="SELECT 1", interval=30))
        activity.running, activity.rss, activity.cpu_percent = "q", 99, 1.234
        now = view.build()
        assert [(s.name, s.interval) for s in now.schedule] == [("q", 30)]
        assert (now.agent.running, now.agent.rss_bytes, now.agent.cpu_percent) == ("q", 99, 1.23)
        assert view.queries is schedule.stats and view.packs == ()
    finally:
        statedb.close()


def test_the_uplink_section_round_trips_and_prints():
    from agent.status import UplinkStatus, format_status

    uplink = UplinkStatus(
        url="wss://c1.example:9440",
        state="connected",
        last_ack=41,
        queued_batches=2,
        queued_rows=30,
        queued_bytes=900,
        dropped_batches=1,
        dropped_rows=12,
        sent_batches=43,
        subscriptions=3,
    )
    status = Status(uplink=uplink)
    assert Status.from_json(status.to_json()) == status
    assert Status.from_json(Status().to_json()).uplink is None  # no collector configured
    text = format_status(status)
    assert "collector uplink: connected wss://c1.example:9440" in text
    assert "queued:         30 rows in 2 batches (900 bytes)" in text
    assert "dropped:        12 rows in 1 batches (queue bounds)" in text
    assert "subscriptions:  3" in text
    assert "collector uplink" not in format_status(Status())
