"""eventsources.procpoll: new processes found by polling the real /proc and a /proc tree the test writes."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from eventsources.procpoll import ProcPollSource


def _fake_process(root: Path, pid: int, start: int, cmdline: bytes) -> None:
    d = root / str(pid)
    d.mkdir()
    stat = f"{pid} (x y) S 1 " + " ".join(["0"] * 17) + f" {start} " + " ".join(["0"] * 20)
    (d / "stat").write_text(stat)
    (d / "status").write_text("Name:\tx\nPPid:\t1\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n")
    (d / "cmdline").write_bytes(cmdline)
    (d / "cgroup").write_text("0::/\n")


async def test_poll_once_on_a_written_proc_tree(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text("btime 1700000000\n")
    _fake_process(tmp_path, 10, 100, b"old\0")
    rows: list[dict[str, Any]] = []
    source = ProcPollSource(lambda t, r: rows.append(r), interval=3600, proc_root=str(tmp_path))
    await source.start()
    try:
        assert source.poll_once() == 0  # the baseline gives no rows
        _fake_process(tmp_path, 11, 250, b"new\0arg\0")
        assert source.poll_once() == 1
        assert source.poll_once() == 0  # seen once, reported once
    finally:
        await source.stop()
    (row,) = rows
    assert (row["pid"], row["cmdline"], row["parent"], row["syscall"]) == (11, "new arg", 1, "execve")
    clk = os.sysconf("SC_CLK_TCK")
    assert row["uptime"] == int(250 / clk) and row["time"] == int(1700000000 + 250 / clk)
    assert row["path"] is None  # no exe link in the written tree
    status = source.status()
    assert status.events_seen == 1 and status.extra["polls"] == 3 and status.mode == "stopped"


async def test_polling_sees_a_process_that_lives_long_enough(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = []
    source = ProcPollSource(lambda t, r: rows.append(r), interval=0.05)
    await source.start()
    try:
        sleep = os.path.realpath("/bin/sleep")
        proc = await asyncio.create_subprocess_exec("/bin/sleep", "1", cwd=tmp_path)
        deadline = time.monotonic() + 10
        row = None
        while row is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            # (a poll between fork and exec reports python first, then sleep at the next poll)
            row = next((r for r in rows if r["pid"] == proc.pid and r["path"] == sleep), None)
        await proc.wait()
    finally:
        await source.stop()
    assert row is not None, "polling did not report a process that lived 1 s"
    assert row["cmdline"] == "/bin/sleep 1"
    assert row["parent"] == os.getpid()
    assert row["cwd"] == str(tmp_path)
    assert row["mode"] == f"{os.stat(sleep).st_mode:07o}" and row["owner_uid"] == os.stat(sleep).st_uid
    assert abs(row["time"] - time.time()) < 3600  # a real wall-clock time, not ticks


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval"):
        ProcPollSource(lambda t, r: None, interval=0)


async def test_a_process_that_execs_after_it_was_first_seen_is_reported_again(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text("btime 1700000000\n")
    rows: list[dict[str, Any]] = []
    source = ProcPollSource(lambda t, r: rows.append(r), interval=3600, proc_root=str(tmp_path))
    await source.start()
    try:
        _fake_process(tmp_path, 20, 500, b"/bin/sh\0")
        (tmp_path / "20" / "exe").symlink_to("/bin/sh")
        assert source.poll_once() == 1  # seen between fork and exec: still the parent's image
        (tmp_path / "20" / "exe").unlink()
        (tmp_path / "20" / "exe").symlink_to("/bin/ls")
        (tmp_path / "20" / "cmdline").write_bytes(b"ls\0-l\0")
        assert source.poll_once() == 1  # the exec is noticed at the next poll
        assert source.poll_once() == 0  # and only once
    finally:
        await source.stop()
    assert [(r["path"], r["cmdline"]) for r in rows] == [("/bin/sh", "/bin/sh"), ("/bin/ls", "ls -l")]


async def test_a_binary_deleted_after_it_was_first_seen_is_not_a_new_exec(tmp_path: Path) -> None:
    """The kernel's " (deleted)" suffix is not a new image: one row, with the path as the tables show it."""
    binary = tmp_path / "tool"
    binary.write_bytes(b"x")
    root = tmp_path / "proc"
    root.mkdir()
    (root / "stat").write_text("btime 1700000000\n")
    rows: list[dict[str, Any]] = []
    source = ProcPollSource(lambda t, r: rows.append(r), interval=3600, proc_root=str(root))
    await source.start()
    try:
        _fake_process(root, 12, 300, b"tool\0")
        os.symlink(binary, root / "12" / "exe")
        assert source.poll_once() == 1
        (root / "12" / "exe").unlink()
        os.symlink(f"{binary} (deleted)", root / "12" / "exe")  # what /proc shows once it is unlinked
        binary.unlink()
        assert source.poll_once() == 0
    finally:
        await source.stop()
    assert [(r["pid"], r["path"]) for r in rows] == [(12, str(binary))]
