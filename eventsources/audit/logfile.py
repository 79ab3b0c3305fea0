"""Replay auditd's text log (/var/log/audit/audit.log) into process_events/socket_events rows.

auditd does not write EOE records, so an event ends once it holds its SYSCALL and its
PROCTITLE record (in either order: ausearch prints an event's records in reverse), at
ausearch's ``----`` line between events, when ``window`` further records have gone by
(older kernels have no PROCTITLE; events interleave a little), or at the end of the
input.  Events are keyed on node, timestamp and serial, so logs aggregated from several
hosts (``node=NAME``) do not mix.

Nothing is dropped silently: a line that is not a record, a damaged record (named with
its type and line), an event that makes no row (by reason, with the architecture and
syscall), records of types no row is built from (by type) are all counted in
:class:`ReplayStats`.  ``ausearch -i`` output cannot be replayed (its numbers are
replaced by names): :class:`ReplayError` says so.  :class:`LogInput` reads a file or
standard input, plain or gzip/bzip2/xz-compressed.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from .reassemble import AuditEvent, Reassembler
from .records import USED_TYPES, InterpretedFormatError, RecordError, parse_line
from .rows import Problem, RowBuilder

__all__ = ["LogInput", "ReplayError", "ReplayStats", "replay"]

MAX_EXAMPLES = 10
EXPIRE_EVERY = 64  # lines between checks of the window
MAX_LINE = 16 << 20  # bytes of a line that are read; a longer one is not a record (see records.MAX_BODY)

#: leading bytes -> compression; the ones Python reads, and the ones it can only name
_READABLE = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"))
_NAMED_ONLY = ((b"\x28\xb5\x2f\xfd", "zstd", "zstd -dc"), (b"\x04\x22\x4d\x18", "lz4", "lz4 -dc"))


class ReplayError(Exception):
    """The input cannot be replayed at all (wrong format); the message says what to do."""


@dataclass
class ReplayStats:
    """What a replay read, built, skipped and could not read."""

    lines: int = 0
    records: int = 0  # lines that were audit records (of any type)
    events: int = 0  # events assembled from the record types rows are built from
    rows: int = 0
    malformed: int = 0  # lines that are not records + damaged records
    examples: list[tuple[int | None, str]] = field(default_factory=list)  # (line number, what was wrong)
    skipped: dict[str, int] = field(default_factory=dict)  # events that made no row, by reason
    skipped_detail: dict[str, dict[str, int]] = field(default_factory=dict)  # reason -> {arch/syscall: count}
    other_types: dict[str, int] = field(default_factory=dict)  # records of types no row is built from, by type
    other_lines: dict[str, int] = field(default_factory=dict)  # lines that are no record and no damage, by kind

    def note_malformed(self, lineno: int | None, why: str) -> None:
        self.malformed += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append((lineno, why))


def replay(
    lines: Iterable[str | bytes],
    stats: ReplayStats,
    *,
    socket_events: bool = True,
    window: int = 256,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (table_name, row) for every exec/socket event in auditd log ``lines``.

    Each line is given as read from the file, with its newline: a line without one
    (the last line of a log cut short) is a damaged record.
    """
    reasm = Reassembler(timeout=window, max_pending=4 * window, end_on_proctitle=True)

    def on_problem(problem: Problem) -> None:
        stats.note_malformed(problem.record.lineno, problem.text)

    builder = RowBuilder(socket_events=socket_events, on_problem=on_problem)
    lineno = 0

    def rows_of(events: list[AuditEvent]) -> Iterator[tuple[str, dict[str, Any]]]:
        for event in events:
            stats.events += 1
            built = builder.build(event)
            if built is not None:
                stats.rows += 1
                yield built

    try:
        for lineno, line in enumerate(lines, 1):
            stats.lines += 1
            text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
            cut = not text.endswith("\n")
            if not text.strip():
                stats.other_lines["blank"] = stats.other_lines.get("blank", 0) + 1
                continue
            if text.startswith("----"):  # ausearch: the records of one event follow
                stats.other_lines["ausearch ----"] = stats.other_lines.get("ausearch ----", 0) + 1
                yield from rows_of(reasm.boundary())
                continue
            if text.startswith("time->"):  # ausearch: the event's time, before its records
                stats.other_lines["ausearch time->"] = stats.other_lines.get("ausearch time->", 0) + 1
                continue
            try:
                record = parse_line(text, lineno=lineno, cut=cut)
            except InterpretedFormatError as exc:
                raise ReplayError(f"line {lineno}: {exc}") from None
            except RecordError as exc:
                stats.note_malformed(lineno, f"{'cut short, ' if cut else ''}not an audit record: {exc}")
                continue
            stats.records += 1
            if record.type not in USED_TYPES:
                name = _type_name(text)
                stats.other_types[name] = stats.other_types.get(name, 0) + 1
                if cut:
                    stats.note_malformed(lineno, f"{name} record: the line ends without a newline (cut short)")
                continue
            done = reasm.push(record, lineno)
            if done is not None:
                yield from rows_of([done])
            if lineno % EXPIRE_EVERY == 0:
                yield from rows_of(reasm.expire(lineno))
        yield from rows_of(reasm.flush())
    finally:
        for why, count in builder.skipped.items():
            stats.skipped[why] = stats.skipped.get(why, 0) + count
        for why, details in builder.skipped_detail.items():
            per = stats.skipped_detail.setdefault(why, {})
            for detail, count in details.items():
                per[detail] = per.get(detail, 0) + count


