"""process_envs: environment variables of every process, from /proc/<pid>/environ."""

from __future__ import annotations

from collections.abc import Iterator

from .procfs import GONE, read_pid_file, select_pids
from .spec import Column, QueryContext, Row, TableSpec
from .text import decode

__all__ = ["SPEC", "generate", "parse_environ"]


def parse_environ(data: bytes) -> list[tuple[str, str]]:
    """NUL-separated ``KEY=value`` entries -> [(key, value)]; an entry without ``=`` has value ""."""
    pairs = []
    for entry in data.split(b"\0"):
        if not entry:
            continue
        key, _, value = entry.partition(b"=")
        pairs.append((decode(key), decode(value)))
    return pairs


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per variable; processes that vanish or refuse the read are skipped."""
    proc = context.paths.proc
    for pid in select_pids(proc, context.values("pid")):
        try:
            data = read_pid_file(f"{proc}/{pid}/environ")
        except (*GONE, PermissionError):
            continue
        for key, value in parse_environ(data):
            yield {"pid": pid, "key": key, "value": value}


SPEC = TableSpec(
    name="process_envs",
    description="A key/value table of environment variables for each process.",
    columns=(
        Column("pid", "INTEGER", "Process (or thread) ID", index=True),
        Column("key", "TEXT", "Environment variable name"),
        Column("value", "TEXT", "Environment variable value"),
    ),
    generate=generate,
    examples=("SELECT key, value FROM process_envs WHERE pid = 1",),
)
