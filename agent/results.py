"""osquery result-log lines and the rotating files they go to.

Key order follows osquery/core/query.cpp: the legacy fields (name, hostIdentifier,
calendarTime, unixTime, epoch, counter, numerics, decorations) then ``columns`` and
``action`` for the event format; ``diffResults`` first for the batch format;
``snapshot`` and ``action`` first for the snapshot format.  "removed" rows come before
"added" ones, as osquery serializes them.

The ``format_*`` functions build lines as dicts of osquery's strings (the reference of
the format); the result log is written from outbox batches by :func:`encode_batch_lines`
(one line per row: every batch is whole lines) and :func:`encode_run_line` (one line per
run, produced in pieces), which give the same bytes without holding a run's lines in
memory.  Batches hold values typed as SQLite gave them; they are printed here, as osquery
logs them (:func:`stringify`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from .outbox import LogForm, ResultBatch, ResultRun

__all__ = [
    "ResultLog",
    "ResultWriter",
    "calendar_time",
    "encode_batch_lines",
    "encode_lines",
    "encode_run_line",
    "format_batch",
    "format_event_lines",
    "format_snapshot",
    "format_snapshot_lines",
    "stringify",
]

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

Row = Mapping[str, Any]


def stringify(value: Any) -> str:
    """A column value as osquery logs it: NULL -> "", numbers and text as strings."""
    if value is None:
        return ""
    if value.__class__ is str:
        return value
    if value.__class__ is int:
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else f"{value:.1f}"
    return str(value)


def calendar_time(unix_time: float) -> str:
    """osquery's calendarTime: ``"Mon May  2 22:27:32 2016 UTC"`` (asctime in UTC)."""
    t = time.gmtime(int(unix_time))
    return (
        f"{_DAYS[t.tm_wday]} {_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {t.tm_year} UTC"
    )


def _legacy(
    name: str,
    host_identifier: str,
    unix_time: float,
    epoch: int,
    counter: int,
    numerics: bool,
    decorations: Mapping[str, Any] | None,
    top_level: bool,
    into: dict[str, Any] | None = None,
) -> dict[str, Any]:
    item = {} if into is None else into
    item["name"] = name
    item["hostIdentifier"] = host_identifier
    item["calendarTime"] = calendar_time(unix_time)
    item["unixTime"] = int(unix_time)
    item["epoch"] = epoch
    item["counter"] = counter
    item["numerics"] = numerics
    if decorations:
        if top_level:
            item.update(decorations)  # may overwrite reserved keys, as osquery does
        else:
            item["decorations"] = dict(decorations)
    return item


def format_event_lines(
    name: str,
    host_identifier: str,
    unix_time: float,
    *,
    epoch: int,
    counter: int,
    added: Iterable[Row] = (),
    removed: Iterable[Row] = (),
    numerics: bool = False,
    decorations: Mapping[str, Any] | None = None,
    decorations_top_level: bool = False,
) -> list[dict[str, Any]]:
    """One line per row (``--logger_event_type=true``): removed rows first, then added."""
    head = _legacy(name, host_identifier, unix_time, epoch, counter, numerics, decorations, decorations_top_level)
    lines = []
    for action, rows in (("removed", removed), ("added", added)):
        for row in rows:
            line = dict(head)
            line["columns"] = dict(row)
            line["action"] = action
            lines.append(line)
    return lines


def format_batch(
    name: str,
    host_identifier: str,
    unix_time: float,
    *,
    epoch: int,
    counter: int,
    added: Sequence[Row] = (),
    removed: Sequence[Row] = (),
    numerics: bool = False,
    decorations: Mapping[str, Any] | None = None,
    decorations_top_level: bool = False,
) -> dict[str, Any]:
    """One line per run (``--logger_event_type=false``): ``diffResults`` then the legacy fields."""
    item: dict[str, Any] = {"diffResults": {"removed": [dict(r) for r in removed], "added": [dict(r) for r in added]}}
    return _legacy(name, host_identifier, unix_time, epoch, counter, numerics, decorations, decorations_top_level, item)


