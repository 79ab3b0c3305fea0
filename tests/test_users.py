"""users: against getent/pwd on the live host, pushdown, and a fixture tree."""

from __future__ import annotations

import os
import pwd
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from tables import users
from tables.spec import HostPaths, QueryContext
from tables.sqlite import Database


@pytest.fixture(scope="module")
def db() -> Database:
    return Database([users.SPEC])


def test_matches_getent_passwd(db: Database) -> None:
    out = subprocess.run(["getent", "passwd"], capture_output=True, text=True, check=True).stdout
    local = {line.split(":")[0] for line in Path("/etc/passwd").read_text().splitlines() if line and line[0] != "#"}
    expected = {}
    for line in out.splitlines():
        f = line.split(":")
        if f[0] in local:
            expected[f[0]] = (int(f[2]), int(f[3]), f[4], f[5], f[6])
    rows = db.execute("SELECT username, uid, gid, description, directory, shell FROM users").rows
    assert {r[0]: tuple(r[1:]) for r in rows} == expected
    for name, uid, *_ in rows:
        assert pwd.getpwnam(name).pw_uid == uid


def test_uid_and_username_pushdown(db: Database) -> None:
    seen = []
    original = users.SPEC.generate

    def spy(context: QueryContext):
        seen.append(dict(context.constraints))
        return original(context)

    db2 = Database([replace(users.SPEC, generate=spy)])
    assert db2.execute("SELECT username FROM users WHERE uid = 0").rows == [("root",)]
    assert seen[-1] == {"uid": frozenset({0})}
    assert db2.execute("SELECT uid FROM users WHERE username IN ('root', 'nobody-here')").rows == [(0,)]
    assert seen[-1] == {"username": frozenset({"root", "nobody-here"})}


def test_fixture_signed_ids_and_uuid(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\nnfsnobody:x:4294967294:4294967294:NFS:/var/lib/nfs:/sbin/nologin\n"
    )
    db = Database([users.SPEC], paths=HostPaths(root=str(tmp_path)))
    rows = db.execute("SELECT username, uid, uid_signed, gid_signed, uuid FROM users ORDER BY uid").rows
    assert rows == [("root", 0, 0, 0, ""), ("nfsnobody", 4294967294, -2, -2, "")]
    assert db.execute("SELECT count(*) FROM users WHERE uid = 4294967294").rows == [(1,)]


def test_missing_passwd_is_empty(tmp_path: Path) -> None:
    db = Database([users.SPEC], paths=HostPaths(root=str(tmp_path)))
    assert db.execute("SELECT * FROM users").rows == []


def test_include_remote_uses_nss(db: Database) -> None:
    rows = db.execute("SELECT username, include_remote FROM users WHERE include_remote = 1").rows
    assert {r[0] for r in rows} == {p.pw_name for p in pwd.getpwall()}
    assert {r[1] for r in rows} == {1}


def test_pid_with_namespace_reads_that_process_root(db: Database) -> None:
    rows = db.execute(
        "SELECT username, pid_with_namespace FROM users WHERE pid_with_namespace = ?", (os.getpid(),)
    ).rows
    assert ("root", os.getpid()) in rows
