"""``agent-cli watch TABLE``: print rows of an event table as they arrive, like ``tail -f``.

    agent-cli watch process_events                 # this process runs the sources (root)
    agent-cli watch hardware_events --json --duration 60
    agent-cli --connect /var/lib/agentd/agentd.sock watch socket_events   # inside a running agentd
    agent-cli watch process_events --audit-log /var/log/audit/audit.log  # replay a log, then exit

Without ``--connect`` the event sources run in this process (the same choice as
agentd: audit, then the proc connector, then /proc polling; ``--source`` picks one).
With ``--connect`` it asks the daemon every second for rows newer than the last one
it printed.  With ``--audit-log`` nothing touches the kernel: auditd's text log is
parsed and the rows it makes are printed, then a summary goes to stderr.
Ends after ``--duration`` seconds, ``--count`` rows, or on Ctrl-C (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from tables.registry import all_specs
from tables.spec import TableSpec
from tables.text import to_sql

from .events import PROCESS_SOURCES, EventManager, EventOptions
from .output import escape_controls

__all__ = ["RowPrinter", "add_parser", "run"]

#: Columns the text view shows by default (the JSON view has every visible column).
DEFAULT_COLUMNS = {
    "process_events": ("time", "pid", "parent", "uid", "syscall", "path", "cmdline"),
    "socket_events": (
        "time",
        "action",
        "pid",
        "path",
        "family",
        "local_address",
        "local_port",
        "remote_address",
        "remote_port",
        "status",
    ),
    "hardware_events": ("time", "action", "type", "vendor_id", "model_id", "vendor", "model", "serial", "path"),
}
#: Tables that an audit log replay yields.
REPLAY_TABLES = ("process_events", "socket_events")
REMOTE_POLL_INTERVAL = 1.0  # s
_WIDTHS = {
    "time": 8,
    "pid": 7,
    "parent": 7,
    "uid": 5,
    "syscall": 7,
    "action": 7,
    "family": 6,
    "local_port": 10,
    "remote_port": 11,
    "vendor_id": 9,
    "model_id": 8,
}


class WatchError(Exception):
    """What the user asked for cannot be watched (printed as ``Error: ...``)."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``watch`` command to agent-cli's subparsers."""
    p = subparsers.add_parser("watch", help="print rows of an event table as they arrive (like tail -f)")
    p.add_argument("table", help="an event table, e.g. process_events, socket_events, hardware_events")
    p.add_argument("--json", action="store_true", help="one JSON object per row and line")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this many seconds")
    p.add_argument("--audit-log", metavar="FILE", help="replay auditd's text log FILE instead of the kernel")
    p.add_argument("--count", type=int, metavar="N", help="stop after N rows")
    p.add_argument("--columns", metavar="A,B,...", help="columns of the text view (default: a readable few)")
    p.add_argument(
        "--source",
        choices=("auto", *PROCESS_SOURCES),
        default="auto",
        help="process event source when the sources run in this process (default: auto)",
    )
    p.set_defaults(func=run)
    return p


class RowPrinter:
    """Prints rows one line each: a header then aligned columns, or JSON lines."""

    def __init__(
        self,
        spec: TableSpec,
        *,
        as_json: bool,
        columns: Sequence[str] | None = None,
        out: TextIO | None = None,
        limit: int | None = None,
    ) -> None:
        self.spec = spec
        self.as_json = as_json
        visible = [c.name for c in spec.columns if not c.hidden]
        self.columns = (
            list(columns) if columns else (visible if as_json else list(DEFAULT_COLUMNS.get(spec.name, visible)))
        )
        unknown = [c for c in self.columns if c not in spec.column_names]
        if unknown:
            raise WatchError(f"{spec.name} has no column {', '.join(unknown)}")
        self.out = out or sys.stdout
        self.rows = 0
        self.limit = limit
        self._header_done = False

    @property
    def done(self) -> bool:
        """True once ``limit`` rows were printed."""
        return self.limit is not None and self.rows >= self.limit

    def print(self, row: Mapping[str, Any]) -> None:
        if self.as_json:
            obj = {c: _json_value(row.get(c)) for c in self.columns}
            self.out.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
        else:
            if not self._header_done:
                self.out.write(self._line({c: c for c in self.columns}) + "\n")
                self._header_done = True
            self.out.write(self._line({c: _text(c, row.get(c)) for c in self.columns}) + "\n")
        self.out.flush()
        self.rows += 1

    def _line(self, cells: Mapping[str, str]) -> str:
        parts = []
        last = len(self.columns) - 1
        for i, c in enumerate(self.columns):
            text = cells[c]
            parts.append(text if i == last else text.ljust(max(_WIDTHS.get(c, 12), len(c))))
        return " ".join(parts).rstrip()


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return to_sql(value)  # bytes that are not UTF-8 as \xHH, as a query over the table shows them
    return value


