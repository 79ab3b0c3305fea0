"""process_open_files: every open file descriptor of every process, from /proc/<pid>/fd."""

from __future__ import annotations

import os
from collections.abc import Iterator

from ._procfs import GONE, select_pids
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["SPEC", "generate"]


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per descriptor; sockets, pipes and anon inodes keep their ``type:[inode]`` link."""
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
            except GONE:
                continue  # the descriptor closed between listdir and readlink
            except OSError:
                path = None
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
