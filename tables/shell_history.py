"""shell_history: per-user shell history files (bash, zsh extended format, sh)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from ._files import read_bytes
from ._homes import user_homes
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["HISTORY_FILES", "SPEC", "generate", "parse_history"]

#: History files osquery reads in each home directory.
HISTORY_FILES = (".bash_history", ".zsh_history", ".zhistory", ".history", ".sh_history")

_ZSH_EXTENDED = re.compile(r"^: {0,10}([0-9]{1,11}):[0-9]+;(.*)$", re.DOTALL)
_BASH_TIMESTAMP = re.compile(r"^#([0-9]+)$")


def parse_history(text: str) -> list[tuple[int, str]]:
    """History text -> [(time, command)]; time is 0 when the file records none.

    zsh's extended format ``: 1700000000:0;cmd`` carries the time on the line; bash with
    HISTTIMEFORMAT writes a ``#1700000000`` line before the command it dates.
    """
    entries: list[tuple[int, str]] = []
    pending = 0
    for line in text.splitlines():
        if not line:
            continue
        stamp = _BASH_TIMESTAMP.match(line)
        if stamp:
            pending = int(stamp.group(1))
            continue
        zsh = _ZSH_EXTENDED.match(line)
        if zsh:
            entries.append((int(zsh.group(1)), zsh.group(2)))
        else:
            entries.append((pending, line))
        pending = 0
    return entries


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per history line of every user's history files."""
    for uid, home in user_homes(context):
        for name in HISTORY_FILES:
            path = f"{home.rstrip('/')}/{name}"
            data = read_bytes(context.paths.host(path))
            if data is None:
                continue
            for when, command in parse_history(data.decode("utf-8", "replace")):
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
