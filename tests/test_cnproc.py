"""eventsources.cnproc: the binary parser on bytes the test builds, and the live proc connector."""

from __future__ import annotations

import asyncio
import os
import struct
import time
from typing import Any

import pytest

from eventsources.base import SourceUnavailable
from eventsources.cnproc import (
    PROC_EVENT_EXEC,
    PROC_EVENT_EXIT,
    PROC_EVENT_FORK,
    ProcConnectorSource,
    build_listen_message,
    exit_status,
    parse_messages,
)


def _notice(what: int, payload: bytes, ts: int = 5_000_000_000) -> bytes:
    data = struct.pack("=IIQ", what, 0, ts) + payload
    cn = struct.pack("=IIIIHH", 1, 1, 0, 0, len(data), 0) + data
    msg = struct.pack("=IHHII", 16 + len(cn), 3, 0, 0, 0) + cn
    return msg + b"\0" * (-len(msg) % 4)  # the kernel aligns messages to 4 bytes


def test_parse_fork_exec_exit_and_ack() -> None:
    buf = (
        _notice(0, struct.pack("=I", 0))
        + _notice(PROC_EVENT_FORK, struct.pack("=4i", 10, 10, 11, 11))
        + _notice(PROC_EVENT_EXEC, struct.pack("=2i", 11, 11), ts=7_500_000_000)
        + _notice(PROC_EVENT_EXIT, struct.pack("=2iII2i", 11, 11, 3 << 8, 17, 10, 10))
        + _notice(0x200, struct.pack("=2i", 11, 11) + b"comm\0".ljust(16, b"\0"))  # comm: not used
    )
    events, bad = parse_messages(buf)
    assert bad == 0
    assert [(e.kind, e.pid, e.parent) for e in events] == [
        ("ack", 0, 0),
        ("fork", 11, 10),
        ("exec", 11, 0),
        ("exit", 11, 10),
    ]
    assert events[2].timestamp_ns == 7_500_000_000
    assert exit_status(events[3].exit_code) == 3
    assert exit_status(9) == -9


def test_parse_counts_truncated_messages() -> None:
    good = _notice(PROC_EVENT_EXEC, struct.pack("=2i", 5, 5))
    truncated = _notice(PROC_EVENT_EXEC, b"\x01\x00")  # union shorter than an exec notice
    events, bad = parse_messages(truncated + good)
    assert [e.pid for e in events] == [5] and bad == 1
    events, bad = parse_messages(good[:-4] + b"")  # nlmsg length runs past the datagram
    assert events == [] and bad == 1


def test_listen_message_layout() -> None:
    msg = build_listen_message()
    length, typ = struct.unpack_from("=IH", msg)
    assert length == len(msg) == 16 + 20 + 4 and typ == 3
    assert struct.unpack_from("=I", msg, 36) == (1,)


async def _wait_for(rows: list[dict[str, Any]], pred, seconds: float = 10.0) -> dict[str, Any] | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for row in rows:
            if pred(row):
                return row
        await asyncio.sleep(0.01)
    return None


async def _started(source: ProcConnectorSource) -> ProcConnectorSource:
    try:
        await source.start()
    except SourceUnavailable as exc:
        pytest.skip(f"the kernel refused the proc connector: {exc}")
    return source


