"""agent.schedule: config and added queries, their timing and counters; the loop picks up changes at once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from agent.config import ScheduledQuery
from agent.daemon import Agent, Settings
from agent.schedule import Schedule
from agent.sdnotify import Notifier
from agent.state import StateDB
from tests._clock import Clock


@pytest.fixture
def statedb(tmp_path):
    db = StateDB(str(tmp_path / "agentd.db"))
    yield db
    db.close()


def q(name: str, interval: int = 60, **kw) -> ScheduledQuery:
    return ScheduledQuery(name=name, query=f"SELECT '{name}'", interval=interval, **kw)


def test_config_and_added_queries(statedb):
    clock = Clock()
    schedule = Schedule(statedb, clock=clock, splay_percent=0, seed="s")
    assert schedule.queries == {} and schedule.next_due() == float("inf")
    assert schedule.set_config_queries([q("a"), q("b", pack="p")]) == (["a", "b"], [])
    schedule.add(q("sub", 10))
    assert sorted(schedule.queries) == ["a", "b", "sub"] and sorted(schedule.stats) == ["a", "b", "sub"]
    assert schedule.stats["b"].pack == "p" and schedule.interval_of("sub") == 10
    assert statedb.splay()["sub"] == (10, 10)  # kept across restarts
    assert schedule.changed.is_set()

    with pytest.raises(ValueError, match="config query is already named 'a'"):
        schedule.add(q("a"))
    with pytest.raises(ValueError, match="clash with added queries: sub"):
        schedule.set_config_queries([q("a"), q("sub")])

    # pack discovery replaces the config's queries; added ones stay
    assert schedule.set_config_queries([q("a"), q("c")]) == (["c"], ["b"])
    assert sorted(schedule.queries) == ["a", "c", "sub"] and "b" not in schedule.stats
    assert schedule.set_config_queries([q("a"), q("c")]) == ([], [])  # unchanged: nothing happens

    assert schedule.remove("sub") and not schedule.remove("sub")
    assert sorted(schedule.queries) == ["a", "c"] and "sub" not in schedule.stats
    assert [s.name for s in schedule.statuses(clock.now)] == ["a", "c"]


def test_a_query_removed_while_it_runs_keeps_its_counters_until_it_ends(statedb):
    clock = Clock()
    schedule = Schedule(statedb, clock=clock, splay_percent=0, seed="s")
    schedule.add(q("sub", 10))
    [due] = schedule.due(clock.now)  # now "running"
    schedule.remove("sub")
    assert "sub" in schedule.stats and [s.name for s in schedule.statuses(clock.now)] == ["sub"]
    schedule.mark_run(due.name, clock.now + 1)
    assert schedule.stats == {}


def test_denied_queries_show_it_from_the_start(statedb):
    clock = Clock()
    statedb.deny("slow", clock.now + 100, "too slow")
    schedule = Schedule(statedb, clock=clock, splay_percent=0, seed="s")
    schedule.set_config_queries([q("slow"), q("fine")])
    assert schedule.stats["slow"].denylisted(clock.now) and not schedule.stats["fine"].denylisted(clock.now)
    assert [x.name for x in schedule.due(clock.now)] == ["fine"]  # the denylisted one's turn passes


async def test_a_query_added_while_agentd_runs_runs_at_once(tmp_path: Path):
    """What the uplink will do with a collector subscription: add it; the sleeping loop wakes and runs it."""
    config = tmp_path / "agentd.conf"
    config.write_text(
        json.dumps(
            {
                "options": {"disable_events": True, "schedule_splay_percent": 0, "watchdog_level": -1},
                "schedule": {"hourly": {"query": "SELECT 1 AS one", "interval": 3600}},
            }
        )
    )
    settings = Settings(
        config_path=str(config),
        state_dir=str(tmp_path / "state"),
        log_dir=str(tmp_path / "log"),
        socket_path=str(tmp_path / "agentd.sock"),
        clock=Clock(),  # still: after the first run nothing is due for an hour
    )
    stop = asyncio.Event()
    agent = Agent(settings, shutdown_trigger=stop.wait, notifier=Notifier(None))
    serving = asyncio.create_task(agent.serve())
    results = tmp_path / "log" / "results.log"

    async def lines() -> list[dict]:
        for _ in range(600):  # bounded: until the loop has written what it ran
            text = results.read_text() if results.exists() else ""
            if text.count("\n") >= 2 or serving.done():
                break
            await asyncio.sleep(0.05)
        return [json.loads(line) for line in results.read_text().splitlines()]

    for _ in range(600):
        if "scheduler" in agent.lifecycle.started or serving.done():
            break
        await asyncio.sleep(0.05)
    agent.parts.schedule.add(ScheduledQuery(name="subscription", query="SELECT 2 AS two", interval=60))
    assert [line["name"] for line in await lines()] == ["hourly", "subscription"]
    stats = agent.parts.schedule.stats["subscription"]
    for _ in range(600):  # bounded: the line is written before the run's counters are recorded
        if stats.executions:
            break
        await asyncio.sleep(0.01)
    assert [(s.name, s.executions) for s in agent.status().schedule] == [("hourly", 1), ("subscription", 1)]
    agent.parts.schedule.remove("subscription")
    assert [s.name for s in agent.status().schedule] == ["hourly"]
    stop.set()
    assert await asyncio.wait_for(serving, timeout=30) == 0
