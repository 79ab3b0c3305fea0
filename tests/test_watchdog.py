"""Watchdog decisions from synthetic samples, /proc parsers on canned text, a real self-sample."""

from __future__ import annotations

import os

import pytest

from agent.watchdog import (
    ResourceWatch,
    Sample,
    Verdict,
    WatchdogAction,
    WatchdogLimits,
    denylist_message,
    parse_stat,
    parse_statm,
    read_sample,
)

MB = 1024 * 1024
LIMITS = WatchdogLimits(memory_limit_mb=200, utilization_limit=10, latency_limit=12, delay=60, interval=3, cores=2)


def feed_cpu(watch: ResourceWatch, start: float, seconds: int, cpu_per_tick: float, *, query: bool = False):
    """Feed one sample per 3 s; cpu grows by cpu_per_tick each step. Returns the verdicts."""
    verdicts = []
    cpu = 0.0
    t = start
    while t <= start + seconds:
        verdicts.append(watch.feed(Sample(time=t, cpu=cpu, rss=50 * MB), query_running=query))
        t += 3
        cpu += cpu_per_tick
    return verdicts


def test_idle_is_fine():
    watch = ResourceWatch(LIMITS, started=0)
    assert all(v is None for v in feed_cpu(watch, 100, 300, 0.01))
    assert watch.last_utilization < 1


def test_memory_over_limit_exits():
    watch = ResourceWatch(LIMITS, started=0)
    assert watch.feed(Sample(100, 0, 199 * MB)) is None
    verdict = watch.feed(Sample(103, 0, 201 * MB))
    assert verdict is not None and verdict.action is WatchdogAction.EXIT
    assert "Memory limits exceeded" in verdict.reason and "200 MB" in verdict.reason


def test_nothing_enforced_during_delay():
    watch = ResourceWatch(LIMITS, started=0)
    assert watch.feed(Sample(10, 0, 500 * MB)) is None
    assert all(v is None for v in feed_cpu(watch, 13, 40, 6.0))  # 100% of both cores until t=53


def test_sustained_cpu_exits_after_latency_limit():
    watch = ResourceWatch(LIMITS, started=0)
    # 1.2 s of CPU per 3 s on 2 cores = 20% > 10%
    verdicts = feed_cpu(watch, 100, 30, 1.2)
    fired = [i for i, v in enumerate(verdicts) if v is not None]
    assert fired, "sustained CPU must trip the watchdog"
    first = fired[0]
    assert first * 3 >= 12  # not before latency_limit seconds over the limit
    assert verdicts[first].action is WatchdogAction.EXIT
    assert "CPU utilization limit exceeded" in verdicts[first].reason


def test_short_burst_is_tolerated():
    watch = ResourceWatch(LIMITS, started=0)
    samples = [(100, 0.0), (103, 3.0), (106, 6.0), (109, 6.1), (112, 6.2), (115, 9.0), (118, 12.0), (121, 12.1)]
    assert all(watch.feed(Sample(t, c, MB)) is None for t, c in samples)


def test_cpu_with_a_query_running_interrupts_the_query():
    watch = ResourceWatch(LIMITS, started=0)
    verdicts = [v for v in feed_cpu(watch, 100, 30, 3.0, query=True) if v]
    assert verdicts and verdicts[0].action is WatchdogAction.INTERRUPT


def test_disabled_never_fires():
    limits = WatchdogLimits.from_options({"watchdog_level": -1})
    assert not limits.enabled
    watch = ResourceWatch(limits, started=0)
    assert watch.feed(Sample(100, 0, 20_000 * MB)) is None


def test_limits_from_options():
    default = WatchdogLimits.from_options({})
    assert (default.memory_limit_mb, default.utilization_limit, default.latency_limit, default.delay) == (
        200,
        10,
        12,
        60,
    )
    restrictive = WatchdogLimits.from_options({"watchdog_level": "1"})
    assert (restrictive.memory_limit_mb, restrictive.utilization_limit, restrictive.latency_limit) == (100, 5, 6)
    custom = WatchdogLimits.from_options(
        {"watchdog_memory_limit": 300, "watchdog_utilization_limit": "20", "watchdog_delay": 0}
    )
    assert (custom.memory_limit_mb, custom.utilization_limit, custom.delay) == (300, 20, 0)
    assert not WatchdogLimits.from_options({"disable_watchdog": "true"}).enabled
    assert WatchdogLimits.from_options({"watchdog_latency_limit": 0}).latency_limit == 0


def test_parse_stat_with_parentheses_in_name():
    text = b"4242 (evil) (name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 12345 1000 100\n"
    assert parse_stat(text) == (250, 75)


