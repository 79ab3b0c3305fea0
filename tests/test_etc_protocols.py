"""etc_protocols: canned protocols(5) text and the live file."""

from __future__ import annotations

import socket
from pathlib import Path

from tables import etc_protocols
from tables.etc_protocols import parse_protocols
from tables.sqlite import Database


def test_parse_protocols() -> None:
    text = "# comment\ntcp\t6\tTCP\t\t# transmission control protocol\nudp 17\nbad\nx y\n"
    assert parse_protocols(text) == [
        {"name": "tcp", "number": 6, "alias": "TCP", "comment": "transmission control protocol"},
        {"name": "udp", "number": 17, "alias": "", "comment": ""},
    ]


def test_live_matches_libc() -> None:
    if not Path("/etc/protocols").exists():
        assert Database([etc_protocols.SPEC]).execute("SELECT * FROM etc_protocols").rows == []
        return
    rows = dict(Database([etc_protocols.SPEC]).execute("SELECT name, number FROM etc_protocols").rows)
    assert rows["tcp"] == socket.getprotobyname("tcp")