def _type_name(text: str) -> str:
    """``USER_LOGIN`` from a record line (after any ``node=``)."""
    start = text.find("type=") + 5
    end = text.find(" ", start)
    return text[start:end] if end > start else text[start:]


class LogInput:
    """The lines of an audit log: a file or ``-`` (standard input), plain or gzip/bzip2/xz-compressed.

    Iterating yields the lines as bytes, newline kept (only the first ``MAX_LINE`` bytes of a
    longer line, which then reads as cut short).  A read or decompression error
    ends the lines early instead of raising (what was read still counts): ``error``
    then says why.  Opening raises OSError (file not there, a directory, not readable)
    or :class:`ReplayError` (a compression Python cannot read: the message names it).
    """

    def __init__(self, path: str, *, stdin: IO[bytes] | None = None) -> None:
        self.path = path
        self.name = "standard input" if path == "-" else path
        self.compression: str | None = None
        self.error: str | None = None
        raw: IO[bytes]
        if path == "-":
            raw = stdin if stdin is not None else sys.stdin.buffer
            self._owned = False
        else:
            raw = open(path, "rb")  # noqa: SIM115 - closed by close()
            self._owned = True
        self._raw = raw
        try:
            self._stream = self._open(raw)
        except BaseException:
            self.close()
            raise

    def _open(self, raw: IO[bytes]) -> IO[bytes]:
        peek = getattr(raw, "peek", None)
        head = peek(8)[:8] if peek is not None else b""
        for magic, kind, tool in _NAMED_ONLY:
            if head.startswith(magic):
                source = "-" if self.path == "-" else self.path
                raise ReplayError(
                    f"{self.name} is {kind}-compressed; decompress it first, e.g. "
                    f"{tool} {source} | agent-cli watch ... --audit-log -"
                )
        for magic, kind in _READABLE:
            if head.startswith(magic):
                self.compression = kind
                if kind == "gzip":
                    return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
                if kind == "bzip2":
                    return bz2.BZ2File(raw, "rb")
                return lzma.LZMAFile(raw, "rb")
        return raw

    def __iter__(self) -> Iterator[bytes]:
        readline = self._stream.readline
        try:
            while True:
                line = readline(MAX_LINE)
                if not line:
                    return
                if len(line) == MAX_LINE and not line.endswith(b"\n"):  # not a log line: keep its start only
                    while (rest := readline(MAX_LINE)) and not rest.endswith(b"\n"):
                        pass
                yield line
        except EOFError:
            self.error = f"the {self.compression} data ends early (the file is cut short)"
        except (OSError, zlib.error, lzma.LZMAError) as exc:
            what = f"{self.compression} data" if self.compression else "file"
            self.error = f"reading the {what} failed: {getattr(exc, 'strerror', None) or exc}"

    def close(self) -> None:
        if self._owned:
            self._raw.close()

    def __enter__(self) -> LogInput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