def test_parse_statm():
    assert parse_statm(b"5000 1200 300 10 0 900 0\n", page_size=4096) == 1200 * 4096


def test_read_sample_of_this_process():
    sample = read_sample()
    with open(f"/proc/{os.getpid()}/status") as f:
        rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    assert abs(sample.rss - rss_kb * 1024) < 16 * MB
    assert sample.cpu > 0


def test_denylist_message():
    assert denylist_message("q", "exceeded", 0).startswith("query q exceeded; denylisted until 1970-01-01 00:00:00")
    assert "not denylisted" in denylist_message("q", "exceeded", None)


# -- CPU over the limit: whose CPU it is decides what happens ---------------------------------------
class Host:
    """The counters samples are made of; :meth:`step` advances one interval at the given rates (CPU s/s)."""

    def __init__(self, t: float = 100.0) -> None:
        self.t, self.cpu, self.loop, self.ingest, self.degraded = t, 0.0, 0.0, 0.0, 0

    def step(self, *, events: float = 0.0, query: float = 0.0, rest: float = 0.01, degraded: int = 0) -> Sample:
        self.t += 3
        self.ingest += events * 3
        self.loop += (events + rest) * 3
        self.cpu += (events + rest + query) * 3
        self.degraded += degraded
        return Sample(self.t, self.cpu, 50 * MB, loop_cpu=self.loop, ingest_cpu=self.ingest, degraded=self.degraded)


def run(watch: ResourceWatch, host: Host, steps: int, *, running: bool = False, **rates) -> list:
    """Feed ``steps`` samples at these rates (``running``: a query runs); the verdicts, with the step of each."""
    return [(i, v) for i in range(steps) if (v := watch.feed(host.step(**rates), query_running=running))]


def until(watch: ResourceWatch, host: Host, *, running: bool = False, **rates) -> Verdict:
    """Feed samples at these rates until a verdict comes (at most 50)."""
    for _ in range(50):
        verdict = watch.feed(host.step(**rates), query_running=running)
        if verdict is not None:
            return verdict
    raise AssertionError(f"no verdict at {rates}")


def test_reading_events_over_the_limit_is_shed_not_an_exit() -> None:
    """1,600 execs/s on two cores: reading them takes 15 % of all cores; the limit is 10 %."""
    watch, host = ResourceWatch(LIMITS, started=0), Host()
    ((at, verdict),) = run(watch, host, 6, events=0.30, rest=0.02)
    assert verdict.action is WatchdogAction.SHED and at * 3 >= 12  # after latency_limit seconds over, not before
    assert verdict.budget == pytest.approx((9.0 - 1.0) * 2 / 100)  # 90 % of the limit, less the rest: 0.16 s/s
    assert "reading events 15.0%" in verdict.reason and "the rest 1.0%" in verdict.reason
    assert watch.budget == pytest.approx(8.0)
    # the sources keep to it (shedding as they go): nothing more happens however long it lasts
    assert run(watch, host, 100, events=0.16, rest=0.02, degraded=500) == []
    # the load goes: once nothing was shed for release_after (60 s) the budget is lifted
    ((at, verdict),) = run(watch, host, 30, events=0.02, rest=0.02)
    assert verdict.action is WatchdogAction.RELEASE and (at + 1) * 3 >= 60 and watch.budget is None
    # and set again when the load comes back
    assert [v.action for _, v in run(watch, host, 6, events=0.30, rest=0.02)] == [WatchdogAction.SHED]


def test_the_first_process_events_run_is_not_interrupted_for_the_events_it_reads() -> None:
    """Events at the limit, then the scheduled process_events query reads 50,000 of them (1.5 s of CPU)."""
    watch, host = ResourceWatch(LIMITS, started=0), Host()
    assert run(watch, host, 2, events=0.2, rest=0.02) == []
    verdicts = run(watch, host, 1, events=0.2, rest=0.02, query=0.5, running=True)
    verdicts += run(watch, host, 3, events=0.2, rest=0.02)
    assert [v.action for _, v in verdicts] == [WatchdogAction.SHED]


def test_a_query_over_the_limit_is_interrupted_even_with_events() -> None:
    watch, host = ResourceWatch(LIMITS, started=0), Host()
    verdicts = run(watch, host, 6, events=0.1, query=1.0, running=True)
    assert verdicts and verdicts[0][1].action is WatchdogAction.INTERRUPT
    assert watch.budget is None  # the events were not what put agentd over


