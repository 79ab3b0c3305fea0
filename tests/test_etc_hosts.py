"""etc_hosts: canned text (comments, IPv6, tabs) and the live /etc/hosts."""

from __future__ import annotations

import socket
from pathlib import Path

from tables import etc_hosts
from tables.etc_hosts import parse_hosts
from tables.spec import HostPaths
from tables.sqlite import Database

HOSTS = """# The following lines are desirable for IPv4 capable hosts
127.0.0.1       localhost
127.0.1.1\tweb1.example.org web1   # trailing comment

::1     localhost ip6-localhost ip6-loopback
fe80::1%eth0 router6
192.0.2.1
198.51.100.7   # an address and a comment
  # an indented comment
"""


def test_parse_hosts() -> None:
    assert parse_hosts(HOSTS) == [
        ("127.0.0.1", ["localhost"]),
        ("127.0.1.1", ["web1.example.org", "web1"]),
        ("::1", ["localhost", "ip6-localhost", "ip6-loopback"]),
        ("fe80::1%eth0", ["router6"]),
        ("192.0.2.1", []),  # osquery returns an address without names, with empty hostnames
        ("198.51.100.7", []),
    ]


def test_fixture_table(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/hosts").write_text(HOSTS)
    db = Database([etc_hosts.SPEC], paths=HostPaths(root=str(tmp_path)))
    assert db.execute("SELECT hostnames FROM etc_hosts WHERE address = '::1'").rows == [
        ("localhost ip6-localhost ip6-loopback",)
    ]
    assert db.execute("SELECT hostnames FROM etc_hosts WHERE address = '192.0.2.1'").rows == [("",)]


def test_live_hosts_resolve_like_libc() -> None:
    rows = Database([etc_hosts.SPEC]).execute("SELECT address, hostnames FROM etc_hosts").rows
    assert rows, "/etc/hosts has no entries"
    for address, names in rows:
        if ":" in address:
            continue
        for name in names.split():
            resolved = {ai[4][0] for ai in socket.getaddrinfo(name, None, socket.AF_INET)}
            assert address in resolved, (name, address, resolved)
