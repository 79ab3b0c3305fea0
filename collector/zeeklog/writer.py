"""A Zeek-format log file: ASCII (full header, ``#close``) or JSON lines, rotated by interval with
Zeek's file naming (``<path>.<open time %Y-%m-%d-%H-%M-%S, local>.log``).

The clock is the caller's (wall-clock seconds), so rotation is tested by stepping it. As in
Zeek, the file is created at the first write and, when rotation is on, the open file is rotated
at close too.
"""

from __future__ import annotations

import enum
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from collector.zeek import brokerjson as bj
from collector.zeek.columns import ColumnError, SQLValue, convert
from collector.zeek.ztypes import ZeekType
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
            os.replace(self.live_path, target)
            self.rotated.append(target)

    def write(self, values: Sequence[object]) -> None:
        """Write one record of Python values (see collector.zeek.values; None = unset)."""
        if len(values) != len(self.fields):
            raise ValueError(f"{self.path}: {len(values)} values for {len(self.fields)} fields")
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
