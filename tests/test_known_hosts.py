"""known_hosts: per-user known_hosts lines in a fixture tree."""

from __future__ import annotations

from pathlib import Path

from tables import known_hosts
from tables.known_hosts import parse_known_hosts
from tables.spec import HostPaths
from tables.sqlite import Database


def test_parse() -> None:
    assert parse_known_hosts("# c\n\n|1|abc=|def= ssh-ed25519 AAAA\ngithub.com ssh-rsa BBBB\n") == [
        "|1|abc=|def= ssh-ed25519 AAAA",
        "github.com ssh-rsa BBBB",
    ]


def test_fixture(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("bob:x:1001:1001::/home/bob:/bin/sh\n")
    (tmp_path / "home/bob/.ssh").mkdir(parents=True)
    (tmp_path / "home/bob/.ssh/known_hosts").write_text("example.org ssh-ed25519 AAAA\n")
    db = Database([known_hosts.SPEC], paths=HostPaths(root=str(tmp_path)))
    assert db.execute("SELECT * FROM known_hosts WHERE uid = 1001").rows == [
        (1001, "example.org ssh-ed25519 AAAA", "/home/bob/.ssh/known_hosts")
    ]
    assert db.execute("SELECT * FROM known_hosts WHERE uid = 0").rows == []
