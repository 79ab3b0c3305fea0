"""Watchdog decisions from synthetic samples, /proc parsers on canned text, a real self-sample."""

from __future__ import annotations

import os

from agent.watchdog import (
    ResourceWatch,
    Sample,
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
