"""tables.procfs: pure parsers on canned /proc text, and the readers on real /proc."""

from __future__ import annotations

import os
import time

import psutil
import pytest

from tables import procfs as pf

STAT_TRICKY = (
    b"4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 125 0 0 0 7 3 0 0 20 5 2 0 "
    b"1234 8192000 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
)


def test_parse_stat_splits_on_last_paren():
    name, f = pf.parse_stat(STAT_TRICKY)
    assert name == "a) b (c)"
    assert f[pf.STAT_STATE] == b"S"
    assert int(f[pf.STAT_PPID]) == 1
    assert int(f[pf.STAT_PGRP]) == 4242
    assert int(f[pf.STAT_UTIME]) == 7
    assert int(f[pf.STAT_STIME]) == 3
    assert int(f[pf.STAT_NICE]) == 5
    assert int(f[pf.STAT_NUM_THREADS]) == 2
    assert int(f[pf.STAT_STARTTIME]) == 1234
    assert int(f[pf.STAT_VSIZE]) == 8192000
    assert int(f[pf.STAT_RSS]) == 300


def test_parse_stat_spaces_and_empty_comm():
    name, f = pf.parse_stat(b"7 (my proc ) R 2 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0\n")
    assert name == "my proc "
    assert f[pf.STAT_STATE] == b"R"
    name, _ = pf.parse_stat(b"8 () S 1 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0\n")
    assert name == ""


def test_parse_stat_rejects_garbage():
    with pytest.raises(ValueError, match="malformed stat"):
        pf.parse_stat(b"no parens here")


def test_parse_stat_matches_real_self():
    name, f = pf.parse_stat(pf.read_file(f"/proc/{os.getpid()}/stat"))
    me = psutil.Process()
    assert int(f[pf.STAT_PPID]) == os.getppid()
    assert name == pf.read_file(f"/proc/{os.getpid()}/comm").decode().rstrip("\n")
    assert int(f[pf.STAT_NUM_THREADS]) == me.num_threads()


STATUS = b"""Name:\tsleep
Umask:\t0022
State:\tS (sleeping)
Tgid:\t99
Uid:\t1000\t1001\t1002\t1003
Gid:\t2000\t2001\t2002\t2003
VmRSS:\t    1024 kB
Threads:\t1
"""


def test_parse_status():
    status = pf.parse_status(STATUS)
    assert status.uids == (1000, 1001, 1002, 1003)
    assert status.gids == (2000, 2001, 2002, 2003)
    assert status.parent is None
    with pytest.raises(ValueError, match="Uid"):
        pf.parse_status(b"Name:\tx\n")
    text = b"Name:\tbash\nPPid:\t42\nUid:\t1000\t1001\t1002\t1003\nGid:\t100\t101\t102\t103\n"
    assert pf.parse_status(text) == pf.ProcStatus(42, (1000, 1001, 1002, 1003), (100, 101, 102, 103))


def test_process_name_is_statuss_name_made_from_stats_comm():
    # comm "a\nb\\c " as status shows it: newline and backslash escaped; osquery trims the blank
    assert pf.process_name("a\nb\\c ") == "a\\nb\\\\c"
    assert pf.process_name("\udcfe\udcff") == "\udcfe\udcff"  # bytes that are not UTF-8 stay
    assert pf.process_name("kworker/0:1-events") == "kworker/0:1-events"


def test_process_name_matches_status_for_every_live_process():
    checked = 0
    for pid in pf.list_pids("/proc"):
        try:
            comm, _ = pf.parse_stat(pf.read_pid_file(f"/proc/{pid}/stat"))
            status = pf.read_pid_file(f"/proc/{pid}/status")
        except OSError:
            continue  # exited meanwhile
        name = status.split(b"\n", 1)[0].removeprefix(b"Name:").strip().decode("utf-8", "surrogateescape")
        if pf.process_name(comm) != name and pf.process_name(comm).startswith("kworker/"):
            continue  # a kworker's name follows the work it runs: it may change between the two reads
        assert pf.process_name(comm) == name, pid
        checked += 1
    assert checked > 1


