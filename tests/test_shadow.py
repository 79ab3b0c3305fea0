"""shadow: password status and ageing without ever exposing the hash."""

from __future__ import annotations

import os
from pathlib import Path

from tables import shadow
from tables.shadow import hash_algorithm, parse_shadow, password_status
from tables.spec import HostPaths
from tables.sqlite import Database

SHADOW = """root:$6$salt$abcdefghijklmnop:19700:0:99999:7:::
daemon:*:19700:0:99999:7:::
locked:!$y$j9T$salt$hash:19701:1:90:14:30:20000:
never:!!:19702::::::
empty::19703:0:99999:7:::
short:x
"""


def test_status_and_algorithm() -> None:
    assert password_status("$6$x$y") == "active" and hash_algorithm("$6$x$y") == "sha512"
    assert password_status("!$y$a$b") == "locked" and hash_algorithm("!$y$a$b") == "yescrypt"
    assert password_status("*") == "locked" and password_status("!!") == "not_set"
    assert password_status("") == "empty" and hash_algorithm("abcdefghijklm") == "des"


def test_parse_never_returns_the_hash() -> None:
    rows = parse_shadow(SHADOW)
    assert [r["username"] for r in rows] == ["root", "daemon", "locked", "never", "empty", "short"]
    assert rows[2] == {
        "username": "locked",
        "password_status": "locked",
        "hash_alg": "yescrypt",
        "last_change": 19701,
        "min": 1,
        "max": 90,
        "warning": 14,
        "inactive": 30,
        "expire": 20000,
        "flag": -1,
    }
    assert rows[3]["min"] == -1
    assert all("$" not in str(v) for r in rows for v in r.values())


def test_fixture_and_pushdown(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/shadow").write_text(SHADOW)
    db = Database([shadow.SPEC], paths=HostPaths(root=str(tmp_path)))
    assert db.execute("SELECT password_status FROM shadow WHERE username = 'root'").rows == [("active",)]


def test_live_users_match_passwd_when_root() -> None:
    rows = Database([shadow.SPEC]).execute("SELECT username FROM shadow").rows
    if os.geteuid() != 0:
        assert rows == []
        return
    names = {line.split(":")[0] for line in Path("/etc/shadow").read_text().splitlines() if line}
    assert {r[0] for r in rows} == names