def _text(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if column == "time" and isinstance(value, int):
        return time.strftime("%H:%M:%S", time.localtime(value))
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    # to_sql: bytes that are not UTF-8 as \xHH (as SQL shows them); escape_controls: a process may put
    # terminal escapes in its command line
    return escape_controls(to_sql(value) if isinstance(value, str) else str(value))


def _event_spec(name: str) -> TableSpec:
    specs = {s.name: s for s in all_specs() if s.event}
    spec = specs.get(name)
    if spec is None:
        known = ", ".join(sorted(specs)) or "none"
        raise WatchError(f"no event table named {name!r} (event tables: {known})")
    return spec


def run(args: argparse.Namespace) -> int:
    """The ``watch`` command; returns the exit status (errors print ``Error: ...``, exit 1)."""
    try:
        spec = _event_spec(args.table)
        if args.duration is not None and args.duration < 0:
            raise WatchError(f"--duration must be 0 or more seconds, not {args.duration:g}")
        columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
        if args.count is not None and args.count < 1:
            raise WatchError(f"--count must be at least 1, not {args.count}")
        printer = RowPrinter(spec, as_json=args.json, columns=columns, limit=args.count)
        if args.audit_log:
            return _replay(args.audit_log, spec, printer)
        if getattr(args, "connect", None):
            return _watch_remote(args.connect, spec, printer, args.duration)
        return asyncio.run(_watch_local(spec, printer, args.duration, args.source))
    except WatchError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


# -- an audit log -----------------------------------------------------------------------------


def _replay(path: str, spec: TableSpec, printer: RowPrinter) -> int:
    if spec.name not in REPLAY_TABLES:
        raise WatchError(f"--audit-log yields {' and '.join(REPLAY_TABLES)} rows, not {spec.name}")
    from eventsources.audit.logfile import LogInput, ReplayError, ReplayStats, replay

    stats = ReplayStats()
    name = "standard input" if path == "-" else path
    try:
        log = LogInput(path)
    except ReplayError as exc:
        raise WatchError(str(exc)) from exc
    except OSError as exc:
        raise WatchError(f"cannot read the audit log {name}: {exc.strerror or exc}") from exc
    with log:
        try:
            for table, row in replay(log, stats, socket_events=spec.name == "socket_events"):
                if table == spec.name:
                    printer.print(row)  # BrokenPipeError (``| head``) ends agent-cli quietly
                    if printer.done:
                        break
        except ReplayError as exc:
            raise WatchError(f"{name}: {exc}") from exc
    _print_replay_summary(
        log.name if log.compression is None else f"{log.name} ({log.compression})", stats, printer.rows, spec.name
    )
    if log.error is not None:
        raise WatchError(f"{name}: reading stopped after line {stats.lines}: {log.error}")
    return 0


def _print_replay_summary(name: str, stats: Any, shown: int, table: str) -> None:
    err = sys.stderr
    err.write(
        f"{name}: {stats.lines} lines read, {stats.records} audit records, {stats.events} events, "
        f"{stats.rows} rows ({shown} {table}), {stats.malformed} malformed\n"
    )
    for lineno, why in stats.examples:
        where = f"line {lineno}" if lineno is not None else "input"
        err.write(f"  malformed {where}: {escape_controls(why)}\n")
    if stats.malformed > len(stats.examples):
        err.write(f"  ... and {stats.malformed - len(stats.examples)} more\n")
    if stats.skipped:
        parts = []
        for why, count in sorted(stats.skipped.items(), key=lambda kv: -kv[1]):
            detail = stats.skipped_detail.get(why)
            if detail:
                top = sorted(detail.items(), key=lambda kv: -kv[1])
                named = ", ".join(f"{d}: {n}" for d, n in top[:5]) + (", ..." if len(top) > 5 else "")
                parts.append(f"{count} {why} ({escape_controls(named)})")
            else:
                parts.append(f"{count} {why}")
        err.write(f"  events without a row: {'; '.join(parts)}\n")
    if stats.other_lines:
        named = ", ".join(f"{kind} {n}" for kind, n in sorted(stats.other_lines.items()))
        err.write(f"  lines that are no record: {sum(stats.other_lines.values())} ({named})\n")
    if stats.other_types:
        top = sorted(stats.other_types.items(), key=lambda kv: -kv[1])
        named = ", ".join(f"{t} {n}" for t, n in top[:8]) + (", ..." if len(top) > 8 else "")
        total = sum(stats.other_types.values())
        err.write(f"  records of other types (no rows are built from them): {total} ({escape_controls(named)})\n")


# -- sources in this process ------------------------------------------------------------------


async def _watch_local(spec: TableSpec, printer: RowPrinter, duration: float | None, source: str) -> int:
    table = spec.name
    options = EventOptions(
        events_max=1000,  # rows are printed as they come; the buffer only backs the status counters
        process_events_source=source,
        audit_allow_sockets=table == "socket_events",
        disable_process_events=table not in ("process_events", "socket_events"),
        disable_hardware_events=table != "hardware_events",
    )
    manager = EventManager(options)
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    manager.add_listener(lambda t, row: queue.put_nowait(row) if t == table else None)
    await manager.start()
    try:
        feeding = next(r for r in manager.status() if r["kind"] == "table" and r["name"] == table)
        if not feeding["active"]:
            raise WatchError(f"{table}: {feeding['detail'] or 'no event source available'}")
        print(f"watching {table} from {feeding['tables']} (Ctrl-C to stop)", file=sys.stderr)
        deadline = None if duration is None else time.monotonic() + duration
        while True:
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                break
            try:
                row = await asyncio.wait_for(queue.get(), timeout)
            except TimeoutError:
                break
            printer.print(row)
            if printer.done:
                break
    finally:
        await manager.stop()  # delivers what the kernel had already queued
    while not queue.empty() and not printer.done:
        printer.print(queue.get_nowait())
    loss = manager.loss_summary()
    if loss:
        print(loss, file=sys.stderr)
    return 0


# -- inside a running agentd ------------------------------------------------------------------


def _watch_remote(socket_path: str, spec: TableSpec, printer: RowPrinter, duration: float | None) -> int:
    from .control import ControlError, remote_query

    table = spec.name
    try:
        _, rows = remote_query(socket_path, f"SELECT max(CAST(eid AS INTEGER)) FROM {table}")
        last = int(rows[0][0] or 0) if rows else 0
        print(f"watching {table} in the agentd at {socket_path} (Ctrl-C to stop)", file=sys.stderr)
        deadline = None if duration is None else time.monotonic() + duration
        while True:
            columns, rows = remote_query(
                socket_path,
                f"SELECT *, CAST(eid AS INTEGER) AS _eid FROM {table} WHERE CAST(eid AS INTEGER) > {last} "
                "ORDER BY _eid",
            )
            for values in rows:
                row = dict(zip(columns, values, strict=False))
                last = max(last, int(row.pop("_eid")))
                printer.print(row)
                if printer.done:
                    return 0
            if deadline is not None and time.monotonic() >= deadline:
                break  # the last poll ran after the deadline: nothing added before it is missed
            wait = REMOTE_POLL_INTERVAL if deadline is None else min(REMOTE_POLL_INTERVAL, deadline - time.monotonic())
            time.sleep(max(0.0, wait))
    except ControlError as exc:
        raise WatchError(str(exc)) from exc
    return 0
