"""The daemon's watchdog: its own RSS and CPU against osquery's limits, and runaway queries.

osquery runs a separate watcher process; agentd watches itself from its event loop
(the query runs in a worker thread, so the loop keeps sampling).  Every
``interval`` seconds (3, as osquery) a :class:`Sample` is read from ``/proc/self/stat``
and ``/proc/self/statm`` and fed to :class:`ResourceWatch`, a pure decision machine:

* memory: RSS above ``memory_limit_mb`` -> exit (systemd restarts us);
* CPU: above ``utilization_limit`` percent of all cores for ``latency_limit`` seconds
  in a row -> the CPU of that window is split into the event sources' own (reading
  events and making rows, which they measure), the other threads' (the query thread)
  and the rest (the event loop's other work), and the part that put agentd over is
  dealt with, in this order:

  1. a scheduled query whose thread alone used more than the limit is interrupted
     and denylisted (osquery's rule);
  2. when reading events uses more than the limit leaves it (the limit, less a tenth
     of headroom, less the rest), the event sources get a CPU budget of that share and
     keep to it by doing less, counted (:mod:`eventsources.budget`): rows without the
     /proc reads first, then events dropped unread.  Sources that keep to their budget
     (within a tolerance) while agentd is still over get a tenth less, when that alone
     brings it back under.  The budget is lifted once ``release_after`` seconds pass
     without anything shed;
  3. otherwise a running scheduled query is interrupted (and denylisted);
  4. otherwise, or when the sources could not keep to the budget they had, agentd
     exits: neither interrupting nor shedding can bring it back under the limit;
* nothing is enforced during the first ``delay`` seconds.

So agentd is not restarted (losing every buffered event, and under systemd in a loop)
for the load it is there to record: osquery's watchdog kills its worker in that case
(osquery issue #5234).

A query that passes its own time limit (``schedule_timeout``) is interrupted by the
database deadline and denylisted the same way (:func:`denylist_message`).

:class:`Watchdog` is the daemon's part that samples and acts: it interrupts the running
query, or asks the agent to stop with :data:`EXIT_WATCHDOG`, through callables the
daemon hands it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from eventsources.budget import OVERSPEND
from tables.procfs import CLK_TCK, PAGE_SIZE, STAT_STIME, STAT_UTIME
from tables.procfs import parse_stat as _stat_fields

from .lifecycle import BackgroundTask
from .status import Activity

__all__ = [
    "DENYLIST_SECONDS",
    "EXIT_WATCHDOG",
    "CpuSplit",
    "EventLoad",
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


#: The share of the CPU limit the watchdog aims for when it sets the event sources' budget.
TARGET = 0.9
#: A source may overspend its budget by this factor (plus half a percent, plus the burst its bucket allows:
#: eventsources.budget.OVERSPEND) over a window and still be keeping to it.
TOLERANCE = 1.25

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
    release_after: float = 60.0  # seconds without anything shed before the event sources' budget is lifted
    min_budget: float = 0.02  # CPU s/s (of one core): a smaller share for the event sources is no way out

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
    """One reading of our own process: monotonic time, CPU seconds (user+system), RSS bytes.

    ``loop_cpu``: CPU seconds of the event loop's thread (None: not measured; all CPU then
    counts as the loop's); ``ingest_cpu``: of those, what the event sources spent reading
    events; ``degraded``: events the sources have shed or made lean so far.
    """

    time: float
    cpu: float
    rss: int
    loop_cpu: float | None = None
    ingest_cpu: float = 0.0
    degraded: int = 0


class WatchdogAction(enum.Enum):
    """What the watchdog does about a broken limit."""

    EXIT = "exit"  # the daemon exits with EXIT_WATCHDOG (systemd restarts it)
    INTERRUPT = "interrupt"  # the running scheduled query is interrupted and denylisted
    SHED = "shed"  # the event sources keep within a CPU budget (Verdict.budget)
    RELEASE = "release"  # the event sources' budget is lifted


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the watchdog decided, and why (the log line's text).

    ``budget`` (SHED): the CPU the event sources may use, in CPU seconds a second (a
    fraction of one core).
    """

    action: WatchdogAction
    reason: str
    budget: float | None = None


