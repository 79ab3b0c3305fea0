"""collectord's own Zeek-format logs (no Zeek needed): osq-<name>.log per config subscription, and osquery.log.

A :class:`~collector.outbox.Sink` like the JSON-lines file: every result batch of a config
subscription that names a ``log`` becomes records of ``<log>.log`` (``t`` = when collectord
accepted the batch, ``host`` = the host id, ``added`` where removed rows are reported, then the
declared fields), as the Zeek package's table scripts write them in Zeek. Host comings and
goings, rows that cannot become the declared types and a host's dropped rows go to
osquery.log, as the package writes them.

Exactly once across crashes: after each chunk the files are fsynced and the cursor is
committed with every live file's inode and size. At start each live file is cut back to its
committed size (what a crash left after it is written again); files are opened (header
written) and rotated only right after a committed chunk, so a rotated file never holds rows
past the cursor. A live file that does not match the committed state is set aside under a
rotated name (never deleted), unless it holds no record.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.messages import Action, Mode

from ..model import CONFIG_OWNER, HostEvent, HostEventKind, LossReport, OutboxItem, ResultBatch
from ..outbox import SinkFeed
from ..zeek.columns import ColumnError
from ..zeek.values import Time
from ..zeek.ztypes import ZeekType, parse_type
from .writer import LogField, LogFormat, ZeekLogWriter, log_value, opened_stamp

__all__ = ["OSQUERY_LOG", "LogSubscription", "ZeekLogSink", "log_subscriptions"]

log = logging.getLogger("collectord.logs")

OSQUERY_LOG = "osquery"
_STRING = parse_type("string")
_OSQUERY_FIELDS = (
    LogField("ts", parse_type("time")),
    LogField("source", _STRING),
    LogField("peer", _STRING),
    LogField("level", _STRING),
    LogField("message", _STRING),
)


@dataclass(frozen=True, slots=True)
class LogSubscription:
    """A config subscription whose rows go to ``<log>.log``."""

    name: str  # the config subscription's name (ResultBatch.name of owner "config")
    log: str
    fields: tuple[LogField, ...] | None  # None: the result's columns, as strings
    added: bool  # an ``added`` field (the subscription reports removed rows)

    def prefix(self) -> tuple[LogField, ...]:
        """The fields before the columns: ``t``, ``host`` and (where removed rows come) ``added``."""
        first = (LogField("t", parse_type("time")), LogField("host", _STRING))
        return (*first, LogField("added", parse_type("bool"))) if self.added else first


Record = tuple[str, Sequence[object]]  # (log path, values)


def _spec(fields: Sequence[LogField]) -> list[str]:
    return [f"{f.name}:{f.type}" for f in fields]


def _holds_records(path: Path, fmt: LogFormat) -> bool:
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.strip() and not (fmt is LogFormat.ASCII and line.startswith(b"#")):
                    return True
    except OSError:
        return False
    return False


class ZeekLogSink:
    """Writes osq-*.log and osquery.log into ``directory`` (a :class:`~collector.outbox.Sink`)."""

    def __init__(
        self,
        directory: str | Path,
        subscriptions: Sequence[LogSubscription],
        *,
        fmt: LogFormat = LogFormat.ASCII,
        rotation: float = 3600.0,
        fsync: bool = True,
        name: str = "zeeklog",
        clock: Callable[[], float] = time.time,
        batch: int = 512,
    ) -> None:
        self.directory = Path(directory)
        self.subscriptions = {s.name: s for s in subscriptions}
        self.by_log = {s.log: s for s in subscriptions}
        self.format = fmt
        self.rotation = rotation
        self.fsync = fsync
        self.name = name
        self.clock = clock
        self.batch = batch
        self.writers: dict[str, ZeekLogWriter] = {}
        self.records_written = 0
        self.errors = 0

    # -- files and their state ----------------------------------------------------------------

    def _writer(self, path: str, fields: Sequence[LogField]) -> ZeekLogWriter:
        writer = self.writers.get(path)
        if writer is None:
            writer = self.writers[path] = ZeekLogWriter(
                self.directory, path, fields, fmt=self.format, rotation_interval=self.rotation, clock=self.clock
            )
        return writer

    def _state(self) -> str:
        files = {
            path: {"ino": w.inode(), "size": w.size(), "opened": w.opened, "fields": _spec(w.fields)}
            for path, w in self.writers.items()
            if w.is_open
        }
        return json.dumps({"files": files}, sort_keys=True)

    def _restore(self, state_text: str) -> None:
        """At start: resume the live files the committed state names; set the others aside."""
        self.directory.mkdir(parents=True, exist_ok=True)
        files: dict[str, Any] = json.loads(state_text).get("files", {}) if state_text else {}
        for path, entry in files.items():
            live = self.directory / f"{path}.log"
            try:
                ino = live.stat().st_ino
            except FileNotFoundError:
                continue
            if ino != entry.get("ino"):
                continue
            fields = tuple(LogField(*_field(spec)) for spec in entry["fields"])
            if fields != self._expected_fields(path, fields):
                continue  # the config changed what this log holds: the old file is set aside below
            writer = self._writer(path, fields)
            if writer.resume(int(entry["size"]), float(entry["opened"])):
                log.info("%s: continuing at its committed size (%d bytes)", live, entry["size"])
            else:
                self.writers.pop(path, None)
        ours = {OSQUERY_LOG, *self.by_log, *files}
        for path in sorted(ours):
            live = self.directory / f"{path}.log"
            if not live.exists() or (path in self.writers and self.writers[path].is_open):
                continue  # none, or resumed
            if not _holds_records(live, self.format):
                live.unlink()
                continue
            target = self.directory / f"{path}.{opened_stamp(live)}.log"
            n = 1
            while target.exists():
                target = self.directory / f"{path}.{opened_stamp(live)}-{n}.log"
                n += 1
            os.replace(live, target)
            log.warning("%s was not written by this collectord's last committed run: set aside as %s", live, target)

    def _expected_fields(self, path: str, found: tuple[LogField, ...]) -> tuple[LogField, ...] | None:
        """What ``path`` is to hold now (``found`` when the columns decide); None: nothing writes it any more."""
        if path == OSQUERY_LOG:
            return _OSQUERY_FIELDS
        sub = self.by_log.get(path)
        if sub is None:
            return None
        if sub.fields is None:
            prefix = sub.prefix()
            ok = found[: len(prefix)] == prefix and all(f.type == _STRING for f in found[len(prefix) :])
            return found if ok else None
        return (*sub.prefix(), *sub.fields)

    # -- records ---------------------------------------------------------------------------------

    def _records(self, items: Sequence[OutboxItem]) -> list[Record]:
        out: list[Record] = []
        for item in items:
            if isinstance(item, ResultBatch):
                sub = self.subscriptions.get(item.name) if item.owner == CONFIG_OWNER else None
                if sub is not None and item.rows:
                    self._result_records(item, sub, out)
            elif isinstance(item, HostEvent):
                if item.event is HostEventKind.CONNECTED:
                    text = f"host connected: {item.hostname} {list(item.addresses)} groups {list(item.groups)}"
                    out.append(self._osquery(item.time, "info", item.host_id, text))
                elif item.event in (HostEventKind.DISCONNECTED, HostEventKind.REVOKED):
                    out.append(self._osquery(item.time, "info", item.host_id, f"host {item.event.value}"))
            elif isinstance(item, LossReport):
                text = (
                    f"the host's queue dropped {item.rows} result rows ({item.batches} batches, sequences "
                    f"{item.from_seq}..{item.to_seq}) while it could not reach collectord"
                )
                out.append(self._osquery(item.received, "error", item.host_id, text))
        return out

    def _osquery(self, when: float, level: str, peer: str, message: str) -> Record:
        self._writer(OSQUERY_LOG, _OSQUERY_FIELDS)
        return OSQUERY_LOG, (Time.from_seconds(when), "host" if peer else "local", peer or None, level, message)

    def _result_records(self, item: ResultBatch, sub: LogSubscription, out: list[Record]) -> None:
        writer = self.writers.get(sub.log)
        if writer is None:
            declared = sub.fields if sub.fields is not None else tuple(LogField(c, _STRING) for c in item.columns)
            writer = self._writer(sub.log, (*sub.prefix(), *declared))
        fields = writer.fields[len(sub.prefix()) :]
        t = Time.from_seconds(item.received)
        if len(item.columns) != len(fields):
            declared_text = ", ".join(f"{f.name}:{f.type}" for f in fields)
            message = (
                f"{sub.log}: {len(item.rows)} row(s) not written: the query returns {len(item.columns)} column(s) "
                f"({', '.join(item.columns)}) but the log declares {len(fields)} ({declared_text})"
            )
            self.errors += len(item.rows)
            log.error("%s", message)
            out.append(self._osquery(item.received, "error", item.host_id, message))
            return
        for action, values in item.rows:
            row: list[object] = [t, item.host_id]
            if sub.added:
                row.append(action is not Action.REMOVED)
            try:
                for value, field in zip(values, fields, strict=True):
                    try:
                        row.append(log_value(value, field.type))
                    except ColumnError as exc:
                        raise ColumnError(f"column {field.name} value {value!r:.80}: {exc}") from None
            except ColumnError as exc:
                message = f"{sub.log}: a row of host {item.host_id} not written: {exc}"
                self.errors += 1
                if self.errors <= 10 or self.errors % 1000 == 0:
                    log.error("%s (%d such rows so far)", message, self.errors)
                out.append(self._osquery(item.received, "error", item.host_id, message))
                continue
            out.append((sub.log, row))

    # -- the loop ----------------------------------------------------------------------------------

    def _write(self, records: Sequence[Record], now: float) -> None:
        touched = set()
        for path, values in records:
            writer = self.writers[path]
            writer.write(values, now)
            touched.add(path)
        self.records_written += len(records)
        for path in touched:
            if self.fsync:
                self.writers[path].sync()
            else:
                self.writers[path].flush()

    def _open_and_rotate(self, paths: set[str], now: float) -> bool:
        """Rotate what is due, open the files ``paths`` need; True when a file was opened or rotated."""
        changed = False
        for writer in self.writers.values():
            if writer.rotation_due(now):
                writer.rotate(now)
                changed = True
        for path in paths:
            writer = self.writers[path]
            if not writer.is_open:
                writer.open(now)
                writer.sync()
                changed = True
        return changed

    async def run(self, feed: SinkFeed) -> None:
        cursor = await feed.cursor()
        await asyncio.to_thread(self._restore, cursor.state)
        position = cursor.position
        committed = True  # everything written is covered by the committed cursor
        try:
            while True:
                seen = feed.wakeup.generation
                items = await feed.read(position, self.batch, wait=False)
                now = self.clock()
                records = self._records(items)
                paths = {path for path, _ in records}
                if await asyncio.to_thread(self._open_and_rotate, paths, now):
                    await feed.commit(position, self._state())  # files opened or rotated: known before rows go in
                if not items:
                    await feed.wakeup.wait(seen, 1.0)
                    continue
                if records:
                    committed = False
                    await asyncio.to_thread(self._write, records, now)
                position = items[-1].position
                await feed.commit(position, self._state())
                committed = True
        finally:
            # As Zeek does at exit: each file gets #close and, with rotation on, is rotated. Not when rows
            # were written past the committed cursor: those are cut away and written again at the next start.
            for writer in self.writers.values():
                if committed:
                    writer.close()
                else:
                    writer.flush()


def _field(spec: str) -> tuple[str, ZeekType]:
    name, _, type_text = spec.partition(":")
    return name, parse_type(type_text)


def log_subscriptions(config_subscriptions: Sequence[Any]) -> list[LogSubscription]:
    """The config subscriptions (collector.config.SubscriptionConfig) that name a log."""
    return [
        LogSubscription(s.name, s.log, s.fields, s.removed and s.mode is Mode.DIFFERENTIAL)
        for s in config_subscriptions
        if s.log is not None
    ]
