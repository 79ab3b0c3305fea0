"""shell_history: per-user shell history files (bash, zsh extended format, sh)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from ._files import read_bytes
from ._homes import user_homes
from .spec import Column, HostPaths, QueryContext, Row, TableSpec
from .text import decode

__all__ = ["HISTORY_FILES", "SPEC", "generate", "parse_history"]

#: History files osquery reads in each home directory (and ``.bash_sessions/*.history``).
HISTORY_FILES = (".bash_history", ".zsh_history", ".zhistory", ".history", ".sh_history", ".ash_history")

_ZSH_EXTENDED = re.compile(r"^: {0,10}([0-9]{1,11}):[0-9]+;(.*)$", re.DOTALL)
_BASH_TIMESTAMP = re.compile(r"^#([0-9]+)$")


def parse_history(text: str) -> list[tuple[int, str]]:
    """History text -> [(time, command)]; time is 0 when the file records none.

    As osquery: one entry per line (``\\n``), blank lines included; zsh's extended format
    ``: 1700000000:0;cmd`` carries the time on the line; bash with HISTTIMEFORMAT writes a
    ``#1700000000`` line that dates the line after it, whatever that line is.
    """
    entries: list[tuple[int, str]] = []
    pending: int | None = None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    for line in lines:
        if pending is None:
            stamp = _BASH_TIMESTAMP.match(line)
            if stamp:
                pending = int(stamp.group(1))
                continue
        if pending is not None:
            entries.append((pending, line))
            pending = None
            continue
        zsh = _ZSH_EXTENDED.match(line)
        entries.append((int(zsh.group(1)), zsh.group(2)) if zsh else (0, line))
    return entries


def _history_files(home: str, paths: HostPaths) -> list[str]:
    files = [f"{home.rstrip('/')}/{name}" for name in HISTORY_FILES]
    sessions = f"{home.rstrip('/')}/.bash_sessions"
    try:
        names = sorted(os.listdir(paths.host(sessions)))
    except OSError:
        names = []
    files += [f"{sessions}/{name}" for name in names if name.endswith(".history")]
    return files


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per history line of every user's history files."""
    for uid, home in user_homes(context):
        for path in _history_files(home, context.paths):
            data = read_bytes(context.paths.host(path))
            if data is None:
                continue
            for when, command in parse_history(decode(data)):
                yield {"uid": uid, "time": when, "command": command, "history_file": path}


SPEC = TableSpec(
    name="shell_history",
    description="A line-delimited (command) table of per-user .*_history data.",
    columns=(
        Column("uid", "BIGINT", "Shell history owner", additional=True),
        Column("time", "INTEGER", "Entry timestamp. It could be absent, default value is 0."),
        Column("command", "TEXT", "Unparsed date/line/command history line"),
        Column("history_file", "TEXT", "Path to the .*_history for this user"),
    ),
    generate=generate,
    examples=("SELECT * FROM users JOIN shell_history USING (uid)",),
)