def format_snapshot(
    name: str,
    host_identifier: str,
    unix_time: float,
    *,
    rows: Sequence[Row],
    epoch: int = 0,
    counter: int = 0,
    numerics: bool = False,
    decorations: Mapping[str, Any] | None = None,
    decorations_top_level: bool = False,
) -> dict[str, Any]:
    """The snapshot form: ``{"snapshot": [rows], "action": "snapshot", ...legacy fields}``."""
    item: dict[str, Any] = {"snapshot": [dict(r) for r in rows], "action": "snapshot"}
    return _legacy(name, host_identifier, unix_time, epoch, counter, numerics, decorations, decorations_top_level, item)


def format_snapshot_lines(
    name: str,
    host_identifier: str,
    unix_time: float,
    *,
    rows: Sequence[Row],
    epoch: int = 0,
    counter: int = 0,
    numerics: bool = False,
    decorations: Mapping[str, Any] | None = None,
    decorations_top_level: bool = False,
) -> list[dict[str, Any]]:
    """``--logger_snapshot_event_type``: one line per row with ``columns`` and action "snapshot"."""
    head = _legacy(name, host_identifier, unix_time, epoch, counter, numerics, decorations, decorations_top_level)
    return [{**head, "columns": dict(row), "action": "snapshot"} for row in rows]


def encode_lines(lines: Iterable[Mapping[str, Any]]) -> bytes:
    """Lines as compact JSON, one per line, UTF-8 (what the log files hold)."""
    return b"".join(
        json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "replace") + b"\n" for line in lines
    )


_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_json_text: Callable[[str], str] = json.encoder.encode_basestring  # what _JSON uses for str


def _numeric(value: str) -> Any:
    """``--logger_numerics``: a numeric column's value as a JSON number (text that is none stays text)."""
    if value == "":
        return value
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value


def _row_maker(run: ResultRun, columns: Sequence[str]) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """A batch row (typed values) as the line's ``columns`` map: osquery's strings (numbers with numerics)."""
    numeric = [i for i, c in enumerate(columns) if c in run.numeric_columns] if run.numerics else []
    if not numeric:
        return lambda values: dict(zip(columns, map(stringify, values), strict=True))

    def make(values: Sequence[Any]) -> dict[str, Any]:
        row: dict[str, Any] = dict(zip(columns, map(stringify, values), strict=True))
        for i in numeric:
            row[columns[i]] = _numeric(row[columns[i]])
        return row

    return make


def _row_json(run: ResultRun, columns: Sequence[str]) -> Callable[[Sequence[Any]], str]:
    """A row's JSON object text: the same text as json.dumps of _row_maker's dict, built faster.

    Values print as strings (numbers too, unless logger_numerics makes them JSON numbers),
    so each is one call of the C string encoder json.dumps itself uses; the key texts are
    made once.
    """
    make = _row_maker(run, columns)
    if len(set(columns)) != len(columns):  # a dict keeps one of two equal names: json.dumps of the dict
        return lambda values: _JSON(make(values))
    keys = [_json_text(c) + ":" for c in columns]
    numeric = frozenset(i for i, c in enumerate(columns) if c in run.numeric_columns) if run.numerics else frozenset()
    text = stringify

    def row_text(values: Sequence[Any]) -> str:
        if numeric:
            parts = [
                k + (_JSON(_numeric(text(v))) if i in numeric else _json_text(v if v.__class__ is str else text(v)))
                for i, (k, v) in enumerate(zip(keys, values, strict=True))
            ]
        else:
            parts = [k + _json_text(v if v.__class__ is str else text(v)) for k, v in zip(keys, values, strict=True)]
        return "{" + ",".join(parts) + "}"

    return row_text


