"""process_open_files: a child process with a known open file, and pid pushdown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tables import process_open_files
from tables.spec import HostPaths
from tables.sqlite import Database


@pytest.fixture
def child(tmp_path: Path):
    target = tmp_path / "held-open.txt"
    target.write_text("x")
    code = (
        "import os, socket, sys, time\n"
        f"f = open({str(target)!r})\n"
        "s = socket.socket()\n"
        "r, w = os.pipe()\n"
        "e = os.eventfd(0)\n"
        "print(f.fileno(), flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    fd = int(proc.stdout.readline())
    yield proc.pid, fd, str(target)
    proc.kill()
    proc.wait()


def test_child_open_file_is_listed(child) -> None:
    pid, fd, target = child
    rows = (
        Database([process_open_files.SPEC])
        .execute("SELECT pid, fd, path FROM process_open_files WHERE pid = ?", (pid,))
        .rows
    )
    assert (pid, fd, target) in rows
    assert {r[0] for r in rows} == {pid}  # pushdown: only that process
    assert all(isinstance(r[1], int) for r in rows)


def test_own_descriptors_match_proc(child) -> None:
    me = os.getpid()
    rows = Database([process_open_files.SPEC]).execute("SELECT fd FROM process_open_files WHERE pid = ?", (me,)).rows
    # every descriptor listed was open at the time; fd 0..2 are always there under pytest
    assert {0, 1, 2} <= {r[0] for r in rows}


def test_vanished_pid_gives_no_rows() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    rows = (
        Database([process_open_files.SPEC]).execute("SELECT * FROM process_open_files WHERE pid = ?", (proc.pid,)).rows
    )
    assert rows == []


def test_fixture_tree_symlinks(tmp_path: Path) -> None:
    fd_dir = tmp_path / "proc" / "42" / "fd"
    fd_dir.mkdir(parents=True)
    (fd_dir / "3").symlink_to("/var/log/syslog")
    (fd_dir / "7").symlink_to("socket:[12345]")
    (fd_dir / "8").symlink_to("/tmp/socket:[1] pipe:[2]")  # a file whose name merely looks like one
    (fd_dir / "9").write_text("not a link")  # unreadable as a link: skipped
    db = Database([process_open_files.SPEC], paths=HostPaths(proc=str(tmp_path / "proc")))
    assert db.execute("SELECT pid, fd, path FROM process_open_files").rows == [
        (42, 3, "/var/log/syslog"),
        (42, 8, "/tmp/socket:[1] pipe:[2]"),
    ]


def test_sockets_pipes_and_anon_inodes_are_left_out(child) -> None:
    """A live process holding a socket, a pipe, an eventfd and a file: only the file is listed (osquery)."""
    pid, fd, target = child
    links = {int(n): os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")}
    assert any(link.startswith("socket:[") for link in links.values())
    assert any(link.startswith("pipe:[") for link in links.values())
    assert any(link.startswith("anon_inode:") for link in links.values())
    rows = Database([process_open_files.SPEC]).execute("SELECT fd, path FROM process_open_files WHERE pid = ?", (pid,))
    assert (fd, target) in rows.rows
    assert dict(rows.rows) == {
        n: link for n, link in links.items() if not link.startswith(("socket:[", "pipe:[", "anon_inode:"))
    }