def test_parse_status_real_self():
    status = pf.parse_status(pf.read_file(f"/proc/{os.getpid()}/status"))
    assert status.uids[:3] == tuple(os.getresuid())
    assert status.gids[:3] == tuple(os.getresgid())
    assert status.parent == os.getppid()


def test_parse_cmdline():
    assert pf.parse_cmdline(b"sleep\x00300\x00") == "sleep 300"
    assert pf.parse_cmdline(b"a b\x00c\x00\x00") == "a b c"
    assert pf.parse_cmdline(b"") == ""
    assert pf.parse_cmdline(b"\xff\x00x\x00") == "\udcff x"  # the byte is kept (tables.text)
    # osquery trims whitespace at both ends: NULs of empty trailing args, blanks inside args
    assert pf.parse_cmdline(b" lead\x00arg \x00\x00 \x00") == "lead\x00arg".replace("\x00", " ")
    assert pf.parse_cmdline(b"/bin/echo\0a b\0c\0") == "/bin/echo a b c"


def test_parse_io():
    io = pf.parse_io(b"rchar: 10\nwchar: 20\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 4096\n")
    assert io == {"rchar": 10, "wchar": 20, "read_bytes": 4096, "write_bytes": 8192, "cancelled_write_bytes": 4096}


CID = "4f1b2c3d" * 8  # 64 hex digits


def test_parse_cgroup_prefers_the_unified_line():
    hybrid = b"12:pids:/user.slice\n4:memory:/user.slice/x\n0::/user.slice/session-1.scope\n"
    assert pf.parse_cgroup(hybrid) == "/user.slice/session-1.scope"
    assert pf.parse_cgroup(b"0::/system.slice/ssh.service\n") == "/system.slice/ssh.service"


def test_parse_cgroup_v1_only_uses_pids_then_cpu_memory_systemd():
    # misc is listed first (highest hierarchy id) and left at the root by the runtime
    v1 = f"13:misc:/\n5:cpu,cpuacct:/cpu/x\n3:pids:/docker/{CID}\n1:name=systemd:/docker/{CID}\n".encode()
    assert pf.parse_cgroup(v1) == f"/docker/{CID}"
    assert pf.parse_cgroup(b"13:misc:/\n5:cpu,cpuacct:/cpu/x\n4:memory:/m\n") == "/cpu/x"
    assert pf.parse_cgroup(b"7:freezer:/f\n6:devices:/d\n") == "/f"
    assert pf.parse_cgroup(b"") == ""
    assert pf.parse_cgroup(b"garbage\n") == ""
    assert pf.parse_cgroup(b"0::/a:b\xff\n") == "/a:b\udcff"  # paths may hold colons and any byte


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
def test_container_id_from_cgroup(path, expected):
    assert pf.container_id_from_cgroup(path) == expected


def test_cgroup_reader_reads_a_proc_tree_and_caches_by_content(tmp_path):
    (tmp_path / "123").mkdir()
    (tmp_path / "123" / "cgroup").write_text(f"0::/system.slice/docker-{CID}.scope\n")
    (tmp_path / "125").mkdir()
    (tmp_path / "125" / "cgroup").write_text(f"0::/system.slice/docker-{CID}.scope\n")
    reader = pf.CgroupReader(max_cached=4)
    assert reader(123, str(tmp_path)) == (f"/system.slice/docker-{CID}.scope", CID)
    assert reader(125, str(tmp_path)) == (f"/system.slice/docker-{CID}.scope", CID)
    assert len(reader._cache) == 1
    assert reader(124, str(tmp_path)) == (None, None)


def test_parse_boot_time():
    assert pf.parse_boot_time(b"cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n") == 1700000000
    with pytest.raises(ValueError, match="btime"):
        pf.parse_boot_time(b"cpu 1 2 3\n")
    assert pf.parse_boot_time(b"btime 1700000000\n") == 1700000000  # first line (a test's tree)


def test_boot_time_matches_psutil():
    assert pf.boot_time("/proc") == int(psutil.boot_time())
    assert pf.boot_time("/nonexistent-proc-root") is None