def _head(run: ResultRun) -> dict[str, Any]:
    return _legacy(
        run.name,
        run.host_identifier,
        run.unix_time,
        run.epoch,
        run.counter,
        run.numerics,
        run.decorations,
        run.decorations_top_level,
    )


def encode_batch_lines(batch: ResultBatch) -> bytes:
    """The result-log lines of a batch in a line-per-row form (EVENT, SNAPSHOT_EVENT)."""
    run = batch.run
    if not run.form.line_per_row:
        raise ValueError(f"{run.name}: a {run.form.value} run is one line; use encode_run_line")
    head = _head(run)
    make = _row_maker(run, batch.columns)
    action = batch.action.value
    if "columns" in head or "action" in head:  # top-level decorations named like our keys: the slow way
        lines = []
        for values in batch.rows:
            line = dict(head)
            line["columns"] = make(values)
            line["action"] = action
            lines.append(_JSON(line))
        return ("\n".join(lines) + "\n").encode("utf-8", "replace") if lines else b""
    prefix = _JSON(head)[:-1] + ',"columns":'
    suffix = f',"action":{_JSON(action)}}}\n'
    row = _row_json(run, batch.columns)
    return "".join([prefix + row(values) + suffix for values in batch.rows]).encode("utf-8", "replace")


def encode_run_line(run: ResultRun, batches: Iterable[ResultBatch]) -> Iterator[bytes]:
    """The one result-log line of a run in a one-line form (BATCH, SNAPSHOT), in pieces, batch by batch."""
    head = _head(run)
    keys: tuple[str, ...]
    if run.form is LogForm.BATCH:
        keys = ("diffResults",)
        opening, middle, closing = '{"diffResults":{"removed":[', '],"added":[', "]},"
    elif run.form is LogForm.SNAPSHOT:
        keys = ("snapshot", "action")
        opening, middle, closing = '{"snapshot":[', "", '],"action":"snapshot",'
    else:
        raise ValueError(f"{run.name}: a {run.form.value} run is a line per row; use encode_batch_lines")
    if any(k in head for k in keys):  # top-level decorations named like our keys: the slow way
        yield from _run_line_in_memory(run, batches)
        return
    yield opening.encode()
    first = True
    in_added = False
    for batch in batches:
        if run.form is LogForm.BATCH and batch.action.value == "added" and not in_added:
            yield middle.encode()
            in_added, first = True, True
        row = _row_json(run, batch.columns)
        text = ",".join([row(values) for values in batch.rows])
        if text:
            yield (text if first else "," + text).encode("utf-8", "replace")
            first = False
    if run.form is LogForm.BATCH and not in_added:
        yield middle.encode()
    yield (closing + _JSON(head)[1:] + "\n").encode("utf-8", "replace")


def _run_line_in_memory(run: ResultRun, batches: Iterable[ResultBatch]) -> Iterator[bytes]:
    removed: list[dict[str, Any]] = []
    added: list[dict[str, Any]] = []
    for batch in batches:
        make = _row_maker(run, batch.columns)
        (removed if batch.action.value == "removed" else added).extend(make(v) for v in batch.rows)
    common: dict[str, Any] = {
        "epoch": run.epoch,
        "counter": run.counter,
        "numerics": run.numerics,
        "decorations": run.decorations,
        "decorations_top_level": run.decorations_top_level,
    }
    if run.form is LogForm.BATCH:
        line = format_batch(run.name, run.host_identifier, run.unix_time, added=added, removed=removed, **common)
    else:
        line = format_snapshot(run.name, run.host_identifier, run.unix_time, rows=added, **common)
    yield encode_lines([line])


