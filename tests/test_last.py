"""last: a wtmp file written in glibc's utmp record layout."""

from __future__ import annotations

from pathlib import Path

from tables import last
from tables.logged_in_users import UTMP_RECORD
from tables.spec import HostPaths
from tables.sqlite import Database


def record(ut_type: int, pid: int, line: str, user: str, host: str, sec: int) -> bytes:
    return UTMP_RECORD.pack(
        ut_type, pid, line.encode(), b"ts/1", user.encode(), host.encode(), 0, 0, 0, sec, 0, b"\0" * 16
    )


def test_wtmp_logins_and_logouts(tmp_path: Path) -> None:
    (tmp_path / "var/log").mkdir(parents=True)
    data = (
        b"".join(
            (
                record(2, 0, "~", "reboot", "6.1.0", 1700000000),  # boot time: not a login
                record(7, 4242, "pts/1", "alice", "192.0.2.10", 1700000100),
                record(8, 4242, "pts/1", "", "", 1700000200),
            )
        )
        + b"\0" * 100
    )  # truncated trailing record is ignored
    (tmp_path / "var/log/wtmp").write_bytes(data)
    db = Database([last.SPEC], paths=HostPaths(root=str(tmp_path)))
    assert db.execute("SELECT * FROM last").dicts() == [
        {
            "username": "alice",
            "tty": "pts/1",
            "pid": 4242,
            "type": 7,
            "type_name": "user-process",
            "time": 1700000100,
            "host": "192.0.2.10",
        },
        {
            "username": "",
            "tty": "pts/1",
            "pid": 4242,
            "type": 8,
            "type_name": "dead-process",
            "time": 1700000200,
            "host": "",
        },
    ]


def test_missing_wtmp_is_empty(tmp_path: Path) -> None:
    assert Database([last.SPEC], paths=HostPaths(root=str(tmp_path))).execute("SELECT * FROM last").rows == []


def test_live_wtmp_runs() -> None:
    rows = Database([last.SPEC]).execute("SELECT type FROM last").rows
    assert all(r[0] in (7, 8) for r in rows)
