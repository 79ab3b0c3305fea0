"""A Zeek-format log file: ASCII (full header, ``#close``) or JSON lines, rotated by interval with
Zeek's file naming (``<path>.<open time %Y-%m-%d-%H-%M-%S, local>.log``).

The clock is the caller's (wall-clock seconds), so rotation is tested by stepping it. As in
Zeek, the file is created at the first write and, when rotation is on, the open file is rotated
at close too. For exactly-once writers (collector/zeeklog/sink.py) a file can be reopened at a
size recorded earlier (:meth:`ZeekLogWriter.resume`), what was written after it cut away.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from collector.zeek import brokerjson as bj
from collector.zeek.columns import ColumnError, SQLValue, convert
from collector.zeek.ztypes import Kind, ZeekType
from collector.zeeklog.formats import EMPTY_FIELD, SET_SEPARATOR, UNSET_FIELD, format_ascii, format_json


class LogFormat(enum.Enum):
    ASCII = "ascii"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class LogField:
    name: str
    type: ZeekType


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d-%H-%M-%S", time.localtime(t))


_OPEN_LINE = re.compile(rb"^#open\t(\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d)$", re.M)


def opened_stamp(path: Path) -> str:
    """The open time of a log file as its rotated name spells it: its ``#open`` line, else its mtime."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
        found = _OPEN_LINE.search(head)
        if found:
            return found.group(1).decode()
        return _stamp(path.stat().st_mtime)
    except OSError:
        return _stamp(time.time())


def log_value(value: SQLValue, t: ZeekType) -> object:
    """A SQL value as a log field of type ``t``, under the column typing rules plus three log rules:
    NULL in a string field is ``""`` (osquery's text for it, what a Zeek script gets); NULL, and
    an empty text, in a field of another type are unset (osquery writes "" for "none"); an IPv6
    zone index is cut off an ``addr`` (Zeek's addr has none; the package's interfaces script
    does the same). ColumnError when the value cannot be the type."""
    if value is None:
        return "" if t.kind is Kind.STRING else None
    if value == "" and t.kind is not Kind.STRING:
        return None
    if t.kind is Kind.ADDR and isinstance(value, str) and "%" in value:
        value = value.split("%", 1)[0]
    if t.kind is Kind.STRING and isinstance(value, str):
        return value
    if t.kind in (Kind.INT, Kind.COUNT) and type(value) is int:
        if t.kind is Kind.COUNT and value < 0:
            raise ColumnError(f"{value} is out of range for count")
        return value
    if t.kind is Kind.ADDR and isinstance(value, str):
        try:
            return ipaddress.ip_address(value)
        except ValueError:
            raise ColumnError(f"{value!r} is not an IP address; declared addr") from None
    return bj.decode(json.loads(convert(value, t)))


