"""The daemon's watchdog: its own RSS and CPU against osquery's limits, and runaway queries.

osquery runs a separate watcher process; agentd watches itself from its event loop
(the query runs in a worker thread, so the loop keeps sampling).  Every
``interval`` seconds (3, as osquery) a :class:`Sample` is read from ``/proc/self/stat``
and ``/proc/self/statm`` and fed to :class:`ResourceWatch`, a pure decision machine:

* memory: RSS above ``memory_limit_mb`` -> exit (systemd restarts us);
* CPU: above ``utilization_limit`` percent of all cores for ``latency_limit`` seconds
  in a row -> if a scheduled query is running, it is the culprit: interrupt and
  denylist it; otherwise exit;
* nothing is enforced during the first ``delay`` seconds.

A query that passes its own time limit (``schedule_timeout``) is interrupted by the
database deadline and denylisted the same way (:func:`denylist_message`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tables.procfs import CLK_TCK, PAGE_SIZE, STAT_STIME, STAT_UTIME
from tables.procfs import parse_stat as _stat_fields

__all__ = [
    "DENYLIST_SECONDS",
    "EXIT_WATCHDOG",
    "ResourceWatch",
    "Sample",
    "Verdict",
    "WatchdogLimits",
    "denylist_message",
    "own_rss",
    "parse_stat",
    "parse_statm",
    "read_sample",
]

#: Exit status when the watchdog stops the daemon (EX_TEMPFAIL: "try again"; Restart=on-failure).
EXIT_WATCHDOG = 75
#: How long a query that tripped the watchdog stays denylisted (osquery: one day).
DENYLIST_SECONDS = 86_400


#: osquery's watchdog profiles by --watchdog_level: (memory MB, CPU %, latency s).
_LEVELS = {0: (200.0, 10.0, 12.0), 1: (100.0, 5.0, 6.0), -1: (10_000.0, 100.0, 0.0)}


@dataclass(frozen=True, slots=True)
class WatchdogLimits:
    """Limits and cadence; the defaults are osquery's ``--watchdog_level=0``."""

    memory_limit_mb: float = 200.0
    utilization_limit: float = 10.0  # percent of all cores' time
    latency_limit: float = 12.0  # seconds the CPU may stay over the limit
    delay: float = 60.0  # seconds after start before anything is enforced
    interval: float = 3.0  # seconds between samples
    cores: int = os.cpu_count() or 1
    enabled: bool = True

    @classmethod
    def from_options(cls, options: Any) -> WatchdogLimits:
        """Limits from the config's options (attributes or a mapping), osquery's flag names."""

        def get(name: str, default: Any) -> Any:
            if isinstance(options, Mapping):
                value = options.get(name, default)
            else:
                value = getattr(options, name, default)
            return default if value is None else value

        level = int(get("watchdog_level", 0))
        memory, cpu, latency = _LEVELS.get(level, _LEVELS[0])
        memory = float(get("watchdog_memory_limit", memory))
        cpu = float(get("watchdog_utilization_limit", cpu))
        latency = float(get("watchdog_latency_limit", latency))
        enabled = level != -1 and not _truthy(get("disable_watchdog", False))
        return cls(
            memory_limit_mb=memory,
            utilization_limit=cpu,
            latency_limit=latency,
            delay=float(get("watchdog_delay", 60)),
            enabled=enabled,
        )


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of our own process: monotonic time, CPU seconds (user+system), RSS bytes."""

    time: float
    cpu: float
    rss: int


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the watchdog decided: ``exit`` the daemon, or ``interrupt`` the running query."""

    action: str  # "exit" | "interrupt"
    reason: str


def parse_stat(text: bytes) -> tuple[int, int]:
    """(utime, stime) clock ticks from /proc/<pid>/stat text."""
    _, fields = _stat_fields(text)
    return int(fields[STAT_UTIME]), int(fields[STAT_STIME])


def parse_statm(text: bytes, page_size: int = PAGE_SIZE) -> int:
    """Resident set size in bytes from /proc/<pid>/statm text."""
    return int(text.split()[1]) * page_size


def own_rss() -> int:
    """This process's resident set size in bytes (0 when /proc cannot say)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return parse_statm(f.read())
    except (OSError, ValueError, IndexError):
        return 0


def read_sample(proc: str = "/proc", pid: int | str = "self") -> Sample:
    """A :class:`Sample` of ``pid`` (our own process by default)."""
    with open(f"{proc}/{pid}/stat", "rb") as f:
        utime, stime = parse_stat(f.read())
    with open(f"{proc}/{pid}/statm", "rb") as f:
        rss = parse_statm(f.read())
    return Sample(time=time.monotonic(), cpu=(utime + stime) / CLK_TCK, rss=rss)


class ResourceWatch:
    """Feeds on samples, answers with a :class:`Verdict` once a limit is broken."""

    def __init__(self, limits: WatchdogLimits, started: float) -> None:
        self.limits = limits
        self.started = started
        self.previous: Sample | None = None
        self.over_since: float | None = None  # time of the first sample over the CPU limit
        self.last_utilization = 0.0  # percent of all cores, over the last interval

    def feed(self, sample: Sample, *, query_running: bool = False) -> Verdict | None:
        """Judge one sample; ``query_running`` says whether a scheduled query owns the CPU."""
        previous, self.previous = self.previous, sample
        if previous is not None and sample.time > previous.time:
            spent = max(0.0, sample.cpu - previous.cpu)
            self.last_utilization = 100.0 * spent / ((sample.time - previous.time) * self.limits.cores)
        if not self.limits.enabled or sample.time - self.started < self.limits.delay:
            self.over_since = None
            return None
        limit_bytes = self.limits.memory_limit_mb * 1024 * 1024
        if sample.rss > limit_bytes:
            return Verdict(
                "exit",
                f"Memory limits exceeded: {sample.rss / 1048576:.1f} MB resident "
                f"(limit {self.limits.memory_limit_mb:g} MB)",
            )
        if previous is None:
            return None
        if self.last_utilization <= self.limits.utilization_limit:
            self.over_since = None
            return None
        if self.over_since is None:
            self.over_since = previous.time
        sustained = sample.time - self.over_since
        if sustained < self.limits.latency_limit:
            return None
        self.over_since = None
        reason = (
            f"Maximum sustainable CPU utilization limit exceeded: {self.last_utilization:.1f}% of "
            f"{self.limits.cores} core(s) for {sustained:.0f} s (limit {self.limits.utilization_limit:g}% "
            f"for {self.limits.latency_limit:g} s)"
        )
        return Verdict("interrupt" if query_running else "exit", reason)


def denylist_message(name: str, reason: str, until: float | None) -> str:
    """The log line for a query the watchdog stopped (``until`` None: ``denylist: false``)."""
    if until is None:
        return f"query {name} {reason}; not denylisted (denylist: false)"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(until))
    return f"query {name} {reason}; denylisted until {stamp}"
