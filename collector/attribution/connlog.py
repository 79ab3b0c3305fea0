"""Reading Zeek's conn.log: ASCII (with its header) or JSON lines, optionally gzipped.

Only what attribution needs is taken from each record: ts, uid, the 5-tuple.  Files are
often concatenated or rotated mid-stream, so every ``#fields`` header resets the field
map.  A line that cannot be read is counted with its line number (the first few are kept
as examples), never a traceback; the rest of the file is still read.
"""

from __future__ import annotations

import datetime
import gzip
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from .model import Connection

__all__ = ["ConnLogError", "ConnLogStats", "LogKind", "read_conn_log"]

_NEEDED = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto")
_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")
MAX_EXAMPLES = 5


class ConnLogError(ValueError):
    """The file is not a conn.log we can read at all (not Zeek ASCII or JSON)."""


class LogKind:
    ASCII = "ascii"
    JSON = "json"


@dataclass
class ConnLogStats:
    """What reading one file gave: records, bad lines (with examples), the format seen."""

    kind: str = ""
    gzipped: bool = False
    records: int = 0
    bad_lines: int = 0
    examples: list[str] = field(default_factory=list)

    def bad(self, line_number: int, why: str) -> None:
        self.bad_lines += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"line {line_number}: {why}")


def _open(path: str, stats: ConnLogStats) -> IO[str]:
    raw = open(path, "rb")  # noqa: SIM115 - wrapped and closed by the caller
    try:
        magic = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
    except OSError:
        magic = b""
    if magic == b"\x1f\x8b":
        stats.gzipped = True
        return io.TextIOWrapper(gzip.GzipFile(fileobj=raw), encoding="utf-8", errors="surrogateescape")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape")


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text) if "\\x" in text else text


def _time(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value)
    try:
        return float(text)
    except ValueError:
        pass
    # LogAscii::json_timestamps = JSON::TS_ISO8601: 2026-11-29T22:10:27.032123Z
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _connection(values: dict[str, Any]) -> Connection:
    missing = [name for name in _NEEDED if values.get(name) in (None, "-", "")]
    if missing:
        raise ValueError("no " + ", ".join(missing))
    return Connection.from_zeek(
        _time(values["ts"]),
        str(values["uid"]),
        str(values["id.orig_h"]),
        int(values["id.orig_p"]),
        str(values["id.resp_h"]),
        int(values["id.resp_p"]),
        str(values["proto"]),
    )


def _flatten(record: dict[str, Any]) -> dict[str, Any]:
    """JSON logs written with nested records (``"id": {"orig_h": ...}``) as dotted names."""
    nested = record.get("id")
    if isinstance(nested, dict):
        record = {**record, **{f"id.{k}": v for k, v in nested.items()}}
    return record


def read_conn_log(path: str, stats: ConnLogStats | None = None) -> Iterator[Connection]:
    """Connections of a conn.log, in file order; bad lines are counted in ``stats``."""
    stats = stats if stats is not None else ConnLogStats()
    try:
        handle = _open(path, stats)
    except OSError as exc:
        raise ConnLogError(f"{path}: {exc.strerror or exc}") from None
    with handle:
        try:
            yield from _records(handle, path, stats)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise ConnLogError(f"{path}: cannot read it: {exc}") from None


def _records(handle: IO[str], path: str, stats: ConnLogStats) -> Iterator[Connection]:
    separator = "\t"
    fields: list[str] | None = None
    unset = "-"
    for number, line in enumerate(handle, 1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if not stats.kind:
            if line.startswith("#") or not line.lstrip().startswith("{"):
                stats.kind = LogKind.ASCII
            else:
                stats.kind = LogKind.JSON
            if stats.kind == LogKind.ASCII and not line.startswith("#"):
                raise ConnLogError(f"{path}: neither Zeek's ASCII format (a '#separator' header) nor JSON lines")
        if stats.kind == LogKind.JSON:
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
                connection = _connection(_flatten(record))
            except (ValueError, TypeError) as exc:
                stats.bad(number, str(exc))
                continue
            stats.records += 1
            yield connection
            continue
        if line.startswith("#"):
            key, _, value = line.partition(separator if not line.startswith("#separator") else " ")
            if key == "#separator":
                separator = _unescape(value.strip())
            elif key == "#fields":
                fields = value.split(separator)
            elif key == "#unset_field":
                unset = value
            continue
        if fields is None:
            stats.bad(number, "a record before the #fields header")
            continue
        parts = line.split(separator)
        if len(parts) != len(fields):
            stats.bad(number, f"{len(parts)} fields where the header names {len(fields)}")
            continue
        values = {
            name: (None if value == unset else _unescape(value)) for name, value in zip(fields, parts, strict=True)
        }
        try:
            connection = _connection(values)
        except (ValueError, TypeError) as exc:
            stats.bad(number, str(exc))
            continue
        stats.records += 1
        yield connection