class ResultLog:
    """An append-only JSON-lines file with size-based rotation (``path`` -> ``path.1`` ...).

    ``fsync`` (default) makes every write durable before it returns, which the runner's
    exactly-once protocol relies on.  Rotation happens before a write that would take
    the file past ``max_bytes``; ``backups`` old files are kept.
    """

    def __init__(
        self, path: str, *, max_bytes: int = 25 * 1024 * 1024, backups: int = 25, mode: int = 0o640, fsync: bool = True
    ) -> None:
        if max_bytes <= 0 or backups < 0:
            raise ValueError(f"{path}: max_bytes must be positive and backups >= 0")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.mode = mode
        self.fsync = fsync
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def _open(self) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, self.mode)
        os.fchmod(fd, self.mode)
        return fd

    def rotate(self) -> None:
        """results.log -> results.log.1 -> ... -> results.log.<backups> (the oldest is dropped)."""
        if self.backups == 0:
            os.truncate(self.path, 0)
            return
        for i in range(self.backups - 1, 0, -1):
            older = f"{self.path}.{i}"
            if os.path.exists(older):
                os.replace(older, f"{self.path}.{i + 1}")
        os.replace(self.path, f"{self.path}.1")

    def prepare(self, nbytes: int) -> tuple[int, int]:
        """Rotate if ``nbytes`` more would not fit; return (file id, offset) the write will use."""
        try:
            size = os.path.getsize(self.path)
        except FileNotFoundError:
            size = 0
        if size and size + nbytes > self.max_bytes:
            self.rotate()
        fd = self._open()
        try:
            st = os.fstat(fd)
            return st.st_ino, st.st_size
        finally:
            os.close(fd)

    def write_at(self, data: bytes, file_id: int, offset: int) -> bool:
        """Make ``data`` be the file's bytes at ``offset`` (idempotent). False if already there.

        If the file at ``path`` is no longer the one with ``file_id`` (rotated away by
        someone else), the data is appended to the current file.
        """
        return self.write_chunks_at((data,), file_id, offset)

    def write_chunks_at(self, chunks: Iterable[bytes], file_id: int, offset: int) -> bool:
        """:meth:`write_at` for data made in pieces: bytes already in place are kept, the rest written.

        Each chunk is compared with the file at its position; from the first that differs
        (a torn write of ours) the file is cut there and the remaining chunks are written.
        """
        fd = self._open()
        try:
            st = os.fstat(fd)
            comparing = st.st_ino == file_id and st.st_size >= offset
            position = offset
            wrote = False
            for chunk in chunks:
                if not chunk:
                    continue
                if comparing:
                    if position + len(chunk) <= st.st_size and os.pread(fd, len(chunk), position) == chunk:
                        position += len(chunk)
                        continue  # written before a crash
                    comparing = False
                    if st.st_size > position:
                        os.ftruncate(fd, position)  # a torn write of ours: replace it
                view = memoryview(chunk)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                wrote = True
            if wrote and self.fsync:
                os.fsync(fd)
            return wrote
        finally:
            os.close(fd)

    def append(self, data: bytes) -> None:
        file_id, offset = self.prepare(len(data))
        self.write_at(data, file_id, offset)

    def write_lines(self, lines: Iterable[Mapping[str, Any]]) -> None:
        data = encode_lines(lines)
        if data:
            self.append(data)


class ResultWriter:
    """The two osquery filesystem logs in one directory: results.log and snapshots.log."""

    def __init__(
        self,
        directory: str,
        *,
        max_bytes: int = 25 * 1024 * 1024,
        backups: int = 25,
        mode: int = 0o640,
        fsync: bool = True,
    ) -> None:
        self.directory = directory
        self.logs = {
            target: ResultLog(
                os.path.join(directory, f"{target}.log"), max_bytes=max_bytes, backups=backups, mode=mode, fsync=fsync
            )
            for target in ("results", "snapshots")
        }

    @property
    def results(self) -> ResultLog:
        return self.logs["results"]

    @property
    def snapshots(self) -> ResultLog:
        return self.logs["snapshots"]

    def log_for(self, target: str) -> ResultLog:
        try:
            return self.logs[target]
        except KeyError:
            raise ValueError(f"unknown result log {target!r}: use 'results' or 'snapshots'") from None
