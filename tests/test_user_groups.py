"""user_groups: primary and supplementary groups, against os.getgrouplist on the live host."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from tables import user_groups
from tables._accounts import GroupEntry, PasswdEntry
from tables.spec import HostPaths
from tables.sqlite import Database


def test_memberships_primary_first_no_duplicates() -> None:
    users = [PasswdEntry("alice", 1000, 1000, "", "/home/alice", "/bin/sh"), PasswdEntry("bob", 1001, 100, "", "", "")]
    groups = [
        GroupEntry("alice", 1000, ("alice",)),
        GroupEntry("sudo", 27, ("alice", "carol")),
        GroupEntry("users", 100, ("bob",)),
    ]
    assert user_groups.memberships(users, groups) == [(1000, 1000), (1000, 27), (1001, 100)]


def test_matches_getgrouplist_on_live_host() -> None:
    db = Database([user_groups.SPEC])
    local = {line.split(":")[0] for line in Path("/etc/passwd").read_text().splitlines() if line and line[0] != "#"}
    uids = [pwd.getpwnam(name).pw_uid for name in local]
    for name in sorted(local):
        pw = pwd.getpwnam(name)
        got = {r[0] for r in db.execute("SELECT gid FROM user_groups WHERE uid = ?", (pw.pw_uid,)).rows}
        expected = set(os.getgrouplist(name, pw.pw_gid))
        if uids.count(pw.pw_uid) == 1:
            assert got == expected, name
        else:  # a uid shared by several names lists the groups of all of them
            assert expected <= got, name


def test_fixture_query_by_gid(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("alice:x:1000:1000::/home/alice:/bin/sh\nbob:x:1001:1001::/:/bin/sh\n")
    (tmp_path / "etc/group").write_text("alice:x:1000:\nbob:x:1001:\ndocker:x:999:bob,alice\n")
    db = Database([user_groups.SPEC], paths=HostPaths(root=str(tmp_path)))
    assert db.execute("SELECT uid FROM user_groups WHERE gid = 999 ORDER BY uid").rows == [(1000,), (1001,)]
    assert db.execute("SELECT gid FROM user_groups WHERE uid = 1001").rows == [(1001,), (999,)]
