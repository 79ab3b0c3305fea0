"""agent.denylist: who may be denylisted for a day, the record in the state database, the counters."""

from __future__ import annotations

import logging

import pytest

from agent.config import ScheduledQuery
from agent.denylist import Denylist
from agent.events import EventManager
from agent.runner import event_tables_in
from agent.schedule import Schedule
from agent.state import StateDB
from tables.registry import all_specs
from tables.sqlite import Database
from tests._clock import Clock

QUERIES = (
    ScheduledQuery(name="procs", query="SELECT pid FROM processes", interval=60),
    ScheduledQuery(name="exempt", query="SELECT pid FROM processes", interval=60, denylist=False),
    ScheduledQuery(name="execs", query="SELECT pid FROM process_events", interval=60),
)


@pytest.fixture
def parts(tmp_path):
    statedb = StateDB(str(tmp_path / "agentd.db"))
    database = Database(all_specs(), services=EventManager().services)
    clock = Clock()
    schedule = Schedule(statedb, clock=clock, splay_percent=0, seed="s")
    schedule.set_config_queries(QUERIES)
    yield statedb, database, schedule, clock
    database.close()
    statedb.close()


def make(parts, enforce: bool = False) -> Denylist:
    statedb, database, schedule, clock = parts
    return Denylist(
        statedb,
        schedule,
        clock=clock,
        reads_events=lambda sql: bool(event_tables_in(database, sql)),
        enforce_on_events=enforce,
    )


def test_a_query_is_denylisted_for_a_day_and_exempt_ones_are_not(parts, caplog):
    statedb, _, schedule, clock = parts
    denylist = make(parts)
    with caplog.at_level(logging.WARNING, logger="agentd"):
        assert denylist.deny(QUERIES[0], "exceeded its time limit") == clock.now + 86_400
        assert denylist.deny(QUERIES[1], "exceeded its time limit") is None
        assert denylist.deny(QUERIES[2], "exceeded its time limit") is None  # event queries lose events otherwise
    assert set(statedb.denylist(clock.now)) == {"procs"}
    assert schedule.stats["procs"].denylisted(clock.now) and not schedule.stats["execs"].denylisted(clock.now)
    assert "query procs exceeded its time limit; denylisted until" in caplog.text
    assert "query exempt exceeded its time limit; not denylisted (denylist: false)" in caplog.text
    assert (
        "query execs exceeded its time limit; not denylisted (an event query, and events_enforce_denylist is off)"
        in (caplog.text)
    )
    assert [q.name for q in schedule.due(clock.now)] == ["execs", "exempt"]  # procs' turn passes


def test_events_enforce_denylist_and_denying_by_name(parts):
    statedb, _, _, clock = parts
    denylist = make(parts, enforce=True)
    assert denylist.deny_name("execs", "was running when the watchdog stopped agentd") == clock.now + 86_400
    assert denylist.deny_name("gone", "left the schedule") is None
    assert set(statedb.denylist(clock.now)) == {"execs"}
