"""process_open_files: the open files of every process, from the links of /proc/<pid>/fd.

As osquery: descriptors that are not files (``socket:[...]``, ``pipe:[...]``,
``anon_inode:...``) are left out (process_open_sockets has the sockets), and a descriptor
whose link cannot be read is skipped; a deleted file keeps the kernel's `` (deleted)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from .procfs import GONE, select_pids
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["NOT_FILES", "SPEC", "generate"]

#: Link prefixes of descriptors that are not files (osquery leaves them out too).
NOT_FILES = ("socket:[", "pipe:[", "anon_inode:")


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per descriptor of a file."""
    proc = context.paths.proc
    for pid in select_pids(proc, context.values("pid")):
        fd_dir = f"{proc}/{pid}/fd"
        try:
            names = os.listdir(fd_dir)
        except GONE:
            continue
        except PermissionError:
            continue  # another user's process without CAP_SYS_PTRACE: nothing to list
        fds = sorted(int(n) for n in names if n.isdigit())
        for fd in fds:
            try:
                path = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue  # closed between listdir and readlink, or refused (osquery skips it too)
            if path.startswith(NOT_FILES):
                continue
            yield {"pid": pid, "fd": fd, "path": path}


SPEC = TableSpec(
    name="process_open_files",
    description="File descriptors for each process.",
    columns=(
        Column("pid", "BIGINT", "Process (or thread) ID", index=True),
        Column("fd", "BIGINT", "Process-specific file descriptor number"),
        Column("path", "TEXT", "Filesystem path of descriptor"),
    ),
    generate=generate,
    examples=(
        "SELECT fd, path FROM process_open_files WHERE pid = 1",
        "SELECT DISTINCT pid, path FROM process_open_files WHERE path LIKE '/tmp/%'",
    ),
)
