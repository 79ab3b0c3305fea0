"""authorized_keys: options, comments and per-user files in a fixture tree."""

from __future__ import annotations

from pathlib import Path

from tables import authorized_keys
from tables.authorized_keys import parse_authorized_keys
from tables.spec import HostPaths
from tables.sqlite import Database

KEYS = """# comment
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKey1 alice@laptop
from="10.0.0.1,192.0.2.*",no-pty,command="echo hi there" ssh-rsa AAAAB3NzaC1yc2EAAAFakeKey2 backup key
ecdsa-sha2-nistp256 AAAAE2VjZHNhFakeKey3
not a key line at all
"""


def test_parse() -> None:
    rows = parse_authorized_keys(KEYS)
    assert rows == [
        {
            "algorithm": "ssh-ed25519",
            "key": "AAAAC3NzaC1lZDI1NTE5AAAAIFakeKey1",
            "options": "",
            "comment": "alice@laptop",
        },
        {
            "algorithm": "ssh-rsa",
            "key": "AAAAB3NzaC1yc2EAAAFakeKey2",
            "options": 'from="10.0.0.1,192.0.2.*",no-pty,command="echo hi there"',
            "comment": "backup key",
        },
        {"algorithm": "ecdsa-sha2-nistp256", "key": "AAAAE2VjZHNhFakeKey3", "options": "", "comment": ""},
    ]


def test_fixture_homes(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n")
    (tmp_path / "home/alice/.ssh").mkdir(parents=True)
    (tmp_path / "home/alice/.ssh/authorized_keys").write_text(KEYS)
    (tmp_path / "root/.ssh").mkdir(parents=True)
    (tmp_path / "root/.ssh/authorized_keys2").write_text("ssh-ed25519 AAAARootKey root@host\n")
    db = Database([authorized_keys.SPEC], paths=HostPaths(root=str(tmp_path)))
    rows = db.execute("SELECT uid, algorithm, key_file FROM authorized_keys").rows
    assert rows == [(0, "ssh-ed25519", "/root/.ssh/authorized_keys2")] + [
        (1000, alg, "/home/alice/.ssh/authorized_keys") for alg in ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256")
    ]
    assert db.execute("SELECT count(*) FROM authorized_keys WHERE uid = 0").rows == [(1,)]
