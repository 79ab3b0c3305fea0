"""logged_in_users: login records from the binary utmp file (/var/run/utmp)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from ._files import read_bytes
from .spec import Column, QueryContext, Row, TableSpec
from .text import decode

__all__ = ["LOGIN_TYPES", "SPEC", "UTMP_RECORD", "UtmpRecord", "generate", "parse_utmp"]

#: glibc's struct utmp on Linux (x86_64, aarch64, ...; 64-bit glibc keeps 32-bit times here):
#: ut_type short + pad, ut_pid, ut_line[32], ut_id[4], ut_user[32], ut_host[256],
#: ut_exit {short, short}, ut_session int32, ut_tv {int32 sec, int32 usec}, ut_addr_v6[4], pad[20].
UTMP_RECORD = struct.Struct("=h2xi32s4s32s256shhiii16s20x")
assert UTMP_RECORD.size == 384

#: ut_type values (utmp.h) and the names osquery gives them.
LOGIN_TYPES = {
    0: "empty",
    1: "runlevel",
    2: "boot_time",
    3: "new_time",
    4: "old_time",
    5: "init",
    6: "login",
    7: "user",
    8: "dead",
    9: "accounting",
}

UTMP_PATHS = ("/var/run/utmp", "/run/utmp")


@dataclass(frozen=True, slots=True)
class UtmpRecord:
    type: int
    pid: int
    line: str
    id: str
    user: str
    host: str
    session: int
    time: int


def _cstr(raw: bytes) -> str:
    return decode(raw.split(b"\0", 1)[0])


def parse_utmp(data: bytes) -> list[UtmpRecord]:
    """Records of a utmp/wtmp file; a truncated trailing record is ignored."""
    records = []
    end = len(data) - len(data) % UTMP_RECORD.size
    for fields in UTMP_RECORD.iter_unpack(data[:end]):
        ut_type, pid, line, ut_id, user, host, _term, _exit, session, sec, _usec, _addr = fields
        records.append(
            UtmpRecord(ut_type, pid, _cstr(line), _cstr(ut_id), _cstr(user), _cstr(host), session, sec & 0xFFFFFFFF)
        )
    return records


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per utmp record, init's own records left out."""
    data = None
    for path in UTMP_PATHS:
        data = read_bytes(context.paths.host(path))
        if data is not None:
            break
    for r in parse_utmp(data or b""):
        if r.pid == 1:  # osquery skips init's own records (runlevel, boot time)
            continue
        yield {
            "type": LOGIN_TYPES.get(r.type, "unknown"),
            "user": r.user,
            "tty": r.line,
            "host": r.host,
            "time": r.time,
            "pid": r.pid,
        }


SPEC = TableSpec(
    name="logged_in_users",
    description="Users with an active shell on the system, from utmp.",
    columns=(
        Column("type", "TEXT", "Login type"),
        Column("user", "TEXT", "User login name"),
        Column("tty", "TEXT", "Device name"),
        Column("host", "TEXT", "Remote hostname"),
        Column("time", "BIGINT", "Time entry was made"),
        Column("pid", "INTEGER", "Process (or thread) ID"),
        Column("sid", "TEXT", "The user's unique security identifier", hidden=True),
        Column("registry_hive", "TEXT", "HKEY_USERS registry hive", hidden=True),
    ),
    generate=generate,
    examples=("SELECT user, tty, host, time FROM logged_in_users WHERE type = 'user'",),
)
