"""dns_resolvers: resolv.conf parsing and the live file."""

from __future__ import annotations

from pathlib import Path

from tables import dns_resolvers
from tables.dns_resolvers import parse_resolv_conf, resolver_options
from tables.sqlite import Database

RESOLV = """# generated
nameserver 192.0.2.53
nameserver 2001:db8::53
nameserver 192.0.2.54
nameserver 192.0.2.55
domain old.example
search corp.example lab.example
sortlist 130.155.160.0/255.255.240.0 130.155.0.0
options rotate edns0 ndots:2
"""


def test_parse() -> None:
    rows = parse_resolv_conf(RESOLV)
    opts = resolver_options(["rotate", "edns0", "ndots:2"])
    assert opts == 705 | 0x4000 | 0x100000
    assert [(r["id"], r["type"], r["address"], r["netmask"]) for r in rows] == [
        (0, "nameserver", "192.0.2.53", "32"),
        (1, "nameserver", "2001:db8::53", "128"),
        (2, "nameserver", "192.0.2.54", "32"),  # glibc reads three nameservers at most
        (0, "search", "corp.example", None),
        (1, "search", "lab.example", None),
        (0, "sortlist", "130.155.160.0", "255.255.240.0"),
        (1, "sortlist", "130.155.0.0", ""),
    ]
    assert {r["options"] for r in rows} == {opts}


def test_live() -> None:
    rows = Database([dns_resolvers.SPEC]).execute("SELECT address FROM dns_resolvers WHERE type = 'nameserver'").rows
    text = Path("/etc/resolv.conf").read_text() if Path("/etc/resolv.conf").exists() else ""
    expected = [line.split()[1] for line in text.splitlines() if line.startswith("nameserver")][:3]
    assert [r[0] for r in rows] == expected
