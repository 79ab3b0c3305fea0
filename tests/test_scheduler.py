from __future__ import annotations

from agent.config import ScheduledQuery
from agent.scheduler import Scheduler, splayed_interval
from tests._clock import Clock


def q(name, interval, **kw):
    return ScheduledQuery(name=name, query="select 1", interval=interval, **kw)


def run_all(s: Scheduler, clock: Clock, until: float, step: float = 1.0) -> dict[str, list[float]]:
    """Step the clock to ``until``; every due query 'runs' instantly. Returns run times."""
    runs: dict[str, list[float]] = {}
    while clock.now <= until:
        for query in s.due(clock.now):
            runs.setdefault(query.name, []).append(clock.now)
            s.mark_run(query.name, clock.now)
        clock.now += step
    return runs


def test_splay_is_deterministic_and_within_percent():
    values = {splayed_interval(f"q{i}", 3600, 10, seed="s") for i in range(200)}
    assert all(3240 <= v <= 3960 for v in values) and len(values) > 50
    assert splayed_interval("a", 3600, 10, seed="s") == splayed_interval("a", 3600, 10, seed="s")
    assert splayed_interval("a", 60, 0) == 60
    assert splayed_interval("a", 1, 50) == 1


def test_each_query_runs_every_splayed_interval_without_drift():
    clock = Clock()
    s = Scheduler([q("a", 60), q("b", 100)], clock=clock, splay_percent=10, seed=7)
    ia, ib = s.interval_of("a"), s.interval_of("b")
    assert 54 <= ia <= 66 and 90 <= ib <= 110
    start = clock.now
    runs = run_all(s, clock, start + 1000, step=0.5)
    assert runs["a"] == [start + k * ia for k in range(len(runs["a"]))]
    assert runs["b"] == [start + k * ib for k in range(len(runs["b"]))]
    assert len(runs["a"]) == 1000 // ia + 1


def test_due_order_is_startup_priority_then_name_and_running_queries_wait():
    clock = Clock()
    s = Scheduler(
        [q("z", 10), q("b", 10), q("a", 10, startup_priority=5), q("c", 10, startup_priority=1)],
        clock=clock,
        splay_percent=0,
    )
    assert [x.name for x in s.due(clock.now)] == ["c", "a", "b", "z"]
    assert s.due(clock.now + 100) == []  # still "running": not handed out twice
    assert s.next_due() == float("inf")
    s.mark_run("b", clock.now + 3)
    assert s.next_due() == clock.now + 10
    assert [x.name for x in s.due(clock.now + 10)] == ["b"]


def test_late_run_does_not_burst():
    clock = Clock(0.0)
    s = Scheduler([q("a", 10)], clock=clock, splay_percent=0)
    assert len(s.due(0)) == 1
    s.mark_run("a", 35.0)  # a slow run, finished long after its next turn
    assert s.next_due() == 45.0
    assert s.due(44.9) == [] and len(s.due(45.0)) == 1


def test_denylisted_query_loses_its_turn():
    clock = Clock(0.0)
    denied: set[str] = {"bad"}
    s = Scheduler([q("bad", 10), q("good", 10)], clock=clock, splay_percent=0, denylisted=denied)
    runs = run_all(s, clock, 30)
    assert "bad" not in runs and runs["good"] == [0, 10, 20, 30]
    assert s.skipped["bad"] == 4
    denied.clear()
    assert [x.name for x in s.due(40)] == ["bad", "good"]


def test_denylist_callback_gets_the_time():
    clock = Clock(0.0)
    s = Scheduler([q("a", 10)], clock=clock, splay_percent=0, denylisted=lambda name, now: now < 25)
    assert run_all(s, clock, 45)["a"] == [30, 40]


def test_restored_last_runs_and_splay_survive_a_restart():
    clock = Clock(1000.0)
    s = Scheduler(
        [q("a", 100), q("new", 100)],
        clock=clock,
        splay_percent=20,
        seed="x",
        last_runs={"a": 950.0},
        splayed={"a": (100, 111)},
    )
    assert s.interval_of("a") == 111
    assert [x.name for x in s.due(1000.0)] == ["new"]
    assert s.next_due() == 950.0 + 111
    assert [x.name for x in s.due(1061.0)] == ["a"]
    assert s.splayed()["a"] == (100, 111)
    # a stored splay for another interval is not reused
    s2 = Scheduler([q("a", 200)], clock=clock, splay_percent=20, seed="x", splayed={"a": (100, 111)})
    assert s2.interval_of("a") == splayed_interval("a", 200, 20, "x")
    # overdue after a long stop: due once at start, not once per missed turn
    s3 = Scheduler([q("a", 100)], clock=clock, splay_percent=0, last_runs={"a": 10.0})
    assert len(s3.due(1000.0)) == 1 and s3.due(1000.0) == []


def test_reload_keeps_timing_of_unchanged_queries():
    clock = Clock(0.0)
    s = Scheduler([q("a", 10), q("b", 10)], clock=clock, splay_percent=0)
    for x in s.due(0):
        s.mark_run(x.name, 0)
    clock.now = 5
    s.set_queries([q("a", 10), q("b", 20), q("c", 10)])
    assert [x.name for x in s.due(5)] == ["b", "c"]  # b's interval changed: due now, c is new
    assert [x.name for x in s.due(10)] == ["a"]
    assert [x.name for x in s.queries] == ["a", "b", "c"]