def test_boot_time_without_btime_is_none(tmp_path):
    (tmp_path / "stat").write_bytes(b"cpu 1\n")
    assert pf.boot_time(str(tmp_path)) is None


def test_parse_links():
    assert pf.parse_ns_inode("net:[4026531840]") == 4026531840
    assert pf.parse_ns_inode("garbage") is None
    assert pf.parse_socket_inode("socket:[12345]") == 12345
    assert pf.parse_socket_inode("pipe:[12345]") is None
    assert pf.parse_socket_inode("socket:[x]") is None


def test_read_file_reads_past_one_buffer(tmp_path):
    big = os.urandom(100_000)
    (tmp_path / "big").write_bytes(big)
    assert pf.read_file(str(tmp_path / "big")) == big
    with pytest.raises(FileNotFoundError):
        pf.read_file(str(tmp_path / "missing"))


def test_read_link(tmp_path):
    os.symlink("/some/target", tmp_path / "l")
    assert pf.read_link(str(tmp_path / "l")) == "/some/target"
    assert pf.read_link(str(tmp_path / "missing")) == ""  # gone / no target
    (tmp_path / "plain").write_text("x")
    assert pf.read_link(str(tmp_path / "plain")) == ""  # not a link (osquery: "" for any failure)


def test_list_pids_and_select(tmp_path):
    for name in ("1", "42", "7", "self", "net", "12a"):
        (tmp_path / name).mkdir()
    assert pf.list_pids(str(tmp_path)) == [1, 7, 42]
    assert pf.select_pids(str(tmp_path), None) == [1, 7, 42]
    assert pf.select_pids(str(tmp_path), frozenset({42, "7", -3, 0, "x", 3.5})) == [7, 42]
    with pytest.raises(FileNotFoundError, match="proc root"):
        pf.list_pids(str(tmp_path / "nope"))


def test_list_pids_real_contains_self_and_psutil_overlap():
    before = set(psutil.pids())
    pids = set(pf.list_pids("/proc"))
    after = set(psutil.pids())
    assert os.getpid() in pids
    # every process alive across both psutil snapshots is in ours
    assert (before & after) <= pids


def test_clock_constants():
    assert pf.CLK_TCK == os.sysconf("SC_CLK_TCK") > 0
    assert pf.PAGE_SIZE == os.sysconf("SC_PAGE_SIZE") > 0
    assert time.time() > pf.boot_time("/proc")


def test_read_file_reads_past_short_reads_of_seq_files() -> None:
    """/proc/self/maps comes in page-sized short reads; all of it must arrive."""
    from tables.procfs import read_file

    with open("/proc/self/maps", "rb") as f:
        expected_tail = f.read().splitlines()[-1].split()[-1]
    data = read_file("/proc/self/maps")
    assert len(data) > 4096
    assert data.splitlines()[-1].split()[-1] == expected_tail


def test_read_pid_file_whole_cmdline_and_status() -> None:
    """A real process whose argv is longer than the read buffer, and one shorter: all bytes arrive."""
    import subprocess
    import sys

    long_arg = "x" * 100_000
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", long_arg])
    try:
        deadline = time.monotonic() + 10
        while long_arg.encode() not in pf.read_file(f"/proc/{child.pid}/cmdline"):
            assert time.monotonic() < deadline, "child never exec'd"
            time.sleep(0.01)
        expected = pf.read_file(f"/proc/{child.pid}/cmdline")
        assert pf.read_pid_file(f"/proc/{child.pid}/cmdline") == expected
        assert pf.parse_cmdline(expected).endswith(" " + long_arg)
    finally:
        child.kill()
        child.wait()

    def keys(data: bytes) -> list[bytes]:  # the counters in status change between two reads; its lines do not
        return [line.split(b":")[0] for line in data.rstrip().split(b"\n")]

    assert keys(pf.read_pid_file("/proc/self/status")) == keys(pf.read_file("/proc/self/status"))
    with pytest.raises(FileNotFoundError):
        pf.read_pid_file(f"/proc/{child.pid}/stat")
