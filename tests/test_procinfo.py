"""eventsources.procinfo: pure /proc parsers on canned text, and snapshots of real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from eventsources.procinfo import (
    ProcessGone,
    cgroup_of,
    container_id_from_cgroup,
    parse_cgroup,
    parse_cmdline,
    parse_stat_times,
    parse_status,
    snapshot,
)

CID = "4f1b2c3d" * 8  # 64 hex digits


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"/docker/{CID}", CID),
        (f"/system.slice/docker-{CID}.scope", CID),
        (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-pod1.slice/cri-containerd-{CID}.scope", CID),
        (f"/kubepods/burstable/pod9/crio-{CID}.scope", CID),
        (f"/machine.slice/libpod-{CID}.scope/container", CID),
        ("/user.slice/user-1000.slice/session-3.scope", None),
        (f"/docker/{CID}0", None),  # 65 hex digits is not an id
        ("/", None),
        (None, None),
    ],
)
def test_container_id_from_cgroup(path: str | None, expected: str | None) -> None:
    assert container_id_from_cgroup(path) == expected


def test_parse_cgroup_prefers_unified_line() -> None:
    text = "4:memory:/mem/x\n1:name=systemd:/sys/x\n0::/system.slice/ssh.service\n"
    assert parse_cgroup(text) == "/system.slice/ssh.service"


def test_parse_cgroup_v1_only_uses_pids_controller() -> None:
    text = f"5:cpu,cpuacct:/cpu/x\n3:pids:/docker/{CID}\n1:name=systemd:/docker/{CID}\n"
    assert parse_cgroup(text) == f"/docker/{CID}"
    assert parse_cgroup("garbage\n") is None


def test_parse_cmdline_joins_args_and_counts_bytes() -> None:
    assert parse_cmdline(b"/bin/echo\0a b\0c\0") == ("/bin/echo a b c", 16)
    assert parse_cmdline(b"") == ("", 0)
    text, size = parse_cmdline(b"x\0\xff\0")
    assert text == "x \ufffd" and size == 4


def test_parse_status_ids_and_parent() -> None:
    text = "Name:\tbash\nPPid:\t42\nUid:\t1000\t1001\t1002\t1003\nGid:\t100\t101\t102\t103\n"
    assert parse_status(text) == {
        "parent": 42,
        "uid": 1000,
        "euid": 1001,
        "suid": 1002,
        "fsuid": 1003,
        "gid": 100,
        "egid": 101,
        "sgid": 102,
        "fsgid": 103,
    }


def test_parse_stat_splits_on_last_paren() -> None:
    fields = ["S", "77"] + [str(i) for i in range(17)] + ["123456"] + ["0"] * 20
    data = b"99 (we (ird) name) " + " ".join(fields).encode()
    assert parse_stat_times(data) == (77, 123456)


def test_snapshot_of_a_real_process(tmp_path) -> None:
    proc = subprocess.Popen(["/bin/sleep", "30"], cwd=tmp_path)
    try:
        # Popen returns once exec began; the new argv appears when exec finishes.
        deadline = time.monotonic() + 10
        row = snapshot(proc.pid)
        while not row["cmdline"] and time.monotonic() < deadline:
            time.sleep(0.01)
            row = snapshot(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert row["pid"] == proc.pid
    assert row["path"] == os.path.realpath("/bin/sleep")
    assert row["cmdline"] == "/bin/sleep 30"
    assert row["cmdline_size"] == len(b"/bin/sleep\x0030\x00")
    assert row["cwd"] == str(tmp_path)
    assert row["parent"] == os.getpid()
    assert (row["uid"], row["euid"], row["gid"], row["egid"]) == (os.getuid(), os.geteuid(), os.getgid(), os.getegid())
    assert row["cgroup_path"] == cgroup_of(os.getpid())[0]


def test_snapshot_of_a_vanished_process_raises() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with pytest.raises(ProcessGone):
        snapshot(proc.pid)
    assert cgroup_of(proc.pid) == (None, None)


def test_cgroup_of_reads_a_proc_tree(tmp_path) -> None:
    (tmp_path / "123").mkdir()
    (tmp_path / "123" / "cgroup").write_text(f"0::/system.slice/docker-{CID}.scope\n")
    assert cgroup_of(123, str(tmp_path)) == (f"/system.slice/docker-{CID}.scope", CID)
    assert cgroup_of(124, str(tmp_path)) == (None, None)
