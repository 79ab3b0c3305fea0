"""process_memory_map: maps parsing on canned text and the live mapping of this process."""

from __future__ import annotations

import os
import sys

from tables import process_memory_map
from tables.process_memory_map import parse_maps
from tables.sqlite import Database

MAPS = b"""55d0c4a00000-55d0c4a28000 r--p 00000000 fd:01 1310767                    /usr/bin/bash
55d0c4a28000-55d0c4b0a000 r-xp 00028000 fd:01 1310767                    /usr/bin/bash
55d0c5e9e000-55d0c6000000 rw-p 00000000 00:00 0                          [heap]
7f2a1c000000-7f2a1c021000 rw-p 00000000 00:00 0
7ffd2b1f2000-7ffd2b213000 rw-p 00000000 00:00 0                          [stack]
7f2a1d000000-7f2a1d001000 r--p 00000000 fd:01 42                         /tmp/a file with spaces
garbage line
"""


def test_parse_maps() -> None:
    rows = parse_maps(MAPS)
    assert len(rows) == 6
    assert rows[0] == {
        "start": "0x55d0c4a00000",
        "end": "0x55d0c4a28000",
        "permissions": "r--p",
        "offset": 0,
        "device": "fd:01",
        "inode": 1310767,
        "path": "/usr/bin/bash",
        "pseudo": 0,
    }
    assert rows[1]["offset"] == 0x28000
    assert rows[2]["path"] == "[heap]" and rows[2]["pseudo"] == 1
    assert rows[3]["path"] == "" and rows[3]["pseudo"] == 0  # anonymous mapping
    assert rows[5]["path"] == "/tmp/a file with spaces"


def test_live_self() -> None:
    rows = (
        Database([process_memory_map.SPEC])
        .execute("SELECT pid, path, pseudo FROM process_memory_map WHERE pid = ?", (os.getpid(),))
        .dicts()
    )
    paths = {r["path"] for r in rows}
    assert {r["pid"] for r in rows} == {os.getpid()}
    assert os.path.realpath(sys.executable) in paths
    assert "[stack]" in paths
    assert any(r["pseudo"] == 1 for r in rows if r["path"] == "[stack]")
