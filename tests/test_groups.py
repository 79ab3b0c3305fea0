"""groups: against getent group on the live host, and a fixture tree."""

from __future__ import annotations

import grp
import subprocess
from pathlib import Path

from tables import groups
from tables.spec import HostPaths
from tables.sqlite import Database


def test_matches_getent_group() -> None:
    out = subprocess.run(["getent", "group"], capture_output=True, text=True, check=True).stdout
    local = {line.split(":")[0] for line in Path("/etc/group").read_text().splitlines() if line and line[0] != "#"}
    expected = {(f[0], int(f[2])) for f in (line.split(":") for line in out.splitlines()) if f[0] in local}
    rows = Database([groups.SPEC]).execute("SELECT groupname, gid FROM groups").rows
    assert set(rows) == expected
    for name, gid in rows:
        assert grp.getgrgid(gid).gr_gid == gid
        assert grp.getgrnam(name).gr_gid == gid


def test_fixture_dedup_signed_and_pushdown(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/group").write_text("# groups\nroot:x:0:\nwheel:x:10:alice\nalias:x:10:\nnogroup:x:4294967294:\n\n")
    db = Database([groups.SPEC], paths=HostPaths(root=str(tmp_path)))
    assert db.execute("SELECT gid, gid_signed, groupname FROM groups ORDER BY gid").rows == [
        (0, 0, "root"),
        (10, 10, "wheel"),  # the first entry for a gid wins, as in osquery
        (4294967294, -2, "nogroup"),
    ]
    assert db.execute("SELECT groupname FROM groups WHERE gid IN (0, 10)").rows == [("root",), ("wheel",)]