@dataclass(frozen=True, slots=True)
class CpuSplit:
    """Where the CPU of a window went, in percent of all cores."""

    total: float
    events: float  # the event sources reading events and making rows
    threads: float  # threads other than the event loop's: the scheduled query's
    rest: float  # the event loop's other work

    def __str__(self) -> str:
        return (
            f"reading events {self.events:.1f}%, queries (other threads) {self.threads:.1f}%, the rest {self.rest:.1f}%"
        )


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
    """A :class:`Sample` of ``pid`` (our own process by default; ``loop_cpu`` is the calling thread's)."""
    with open(f"{proc}/{pid}/stat", "rb") as f:
        utime, stime = parse_stat(f.read())
    with open(f"{proc}/{pid}/statm", "rb") as f:
        rss = parse_statm(f.read())
    return Sample(time=time.monotonic(), cpu=(utime + stime) / CLK_TCK, rss=rss, loop_cpu=time.thread_time())


class ResourceWatch:
    """Feeds on samples, answers with a :class:`Verdict` once a limit is broken (or a budget may be lifted)."""

    def __init__(self, limits: WatchdogLimits, started: float) -> None:
        self.limits = limits
        self.started = started
        self.previous: Sample | None = None
        self.over_since: float | None = None  # time of the first sample over the CPU limit
        self.last_utilization = 0.0  # percent of all cores, over the last interval
        self.budget: float | None = None  # the event sources' CPU budget, percent of all cores (None: none)
        self._window: Sample | None = None  # the sample the current window over the limit began with
        self._degraded = 0  # the sources' degraded count ...
        self._degraded_at = started  # ... and when it last grew (or the budget was set)

    def feed(self, sample: Sample, *, query_running: bool = False) -> Verdict | None:
        """Judge one sample; ``query_running`` says whether a scheduled query is running now."""
        previous, self.previous = self.previous, sample
        if previous is not None and sample.time > previous.time:
            spent = max(0.0, sample.cpu - previous.cpu)
            self.last_utilization = 100.0 * spent / ((sample.time - previous.time) * self.limits.cores)
        if sample.degraded > self._degraded:
            self._degraded, self._degraded_at = sample.degraded, sample.time
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
            if self.budget is not None and sample.time - self._degraded_at >= self.limits.release_after:
                self.budget = None
                return Verdict(
                    WatchdogAction.RELEASE,
                    f"nothing shed for {self.limits.release_after:g} s: the event sources' CPU budget is lifted",
                )
            return None
        if self.over_since is None:
            self.over_since, self._window = previous.time, previous
        sustained = sample.time - self.over_since
        if sustained < self.limits.latency_limit:
            return None
        self.over_since = None
        assert self._window is not None
        return self._judge(self._window, sample, sustained, query_running)

    def split(self, first: Sample, last: Sample) -> CpuSplit:
        """Where the CPU between two samples went."""
        scale = 100.0 / (max(last.time - first.time, 1e-9) * self.limits.cores)
        total = max(0.0, last.cpu - first.cpu) * scale
        threads = 0.0
        if first.loop_cpu is not None and last.loop_cpu is not None:
            threads = min(total, max(0.0, total - (last.loop_cpu - first.loop_cpu) * scale))
        events = min(total - threads, max(0.0, (last.ingest_cpu - first.ingest_cpu) * scale))
        return CpuSplit(total=total, events=events, threads=threads, rest=total - threads - events)

    def _judge(self, first: Sample, last: Sample, sustained: float, query_running: bool) -> Verdict:
        limits = self.limits
        cpu = self.split(first, last)
        reason = (
            f"Maximum sustainable CPU utilization limit exceeded: {cpu.total:.1f}% of {limits.cores} core(s) "
            f"for {sustained:.0f} s (limit {limits.utilization_limit:g}% for {limits.latency_limit:g} s; {cpu})"
        )
        target = limits.utilization_limit * TARGET
        if query_running and cpu.threads > target:
            return Verdict(WatchdogAction.INTERRUPT, reason)
        share = target - cpu.rest  # what reading events may use
        # kept to: what the budget allows over this window, with the burst a source may spend beyond it
        window = max(last.time - first.time, 1e-9)
        kept = self.budget is None or cpu.events <= self.budget * (1 + OVERSPEND / window) * TOLERANCE + 0.5
        if self.budget is not None and kept and not query_running:
            # kept to (within the tolerance), and over all the same: a tighter budget, if that alone brings
            # agentd back under the limit (a budget is never set again as it was: it would change nothing)
            share = min(share, self.budget * TARGET)
            helps = cpu.total - cpu.events + share <= limits.utilization_limit
        else:
            helps = self.budget is None or share < self.budget * TARGET
        budget = share * limits.cores / 100.0  # in CPU seconds a second
        if cpu.events > share and budget >= limits.min_budget and kept and helps:
            self.budget = share
            self._degraded_at = last.time  # the release clock starts now
            return Verdict(WatchdogAction.SHED, reason, budget=budget)
        if query_running:
            return Verdict(WatchdogAction.INTERRUPT, reason)
        if not kept:
            why = f"the event sources could not keep to their budget of {self.budget:.1f}%"
        elif self.budget is not None:
            why = f"the event sources keep to their budget of {self.budget:.1f}%; the rest is over"
        elif cpu.events > 0 and cpu.events > share:
            why = "the rest alone leaves reading events no room"
        else:
            why = "it is neither a query nor reading events"
        return Verdict(WatchdogAction.EXIT, f"{reason}: {why}")