async def test_live_exec_of_bin_true_with_args(tmp_path) -> None:
    """Every exec of a short-lived /bin/true gives a row; whatever /proc gave for it is right.

    /bin/true may exit before /proc is read (the proc connector carries pids only), so
    whether a row has the details is a race; the test must not depend on winning it.
    What it checks holds either way: a row per exec with pid and parent, and a row that
    has a path was read whole from the live process (the path is read last).
    """
    rows: list[dict[str, Any]] = []
    source = await _started(ProcConnectorSource(lambda table, row: rows.append(dict(row, table=table))))
    try:
        assert source.status().mode == "active"
        for _ in range(5):
            # The shell forks and execs /bin/true while this event loop is idle (spawning it
            # directly would block the loop in fork/exec for most of true's short life).
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                '/bin/true "cn proc" "arg two" & echo $!; wait',
                cwd=tmp_path,
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await proc.communicate()
            shell, child = proc.pid, int(out)

            def is_true(r: dict[str, Any], child: int = child) -> bool:
                return r["pid"] == child and r["syscall"] == "execve"

            row = await _wait_for(rows, is_true)
            assert row is not None, f"no process_events row for /bin/true (pid {child})"
            assert row["table"] == "process_events"
            assert row["parent"] == shell
            assert isinstance(row["time"], int) and isinstance(row["uptime"], int)
            if row.get("path"):  # read in time: then all of it is /bin/true's
                assert row["path"] == os.path.realpath("/bin/true")
                assert row["mode"] == f"{os.stat(row['path']).st_mode:07o}"
                assert row["cmdline"] == "/bin/true cn proc arg two"
                assert row["cwd"] == str(tmp_path)
                assert row["uid"] == os.getuid() and row["euid"] == os.geteuid()
            else:  # exited before its executable was read: whatever was read is this image's
                assert row.get("cmdline") in (None, "", "/bin/true cn proc arg two") and row.get("mode") is None
        assert source.status().events_seen >= 5
    finally:
        await source.stop()
    await source.stop()  # idempotent
    assert source.status().mode == "stopped"


async def test_live_exec_with_args_gives_full_details(tmp_path) -> None:
    """A process that waits for the test: its row carries path, mode, cmdline, cwd, ids and parent."""
    rows: list[dict[str, Any]] = []
    source = await _started(ProcConnectorSource(lambda table, row: rows.append(dict(row, table=table))))
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", "read line", "cn proc", "arg two", cwd=tmp_path, stdin=asyncio.subprocess.PIPE
    )
    try:
        row = await _wait_for(rows, lambda r: r["pid"] == proc.pid and r["syscall"] == "execve")
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        await proc.wait()
        await source.stop()
    assert row is not None, f"no process_events row for /bin/sh (pid {proc.pid})"
    assert row["path"] == os.path.realpath("/bin/sh")
    assert row["mode"] == f"{os.stat(row['path']).st_mode:07o}"
    assert row["cmdline"] == "/bin/sh -c read line cn proc arg two"
    assert row["cwd"] == str(tmp_path)
    assert row["parent"] == os.getpid()
    assert (row["uid"], row["euid"], row["gid"], row["egid"]) == (os.getuid(), os.geteuid(), os.getgid(), os.getegid())


async def test_cgroup_and_container_id_read_at_exec_time(cgroup_child) -> None:
    rows: list[dict[str, Any]] = []
    source = await _started(ProcConnectorSource(lambda t, r: rows.append(r)))
    sleeper = await asyncio.create_subprocess_exec(*cgroup_child.enter_and_exec("/bin/sleep", "30"))
    try:
        row = await _wait_for(
            rows, lambda r: r["pid"] == sleeper.pid and r.get("path") == os.path.realpath("/bin/sleep")
        )
        assert row is not None, f"no process_events row for sleep (pid {sleeper.pid})"
        assert (row["cgroup_path"], row["container_id"]) == (cgroup_child.path, cgroup_child.container_id)
    finally:
        sleeper.kill()
        await sleeper.wait()
        await source.stop()


async def test_live_fork_and_exit_rows() -> None:
    rows: list[dict[str, Any]] = []
    source = await _started(ProcConnectorSource(lambda t, r: rows.append(r), fork_events=True, exit_events=True))
    try:
        proc = await asyncio.create_subprocess_exec("/bin/sh", "-c", "exit 3")
        await proc.wait()
        exit_row = await _wait_for(rows, lambda r: r["pid"] == proc.pid and r["syscall"] == "exit")
        assert exit_row is not None and exit_row["status"] == 3 and exit_row["parent"] == os.getpid()
        fork_row = next(r for r in rows if r["pid"] == proc.pid and r["syscall"] == "fork")
        assert fork_row["parent"] == os.getpid()
    finally:
        await source.stop()


async def test_stop_before_start_is_harmless() -> None:
    source = ProcConnectorSource(lambda t, r: None)
    await source.stop()
    assert source.status().mode == "inactive"
