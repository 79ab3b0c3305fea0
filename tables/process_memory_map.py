"""process_memory_map: mapped regions of every process, from /proc/<pid>/maps."""

from __future__ import annotations

from collections.abc import Iterator

from .procfs import GONE, read_file, select_pids
from .spec import Column, QueryContext, Row, TableSpec
from .text import decode

__all__ = ["SPEC", "generate", "parse_maps"]


def parse_maps(data: bytes) -> list[Row]:
    """Lines of /proc/<pid>/maps -> rows without pid (osquery's field mapping).

    ``start``/``end`` keep their hex digits with a ``0x`` prefix, ``offset`` becomes an
    integer, ``pseudo`` is 1 for a named region without an inode ([heap], [stack], ...).
    Malformed lines are skipped.  The path is the kernel's text (which writes a newline in
    it as ``\\012``), trimmed as osquery trims it; bytes that are not UTF-8 are kept.
    """
    rows = []
    for line in data.split(b"\n"):
        fields = line.split(None, 5)  # bytes: only ASCII blanks separate fields, any byte may be in a path
        if len(fields) < 5 or b"-" not in fields[0]:
            continue
        start, _, end = fields[0].decode("ascii", "replace").partition("-")
        try:
            offset = int(fields[2], 16)
            inode = int(fields[4])
        except ValueError:
            continue
        path = decode(fields[5].strip()) if len(fields) > 5 else ""  # trimmed, as osquery
        rows.append(
            {
                "start": f"0x{start}",
                "end": f"0x{end}",
                "permissions": fields[1].decode("ascii", "replace"),
                "offset": offset,
                "device": fields[3].decode("ascii", "replace"),
                "inode": inode,
                "path": path,
                "pseudo": 1 if inode == 0 and path else 0,
            }
        )
    return rows


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per mapping; processes that vanish or refuse the read are skipped."""
    proc = context.paths.proc
    for pid in select_pids(proc, context.values("pid")):
        try:
            data = read_file(f"{proc}/{pid}/maps")
        except (*GONE, PermissionError):
            continue
        for row in parse_maps(data):
            row["pid"] = pid
            yield row


SPEC = TableSpec(
    name="process_memory_map",
    description="Process memory mapped files and pseudo device/regions.",
    columns=(
        Column("pid", "INTEGER", "Process (or thread) ID", index=True),
        Column("start", "TEXT", "Virtual start address (hex)"),
        Column("end", "TEXT", "Virtual end address (hex)"),
        Column("permissions", "TEXT", "r=read, w=write, x=execute, p=private (cow)"),
        Column("offset", "BIGINT", "Offset into mapped path"),
        Column("device", "TEXT", "MA:MI Major/minor device ID"),
        Column("inode", "INTEGER", "Mapped path inode, 0 means uninitialized (BSS)"),
        Column("path", "TEXT", "Path to mapped file or mapped type"),
        Column("pseudo", "INTEGER", "1 If path is a pseudo path, else 0"),
    ),
    generate=generate,
    examples=("SELECT path, start, end, permissions FROM process_memory_map WHERE pid = 1 AND path LIKE '%.so%'",),
)
