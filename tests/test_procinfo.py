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
    parse_stat_times,
    snapshot,
)

CID = "4f1b2c3d" * 8  # 64 hex digits


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


# ---------------------------------------------------------------------------
# One parser per fact: processes and process_events read a process the same way
# ---------------------------------------------------------------------------

V1 = (
    f"13:misc:/\n12:pids:/docker/{CID}\n11:cpu,cpuacct:/docker/{CID}\n"
    f"4:memory:/docker/{CID}\n1:name=systemd:/docker/{CID}\n"
).encode()
V2 = b"0::/system.slice/ssh.service\n"
HYBRID = b"9:name=systemd:/user.slice\n8:pids:/user.slice/user-0.slice\n0::/user.slice/session-4.scope\n"


def _fake_process(root, pid: int, cgroup: bytes, cmdline: bytes, exe: str, cwd: str) -> None:
    d = root / str(pid)
    d.mkdir()
    d.joinpath("stat").write_bytes(
        f"{pid} (fake) S 1 {pid} {pid} 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 100 4096 2 0\n".encode()
    )
    d.joinpath("status").write_bytes(b"Name:\tfake\nPPid:\t1\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n")
    d.joinpath("cgroup").write_bytes(cgroup)
    d.joinpath("cmdline").write_bytes(cmdline)
    os.symlink(exe, d / "exe")
    os.symlink(cwd, d / "cwd")


def test_processes_and_process_events_agree_on_cgroup_and_cmdline(tmp_path) -> None:
    from eventsources.audit.source import AuditSource
    from tables import processes
    from tables.spec import HostPaths
    from tables.sqlite import Database

    root = tmp_path / "proc"
    root.mkdir()
    root.joinpath("stat").write_bytes(b"btime 1700000000\n")
    cases = {
        101: (V1, b"/bin/sleep\x00300\x00"),
        102: (V2, b"  /usr/sbin/sshd\x00-D\x00\x00 \x00"),  # blanks and empty args at the ends
        103: (HYBRID, b"bash\x00-c\x00echo \xff\x00"),  # a byte that is not UTF-8
    }
    for pid, (cgroup, cmdline) in cases.items():
        _fake_process(root, pid, cgroup, cmdline, exe=sys.executable, cwd=str(tmp_path))
    db = Database([processes.SPEC], paths=HostPaths(proc=str(root)))
    table = {r["pid"]: r for r in db.execute("SELECT pid, cgroup_path, cmdline, path, cwd FROM processes").dicts()}
    audit_cgroup_of = AuditSource(lambda table, row: None, proc_root=str(root))._cgroup_of
    expected_cgroups = {101: f"/docker/{CID}", 102: "/system.slice/ssh.service", 103: "/user.slice/session-4.scope"}
    for pid in cases:
        event = snapshot(pid, str(root))
        assert table[pid]["cgroup_path"] == event["cgroup_path"] == expected_cgroups[pid]
        assert audit_cgroup_of(pid, str(root))[0] == event["cgroup_path"]
        # the event row holds host text; SQL shows it with tables.text's escapes
        from tables.text import to_sql

        assert table[pid]["cmdline"] == to_sql(event["cmdline"])
        assert (table[pid]["path"], table[pid]["cwd"]) == (event["path"], event["cwd"])
    assert snapshot(101, str(root))["container_id"] == CID
    assert table[102]["cmdline"] == "/usr/sbin/sshd -D"
    assert table[103]["cmdline"] == "bash -c echo \\xFF"
    assert snapshot(102, str(root))["cmdline_size"] == len(cases[102][1])
