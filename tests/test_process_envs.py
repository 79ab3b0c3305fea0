"""process_envs: environ parsing, a child with a known environment, pid pushdown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tables import process_envs
from tables.process_envs import parse_environ
from tables.spec import HostPaths
from tables.sqlite import Database


def test_parse_environ() -> None:
    data = b"PATH=/usr/bin:/bin\0EMPTY=\0WEIRD=a=b\0NOEQUALS\0\0"
    assert parse_environ(data) == [("PATH", "/usr/bin:/bin"), ("EMPTY", ""), ("WEIRD", "a=b"), ("NOEQUALS", "")]
    assert parse_environ(b"") == []


def test_child_environment() -> None:
    env = {"AGENT_TEST_MARK": "hello world", "PATH": os.environ.get("PATH", "/usr/bin")}
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    try:
        rows = (
            Database([process_envs.SPEC])
            .execute("SELECT pid, key, value FROM process_envs WHERE pid = ?", (proc.pid,))
            .rows
        )
    finally:
        proc.kill()
        proc.wait()
    assert (proc.pid, "AGENT_TEST_MARK", "hello world") in rows
    assert {r[0] for r in rows} == {proc.pid}


def test_fixture_tree(tmp_path: Path) -> None:
    for pid, environ in ((10, b"A=1\0B=2\0"), (11, b"C=3\0")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "environ").write_bytes(environ)
    (tmp_path / "12").mkdir()  # no environ file: the process vanished
    db = Database([process_envs.SPEC], paths=HostPaths(proc=str(tmp_path)))
    assert db.execute("SELECT * FROM process_envs").rows == [(10, "A", "1"), (10, "B", "2"), (11, "C", "3")]
    assert db.execute("SELECT key FROM process_envs WHERE pid IN (11, 99)").rows == [("C",)]
