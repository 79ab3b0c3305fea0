"""The last-resort process source: poll /proc for new pids.

Every ``interval`` seconds the source lists /proc and emits a process_events row for
each process it has not seen before (a pid with a new start time), read from /proc
right then; a process reported at one poll is checked again at the next, so a
fork followed by an exec gives a second row for the new image.  This MISSES processes
that start and exit between two polls — most short-lived commands — and cannot tell a
fork from an exec; use it only when neither kernel audit nor the proc connector is
available.  Processes running when the source starts are the baseline and give no rows.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from tables.procfs import boot_time, executable

from .base import EventSource, Sink, SourceMode, SourceStatus
from .procinfo import ProcessGone, executable_columns, parse_stat_times, snapshot

__all__ = ["ProcPollSource"]

log = logging.getLogger(__name__)

_CLK_TCK = os.sysconf("SC_CLK_TCK")


class ProcPollSource(EventSource):
    """process_events rows for processes found new in /proc at each poll."""

    name = "proc_poll"

    def __init__(self, sink: Sink, *, interval: float = 0.1, proc_root: str = "/proc") -> None:
        super().__init__(sink)
        if interval <= 0:
            raise ValueError(f"proc_poll: interval must be positive, not {interval}")
        self.interval = interval
        self.proc_root = proc_root
        self._known: dict[int, int] = {}  # pid -> start time (clock ticks since boot)
        self._recheck: dict[int, str | None] = {}  # pid reported at the last poll -> its exe then
        self._boot_time: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._mode = SourceMode.INACTIVE
        self._detail = "not started"
        self.rows = 0
        self.polls = 0
        self.vanished = 0
        self.errors = 0

    async def start(self) -> None:
        if self._task is not None:
            return
        self._boot_time = boot_time(self.proc_root)
        self._known = dict(self._scan())  # the baseline: no rows for what already runs
        self._task = asyncio.create_task(self._run(), name="proc_poll")
        self._mode = SourceMode.ACTIVE
        self._detail = (
            f"polling {self.proc_root} every {self.interval * 1000:.0f} ms; processes that live shorter than "
            "that are missed"
        )
        log.info("proc_poll: %s", self._detail)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        self._mode = SourceMode.STOPPED
        self._detail = "stopped"

    def status(self) -> SourceStatus:
        return SourceStatus(
            name=self.name,
            mode=self._mode,
            tables=("process_events",),
            events_seen=self.rows,
            parse_errors=self.errors,
            detail=self._detail,
            extra={"polls": self.polls, "vanished_before_read": self.vanished, "tracked": len(self._known)},
        )

    def poll_once(self) -> int:
        """One poll: emit rows for new processes, forget exited ones; returns rows emitted."""
        current = dict(self._scan())
        emitted = 0
        recheck, self._recheck = self._recheck, {}
        for pid, start in current.items():
            # Seen new at the previous poll: it may have exec'd since (fork, then exec).
            if self._known.get(pid) == start and (pid not in recheck or self._exe(pid) in (recheck[pid], None)):
                continue
            row = self._row(pid, start)
            if row is not None:
                self.rows += 1
                emitted += 1
                self._recheck[pid] = row.get("path")
                self.sink("process_events", row)
        self._known = current
        self.polls += 1
        return emitted

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.poll_once()
            except OSError as exc:  # /proc itself unreadable: keep trying, say so
                self.errors += 1
                self._detail = f"polling {self.proc_root} failed: {exc}"
                log.warning("proc_poll: %s", self._detail)

    def _scan(self) -> list[tuple[int, int]]:
        found = []
        for name in os.listdir(self.proc_root):
            if not name.isdigit():
                continue
            try:
                with open(f"{self.proc_root}/{name}/stat", "rb") as f:
                    _ppid, start = parse_stat_times(f.read())
            except (FileNotFoundError, ProcessLookupError):
                continue  # exited while we listed
            except (ValueError, IndexError):
                self.errors += 1
                continue
            found.append((int(name), start))
        return found

    def _exe(self, pid: int) -> str | None:
        """The executable as rows show it (tables.procfs.executable: no " (deleted)" suffix)."""
        return executable(f"{self.proc_root}/{pid}/")[0] or None

    def _row(self, pid: int, start: int) -> dict[str, Any] | None:
        try:
            row = snapshot(pid, self.proc_root)
        except ProcessGone:
            self.vanished += 1
            return None
        row.update(executable_columns(row.get("path")))
        started = start / _CLK_TCK
        row["syscall"] = "execve"
        row["status"] = 0
        row["uptime"] = int(started)
        row["time"] = int(self._boot_time + started) if self._boot_time else int(time.time())
        return row