def test_events_are_shed_first_then_a_query_that_still_keeps_agentd_over_is_interrupted() -> None:
    watch, host = ResourceWatch(LIMITS, started=0), Host()
    assert until(watch, host, events=0.30, query=0.16, running=True).action is WatchdogAction.SHED
    verdict = until(watch, host, events=0.16, query=0.16, degraded=100, running=True)
    assert verdict.action is WatchdogAction.INTERRUPT


def test_sources_that_cannot_keep_to_their_budget_end_in_an_exit() -> None:
    watch, host = ResourceWatch(LIMITS, started=0), Host()
    assert until(watch, host, events=0.30, rest=0.02).action is WatchdogAction.SHED
    verdict = until(watch, host, events=0.30, rest=0.02, degraded=10)  # shedding changed nothing
    assert verdict.action is WatchdogAction.EXIT
    assert "could not keep to their budget of 8.0%" in verdict.reason


def test_the_rest_over_the_limit_is_a_runaway() -> None:
    watch, host = ResourceWatch(LIMITS, started=0), Host()
    ((_, verdict),) = run(watch, host, 6, events=0.05, rest=0.4)
    assert verdict.action is WatchdogAction.EXIT and "leaves reading events no room" in verdict.reason
    watch, host = ResourceWatch(LIMITS, started=0), Host()
    ((_, verdict),) = run(watch, host, 6, rest=0.4)
    assert verdict.action is WatchdogAction.EXIT and "neither a query nor reading events" in verdict.reason


def test_the_budget_is_tightened_when_the_rest_grows_and_kept_otherwise() -> None:
    watch, host = ResourceWatch(LIMITS, started=0), Host()
    assert until(watch, host, events=0.30, rest=0.02).action is WatchdogAction.SHED
    assert watch.budget == pytest.approx(8.0)
    verdict = until(watch, host, events=0.16, rest=0.08, degraded=10)  # the rest at 4 %: over again
    assert verdict.action is WatchdogAction.SHED and verdict.budget == pytest.approx((9.0 - 4.0) * 2 / 100)
    # kept to, and over the limit all the same, with no query running: not the events, not a query
    verdict = until(watch, host, events=0.10, query=0.05, rest=0.07, degraded=10)
    assert verdict.action is WatchdogAction.EXIT and "keep to their budget of 5.0%" in verdict.reason


def test_a_budget_kept_within_its_tolerance_and_still_over_is_tightened_not_an_exit() -> None:
    """The sources overspend their 8 % a little (within the tolerance): agentd is just over, and 10 % less fixes it."""
    watch, host = ResourceWatch(LIMITS, started=0), Host()
    assert until(watch, host, events=0.30, rest=0.02).action is WatchdogAction.SHED
    verdict = until(watch, host, events=0.19, rest=0.02, degraded=10)  # 9.5 % + 1 %: over
    assert verdict.action is WatchdogAction.SHED and verdict.budget == pytest.approx(8.0 * 0.9 * 2 / 100)
    assert watch.budget == pytest.approx(7.2)
    assert run(watch, host, 30, events=0.144, rest=0.02, degraded=10) == []  # kept to: under the limit


def test_a_short_window_allows_the_burst_a_new_budget_starts_with() -> None:
    """latency_limit 1 s: a window of one 3 s interval, in which the sources may spend their bucket on top."""
    limits = WatchdogLimits(memory_limit_mb=200, utilization_limit=5, latency_limit=1, delay=0, interval=3, cores=2)
    watch, host = ResourceWatch(limits, started=0), Host()
    verdict = until(watch, host, events=0.18, rest=0.004)  # 9 % of both cores, the limit 5 %
    assert verdict.action is WatchdogAction.SHED and watch.budget == pytest.approx(4.3)
    # the next 3 s: 8.6 % + the bucket's burst (2 s of budget: 0.17 s) = 0.43 s, 7.2 %: kept to, tightened
    verdict = until(watch, host, events=0.144, rest=0.004, degraded=10)
    assert verdict.action is WatchdogAction.SHED and watch.budget == pytest.approx(4.3 * 0.9)
    # twice the budget and more is not keeping to it
    verdict = until(watch, host, events=0.2, rest=0.004, degraded=10)
    assert verdict.action is WatchdogAction.EXIT and "could not keep to their budget" in verdict.reason


def test_without_a_measure_of_the_loop_everything_counts_as_its_own() -> None:
    """Samples that do not split the CPU (other callers of ResourceWatch) judge as osquery does."""
    watch = ResourceWatch(LIMITS, started=0)
    cpu_split = watch.split(Sample(0, 0.0, MB), Sample(10, 4.0, MB))
    assert (cpu_split.total, cpu_split.events, cpu_split.threads, cpu_split.rest) == (20.0, 0.0, 0.0, 20.0)
