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

:class:`Watchdog` is the daemon's part that samples and acts: it interrupts the running
query, or asks the agent to stop with :data:`EXIT_WATCHDOG`, through callables the
daemon hands it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tables.procfs import CLK_TCK, PAGE_SIZE, STAT_STIME, STAT_UTIME
from tables.procfs import parse_stat as _stat_fields

from .lifecycle import BackgroundTask
from .status import Activity

__all__ = [
    "DENYLIST_SECONDS",
    "EXIT_WATCHDOG",
    "ResourceWatch",
    "Sample",
    "Verdict",
    "Watchdog",
    "WatchdogAction",
    "WatchdogLimits",
    "denylist_message",
    "own_rss",
    "parse_stat",
    "parse_statm",
    "read_sample",
]

log = logging.getLogger("agentd")

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


class WatchdogAction(enum.Enum):
    """What the watchdog does about a broken limit."""

    EXIT = "exit"  # the daemon exits with EXIT_WATCHDOG (systemd restarts it)
    INTERRUPT = "interrupt"  # the running scheduled query is interrupted and denylisted


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the watchdog decided, and the limit that was broken (the log line's text)."""

    action: WatchdogAction
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
                WatchdogAction.EXIT,
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
        return Verdict(WatchdogAction.INTERRUPT if query_running else WatchdogAction.EXIT, reason)


def denylist_message(name: str, reason: str, until: float | None, exempt: str = "denylist: false") -> str:
    """The log line for a query the watchdog stopped (``until`` None: not denylisted, because ``exempt``)."""
    if until is None:
        return f"query {name} {reason}; not denylisted ({exempt})"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(until))
    return f"query {name} {reason}; denylisted until {stamp}"


class Watchdog(BackgroundTask):
    """Samples our own CPU and RSS every ``limits.interval`` seconds and acts on the verdict.

    ``interrupt(reason)`` interrupts the running query (False when none ran),
    ``deny(name, reason)`` denylists a query, ``request_stop(reason, status)`` ends the daemon.
    """

    def __init__(
        self,
        limits: WatchdogLimits,
        activity: Activity,
        *,
        interrupt: Callable[[str], bool],
        deny: Callable[[str, str], Any],
        request_stop: Callable[[str, int], None],
        on_failure: Callable[[str, BaseException], None],
        sample: Callable[[], Sample] = read_sample,
    ) -> None:
        super().__init__("watchdog", on_failure)
        self.limits = limits
        self.activity = activity
        self._interrupt = interrupt
        self._deny = deny
        self._request_stop = request_stop
        self._sample = sample

    async def run(self) -> None:
        watch = ResourceWatch(self.limits, started=time.monotonic())
        while True:
            await asyncio.sleep(self.limits.interval)
            try:
                sample = self._sample()
            except (OSError, ValueError) as exc:
                log.warning("watchdog: cannot read /proc/self: %s", exc)
                continue
            running = self.activity.running
            verdict = watch.feed(sample, query_running=running is not None)
            self.activity.cpu_percent = watch.last_utilization
            self.activity.rss = sample.rss
            if verdict is None:
                continue
            if verdict.action is WatchdogAction.INTERRUPT and running is not None:
                log.warning("watchdog: %s while query %s ran; interrupting it", verdict.reason, running)
                self._interrupt(f"exceeded the CPU limit ({verdict.reason}) and was interrupted")
                continue
            if running is not None:
                self._deny(running, f"was running when the watchdog stopped agentd: {verdict.reason}")
            log.error("watchdog: %s; agentd exits with status %d so systemd restarts it", verdict.reason, EXIT_WATCHDOG)
            self._request_stop("watchdog", EXIT_WATCHDOG)
            return
