"""etc_services: canned services(5) text and the live file."""

from __future__ import annotations

from pathlib import Path

from tables import etc_services
from tables.etc_services import parse_services
from tables.sqlite import Database


def test_parse_services() -> None:
    text = "# header\nssh\t\t22/tcp\t\t\t\t# SSH Remote Login Protocol\nwww 80/tcp http   # WWW\nbad line\nx abc/tcp\n"
    assert parse_services(text) == [
        {"name": "ssh", "port": 22, "protocol": "tcp", "aliases": "", "comment": "SSH Remote Login Protocol"},
        {"name": "www", "port": 80, "protocol": "tcp", "aliases": "http", "comment": "WWW"},
    ]


def test_live() -> None:
    rows = Database([etc_services.SPEC]).execute("SELECT name FROM etc_services WHERE port = 22").rows
    if Path("/etc/services").exists() and "22/tcp" in Path("/etc/services").read_text():
        assert ("ssh",) in rows
    else:
        assert rows == []