class ZeekLogWriter:
    """Writes one log stream (``path``) into ``directory``."""

    def __init__(
        self,
        directory: Path,
        path: str,
        fields: Sequence[LogField],
        *,
        fmt: LogFormat = LogFormat.ASCII,
        rotation_interval: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if "/" in path or path in ("", ".", ".."):
            raise ValueError(f"log path {path!r} must be a plain file name")
        self.directory = Path(directory)
        self.path = path
        self.fields = tuple(fields)
        self.format = fmt
        self.rotation_interval = rotation_interval
        self._clock = clock
        self._file: TextIO | None = None
        self._opened = 0.0
        self._next_rotation = 0.0
        self.rotated: list[Path] = []

    @property
    def is_open(self) -> bool:
        return self._file is not None

    @property
    def opened(self) -> float:
        """When the open file was opened (0.0 when none is)."""
        return self._opened if self._file is not None else 0.0

    def size(self) -> int:
        """Bytes in the open file (after a flush)."""
        if self._file is None:
            return 0
        self._file.flush()
        return self._file.tell()

    def inode(self) -> int:
        if self._file is None:
            return 0
        return os.fstat(self._file.fileno()).st_ino

    def open(self, now: float) -> None:
        """Open a new file now (with its header) instead of at the first write."""
        if self._file is None:
            self._file = self._open(now)

    def resume(self, size: int, opened: float) -> bool:
        """Continue the live file a previous writer left, cut back to ``size`` bytes; False (and nothing
        done) when there is no such file or it is shorter."""
        try:
            f = open(self.live_path, "r+", encoding="utf-8", newline="\n", errors="surrogateescape")  # noqa: SIM115
        except FileNotFoundError:
            return False
        f.seek(0, os.SEEK_END)
        if f.tell() < size:
            f.close()
            return False
        f.truncate(size)
        f.seek(size)
        self._file = f
        self._opened = opened
        if self.rotation_interval > 0:
            self._next_rotation = (opened // self.rotation_interval + 1) * self.rotation_interval
        return True

    def rotation_due(self, now: float) -> bool:
        return self._file is not None and self.rotation_interval > 0 and now >= self._next_rotation

    def rotate(self, now: float) -> None:
        """Close (``#close`` at the rotation time) and rename the open file, if its rotation is due."""
        if self.rotation_due(now):
            self._finish(self._next_rotation, rotate=True)

    def sync(self) -> None:
        """Flush and fsync the open file (durable when it returns)."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    @property
    def live_path(self) -> Path:
        return self.directory / f"{self.path}.log"

    def _open(self, now: float) -> TextIO:
        self.directory.mkdir(parents=True, exist_ok=True)
        f = open(self.live_path, "w", encoding="utf-8", newline="\n", errors="surrogateescape")  # noqa: SIM115
        self._opened = now
        if self.rotation_interval > 0:
            self._next_rotation = (now // self.rotation_interval + 1) * self.rotation_interval
        if self.format is LogFormat.ASCII:
            f.write(
                "#separator \\x09\n"
                f"#set_separator\t{SET_SEPARATOR}\n"
                f"#empty_field\t{EMPTY_FIELD}\n"
                f"#unset_field\t{UNSET_FIELD}\n"
                f"#path\t{self.path}\n"
                f"#open\t{_stamp(now)}\n"
                "#fields\t" + "\t".join(fl.name for fl in self.fields) + "\n"
                "#types\t" + "\t".join(fl.type.log_name() for fl in self.fields) + "\n"
            )
        return f

    def _finish(self, now: float, rotate: bool) -> None:
        f, self._file = self._file, None
        if f is None:
            return
        if self.format is LogFormat.ASCII:
            f.write(f"#close\t{_stamp(now)}\n")
        f.close()
        if rotate:
            target = self.directory / f"{self.path}.{_stamp(self._opened)}.log"
            n = 1
            while target.exists():  # opened twice within a second (restarts): keep both
                target = self.directory / f"{self.path}.{_stamp(self._opened)}-{n}.log"
                n += 1
            os.replace(self.live_path, target)
            self.rotated.append(target)

    def write(self, values: Sequence[object], now: float | None = None) -> None:
        """Write one record of Python values (see collector.zeek.values; None = unset)."""
        if len(values) != len(self.fields):
            raise ValueError(f"{self.path}: {len(values)} values for {len(self.fields)} fields")
        if now is None:
            now = self._clock()
        if self._file is not None and self.rotation_interval > 0 and now >= self._next_rotation:
            self._finish(self._next_rotation, rotate=True)
        if self._file is None:
            self._file = self._open(now)
        if self.format is LogFormat.ASCII:
            parts = [format_ascii(v, fl.type) for v, fl in zip(values, self.fields, strict=True)]
            if parts and parts[0].startswith("#"):
                parts[0] = "\\x23" + parts[0][1:]
            self._file.write("\t".join(parts) + "\n")
        else:
            items = [
                json.dumps(fl.name) + ":" + format_json(v, fl.type)
                for v, fl in zip(values, self.fields, strict=True)
                if v is not None
            ]
            self._file.write("{" + ",".join(items) + "}\n")

    def write_sql_row(self, values: Sequence[SQLValue], prefix: Sequence[object] = ()) -> None:
        """Write ``prefix`` (already typed) then SQL values under the column typing rules: a NULL
        is unset, a value that cannot become its declared type raises ColumnError."""
        typed: list[object] = list(prefix)
        for value, fl in zip(values, self.fields[len(prefix) :], strict=True):
            if value is None:
                typed.append(None)
                continue
            try:
                typed.append(bj.decode(json.loads(convert(value, fl.type))))
            except ColumnError as exc:
                raise ColumnError(f"{self.path}: field {fl.name}: {exc}") from None
        self.write(typed)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """Close the file (with ``#close``); with rotation on, the open file is rotated too."""
        self._finish(self._clock(), rotate=self.rotation_interval > 0)
