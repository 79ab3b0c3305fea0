"""suid_bin: setuid/setgid files in a fixture tree, and the live host's sudo-like binaries."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tables import suid_bin
from tables.spec import HostPaths
from tables.sqlite import Database
from tables.suid_bin import permission_flags


def test_permission_flags() -> None:
    assert permission_flags(0o104755) == "S"
    assert permission_flags(0o102755) == "G"
    assert permission_flags(0o106755) == "SG"
    assert permission_flags(0o100755) == ""


def test_fixture_tree(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "etc/group").write_text("root:x:0:\nshadow:x:42:\n")
    bin_dir = tmp_path / "usr/bin"
    (bin_dir / "nested").mkdir(parents=True)
    (tmp_path / "tmp").mkdir()
    files = {
        "usr/bin/su": 0o4755,
        "usr/bin/chage": 0o2755,
        "usr/bin/both": 0o6755,
        "usr/bin/plain": 0o755,
        "usr/bin/nested/deep": 0o4711,
        "tmp/dropped": 0o4777,
    }
    owners = {"usr/bin/chage": (0, 42), "tmp/dropped": (4321, 4321)}
    for rel, mode in files.items():
        path = tmp_path / rel
        path.write_text("#!/bin/sh\n")
        os.chown(path, *owners.get(rel, (0, 0)))  # before chmod: chown clears the setuid bit
        os.chmod(path, mode)
    (tmp_path / "usr/bin/link-to-tmp").symlink_to(tmp_path / "tmp", target_is_directory=True)
    db = Database([suid_bin.SPEC], paths=HostPaths(root=str(tmp_path)))
    rows = db.execute("SELECT path, username, groupname, permissions FROM suid_bin ORDER BY path").rows
    assert rows == [
        ("/tmp/dropped", "4321", "4321", "S"),
        ("/usr/bin/both", "root", "root", "SG"),
        ("/usr/bin/chage", "root", "shadow", "G"),
        ("/usr/bin/nested/deep", "root", "root", "S"),
        ("/usr/bin/su", "root", "root", "S"),
    ]  # plain files and the symlinked directory are not reported


def test_live_rows_are_setuid_or_setgid() -> None:
    rows = Database([suid_bin.SPEC]).execute("SELECT path, permissions FROM suid_bin").rows
    for path, perms in rows:
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            continue  # /tmp is shared with other tests: a file may be gone already
        assert perms == permission_flags(mode) and perms, path
        assert stat.S_ISREG(mode)
