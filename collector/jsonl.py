"""The JSON-lines sink: one line per result row, exactly once across crashes.

Each line: ``{"host_id", "hostname", "name", "subscription", "seq", "action", "counter",
"epoch", "time", "columns"}`` with the host's time (unix seconds) and the columns as a
map of typed values (a BLOB becomes text, invalid UTF-8 escaped with backslashes).

Exactly once: the file is appended and fsynced, then the cursor (outbox position and the
file's size after the write) is committed.  On start the file is cut back to the
committed size, so lines written after the last committed cursor (a crash in between)
are written once more, not twice.  Rotate it with a rename (logrotate's ``create``), not
``copytruncate``: a file shorter than the committed size is taken as a new file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
from collections.abc import Sequence
from typing import Any

from .model import OutboxItem, ResultBatch
from .outbox import SinkFeed

__all__ = ["JsonLinesSink", "format_lines"]

_string = json.encoder.encode_basestring  # a JSON string, non-ASCII kept (the C function)

log = logging.getLogger(__name__)


def _value(value: Any) -> str:
    """One column value as JSON (NaN and infinities, which JSON lacks, become null)."""
    kind = type(value)
    if kind is str:
        return _string(value)
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    if kind is float:
        return float.__repr__(value) if math.isfinite(value) else "null"
    if kind is bytes:
        return _string(value.decode("utf-8", "backslashreplace"))
    return _string(str(value))


def _bytes_as_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    raise TypeError(f"{type(value).__name__} is not a column value")


#: json's C encoder, called directly (no per-call JSONEncoder): compact, non-ASCII kept, NaN refused.
_encode_map = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
    None, _bytes_as_text, _string, None, ":", ",", False, False, False
)


def format_lines(batch: ResultBatch) -> bytes:
    """The lines for one batch, UTF-8, each ending in a newline (one per row)."""
    head = (
        f'{{"host_id":{_string(batch.host_id)},"hostname":{_string(batch.hostname)},"name":{_string(batch.name)},'
        f'"subscription":{_value(batch.subscription_id)},"seq":{batch.seq},"action":"'
    )
    tail = f'","counter":{batch.counter},"epoch":{batch.epoch},"time":{_value(batch.host_time)},"columns":'
    columns = batch.columns
    out = []
    for action, values in batch.rows:
        try:
            body = "".join(_encode_map(dict(zip(columns, values, strict=True)), 0))
        except ValueError:  # NaN or an infinity: JSON has none, they become null
            body = "{" + ",".join(_string(c) + ":" + _value(v) for c, v in zip(columns, values, strict=True)) + "}"
        out.append(f"{head}{action.value}{tail}{body}}}\n")
    return "".join(out).encode("utf-8", "surrogateescape")


class JsonLinesSink:
    """Appends every accepted result row to ``path`` once."""

    def __init__(self, path: str, *, fsync: bool = True, name: str = "jsonl", batch: int = 512) -> None:
        self.path = path
        self.fsync = fsync
        self.name = name
        self.batch = batch
        self.rows_written = 0

    def _open(self, offset: int) -> tuple[int, int]:
        """Open the file and cut it back to the committed ``offset``; (fd, where writing resumes)."""
        os.makedirs(os.path.dirname(os.path.abspath(self.path)) or ".", exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o640)
        size = os.fstat(fd).st_size
        if size > offset:
            log.info("%s: %d bytes written after the last committed cursor are written again", self.path, size - offset)
            os.ftruncate(fd, offset)
            size = offset
        elif size < offset:
            log.warning("%s is shorter than its committed size (rotated?): continuing as a new file", self.path)
        os.lseek(fd, size, os.SEEK_SET)
        return fd, size

    def _format_and_write(self, fd: int, items: Sequence[OutboxItem], offset: int) -> int:
        data, _ = _encode(items)
        return self._write(fd, data) if data else offset

    def _write(self, fd: int, data: bytes) -> int:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if self.fsync:
            os.fsync(fd)
        return os.lseek(fd, 0, os.SEEK_CUR)

    async def run(self, feed: SinkFeed) -> None:
        cursor = await feed.cursor()
        offset = int(json.loads(cursor.state)["offset"]) if cursor.state else 0
        fd, offset = await asyncio.to_thread(self._open, offset)
        position = cursor.position
        write: asyncio.Future[int] | None = None
        try:
            while True:
                items = await feed.read(position, self.batch)
                rows = sum(len(i.rows) for i in items if isinstance(i, ResultBatch))
                if rows:
                    # Formatted and written on a thread (the event loop keeps serving agents meanwhile);
                    # shielded: a cancelled sink must not close the file under a write in progress.
                    write = asyncio.ensure_future(asyncio.to_thread(self._format_and_write, fd, items, offset))
                    offset = await asyncio.shield(write)
                position = items[-1].position
                # Not awaited: the next batch is formatted and written while the cursor is committed
                # (a crash in between cuts the file back to the older cursor's offset and writes again).
                pending = feed.commit_soon(position, json.dumps({"offset": offset}))
                pending.add_done_callback(_ignore_cancelled)
                self.rows_written += rows
        finally:
            if write is not None and not write.done():
                await asyncio.wait([write])
            os.close(fd)


def _ignore_cancelled(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("committing the results file's cursor failed: %s", future.exception())


def _encode(items: Sequence[OutboxItem]) -> tuple[bytes, int]:
    parts = []
    rows = 0
    for item in items:
        if isinstance(item, ResultBatch) and item.rows:
            parts.append(format_lines(item))
            rows += len(item.rows)
    return b"".join(parts), rows
