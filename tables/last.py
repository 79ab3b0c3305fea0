"""last: login and logout records from the binary wtmp file (/var/log/wtmp)."""

from __future__ import annotations

from collections.abc import Iterator

from ._files import read_bytes
from .logged_in_users import parse_utmp
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["SPEC", "TYPE_NAMES", "WTMP_PATH", "generate"]

WTMP_PATH = "/var/log/wtmp"

#: ut_type values (utmp.h) and the names osquery's last table gives them.
TYPE_NAMES = {
    0: "empty",
    1: "run-level",
    2: "boot-time",
    3: "new-time",
    4: "old-time",
    5: "init-process",
    6: "login-process",
    7: "user-process",
    8: "dead-process",
    9: "accounting",
}
_USER_PROCESS, _DEAD_PROCESS = 7, 8


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per login (user-process) and logout (dead-process) record, oldest first."""
    data = read_bytes(context.paths.host(WTMP_PATH)) or b""
    for r in parse_utmp(data):
        if r.type not in (_USER_PROCESS, _DEAD_PROCESS):
            continue
        yield {
            "username": r.user,
            "tty": r.line,
            "pid": r.pid,
            "type": r.type,
            "type_name": TYPE_NAMES[r.type],
            "time": r.time,
            "host": r.host,
        }


SPEC = TableSpec(
    name="last",
    description="System logins and logouts.",
    columns=(
        Column("username", "TEXT", "Entry username"),
        Column("tty", "TEXT", "Entry terminal"),
        Column("pid", "INTEGER", "Process (or thread) ID"),
        Column("type", "INTEGER", "Entry type, according to ut_type types (utmp.h)"),
        Column("type_name", "TEXT", "Entry type name, according to ut_type types (utmp.h)"),
        Column("time", "INTEGER", "Entry timestamp"),
        Column("host", "TEXT", "Entry hostname"),
    ),
    generate=generate,
    examples=("SELECT username, tty, host, time FROM last WHERE type_name = 'user-process'",),
)