def denylist_message(name: str, reason: str, until: float | None, exempt: str = "denylist: false") -> str:
    """The log line for a query the watchdog stopped (``until`` None: not denylisted, because ``exempt``)."""
    if until is None:
        return f"query {name} {reason}; not denylisted ({exempt})"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(until))
    return f"query {name} {reason}; denylisted until {stamp}"


class EventLoad(Protocol):
    """What the watchdog asks of the event sources (agentd's EventManager)."""

    def ingest_load(self) -> tuple[float, int]:
        """(CPU seconds spent reading events, events shed or made lean), both since start."""
        ...

    def set_cpu_budget(self, budget: float | None) -> None:
        """Keep reading events within ``budget`` CPU seconds a second (None: no budget)."""
        ...


class Watchdog(BackgroundTask):
    """Samples our own CPU and RSS every ``limits.interval`` seconds and acts on the verdict.

    ``interrupt(reason)`` interrupts the running query (False when none ran),
    ``deny(name, reason)`` denylists a query, ``request_stop(reason, status)`` ends the daemon,
    ``events`` measures and budgets the event sources (None: nothing to shed).
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
        events: EventLoad | None = None,
    ) -> None:
        super().__init__("watchdog", on_failure)
        self.limits = limits
        self.activity = activity
        self._interrupt = interrupt
        self._deny = deny
        self._request_stop = request_stop
        self._sample = sample
        self._events = events

    async def run(self) -> None:
        watch = ResourceWatch(self.limits, started=time.monotonic())
        while True:
            await asyncio.sleep(self.limits.interval)
            try:
                sample = self._sample()
            except (OSError, ValueError) as exc:
                log.warning("watchdog: cannot read /proc/self: %s", exc)
                continue
            if self._events is not None:
                ingest, degraded = self._events.ingest_load()
                sample = dataclasses.replace(sample, ingest_cpu=ingest, degraded=degraded)
            running = self.activity.running
            verdict = watch.feed(sample, query_running=running is not None)
            self.activity.cpu_percent = watch.last_utilization
            self.activity.rss = sample.rss
            if verdict is None:
                continue
            if verdict.action is WatchdogAction.SHED and self._events is not None:
                assert verdict.budget is not None
                log.warning(
                    "watchdog: %s; reading events now keeps within %.1f%% of one core: rows without the /proc "
                    "columns first, then events dropped unread, all counted (agent_events_status, agent-cli status)",
                    verdict.reason,
                    100 * verdict.budget,
                )
                self._events.set_cpu_budget(verdict.budget)
                self.activity.event_cpu_budget = verdict.budget
                continue
            if verdict.action is WatchdogAction.RELEASE and self._events is not None:
                log.info("watchdog: %s", verdict.reason)
                self._events.set_cpu_budget(None)
                self.activity.event_cpu_budget = None
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
