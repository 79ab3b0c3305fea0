"""processes: the real /proc cross-checked with spawned processes and psutil; pushdown proved with inotify."""

from __future__ import annotations

import ctypes
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from tables import processes
from tables import procfs as pf
from tables.spec import HostPaths, QueryContext
from tables.sqlite import Database
from tables.text import to_sql

SPEC = processes.SPEC
ALL_COLUMNS = ", ".join(SPEC.column_names)  # hidden ones included
INT_TYPES = ("INTEGER", "BIGINT", "UNSIGNED_BIGINT")


@pytest.fixture(scope="module")
def db() -> Database:
    return Database([SPEC])


@pytest.fixture
def sleepers():
    procs = [subprocess.Popen(["sleep", "300"]) for _ in range(3)]
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def rows(db: Database, sql: str) -> list[dict]:
    return db.execute(sql).dicts()


# ---------------------------------------------------------------------------
# Against processes the test spawned and against psutil
# ---------------------------------------------------------------------------


def test_spawned_processes_appear(db, sleepers):
    by_pid = {r["pid"]: r for r in rows(db, "SELECT pid, name, cmdline, parent, uid, state FROM processes")}
    for p in sleepers:
        r = by_pid[p.pid]
        assert r["name"] == "sleep"
        assert r["cmdline"] == "sleep 300"
        assert r["parent"] == os.getpid()
        assert r["uid"] == os.getuid()
        assert r["state"] in ("S", "R")
    assert os.getpid() in by_pid


def test_killed_process_disappears(db):
    p = subprocess.Popen(["sleep", "300"])
    assert rows(db, f"SELECT pid FROM processes WHERE pid = {p.pid}") == [{"pid": p.pid}]
    p.kill()
    p.wait()
    assert rows(db, f"SELECT pid FROM processes WHERE pid = {p.pid}") == []


def test_cross_check_psutil(db):
    ours = {r["pid"]: r for r in rows(db, "SELECT pid, name, parent, uid, cmdline FROM processes")}
    checked: set[int] = set()
    for proc in psutil.process_iter(["pid", "ppid", "uids", "cmdline"]):
        info = proc.info
        r = ours.get(info["pid"])
        if r is None:
            continue  # started after our scan
        try:
            comm = pf.read_file(f"/proc/{info['pid']}/comm").decode("utf-8", "surrogateescape")[:-1]
        except OSError:
            continue  # exited meanwhile
        if info["ppid"] != r["parent"]:
            continue  # exited and the pid was reused (re-parented) meanwhile
        if comm.startswith("kworker/") and r["name"].startswith("kworker/"):
            continue  # a kworker's comm names the workqueue it serves right now: it changes by itself
        assert r["name"] == to_sql(pf.process_name(comm))
        assert r["uid"] == info["uids"].real
        if info["cmdline"] is not None:  # osquery trims the outer whitespace psutil keeps
            assert r["cmdline"] == to_sql(" ".join(info["cmdline"]).strip())
        checked.add(info["pid"])
    # other sessions start and stop processes meanwhile; these are stable for sure
    assert {1, os.getpid()} <= checked
    assert len(checked) >= len(ours) // 2


def test_fields_of_self_against_psutil(db):
    me = psutil.Process()
    (r,) = rows(db, f"SELECT {ALL_COLUMNS} FROM processes WHERE pid = {os.getpid()}")
    assert r["path"] == os.readlink("/proc/self/exe")
    assert r["on_disk"] == 1
    assert r["cwd"] == os.getcwd()
    assert r["root"] == "/"
    assert (r["uid"], r["euid"], r["suid"]) == tuple(os.getresuid())
    assert (r["gid"], r["egid"], r["sgid"]) == tuple(os.getresgid())
    assert r["pgroup"] == os.getpgrp()
    assert r["nice"] == os.getpriority(os.PRIO_PROCESS, 0)
    assert r["wired_size"] == 0
    assert abs(r["start_time"] - me.create_time()) <= 1
    assert r["total_size"] > 0 and r["resident_size"] > 0
    assert r["user_time"] >= 0 and r["system_time"] >= 0
    assert r["threads"] >= 1
    io = me.io_counters()
    assert r["disk_bytes_read"] <= io.read_bytes
    cgroup = pf.parse_cgroup(Path("/proc/self/cgroup").read_bytes())
    assert r["cgroup_path"] == cgroup
    assert r["elevated_token"] is None and r["upid"] is None  # other platforms' columns


def test_uids_nice_and_deleted_binary(db):
    tmp = Path(tempfile.mkdtemp(prefix="procs-test-"))
    tmp.chmod(0o755)  # nobody must be able to exec from here
    binary = tmp / "mysleep"
    shutil.copy("/bin/sleep", binary)
    p = subprocess.Popen([str(binary), "300"], user=65534, group=65534, preexec_fn=lambda: os.nice(5))
    try:
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{p.pid}/exe") != str(binary):  # wait for the exec
            assert time.monotonic() < deadline, "child did not exec"
            time.sleep(0.01)
        (r,) = rows(db, f"SELECT pid, name, uid, euid, gid, nice, path, on_disk FROM processes WHERE pid = {p.pid}")
        assert (r["name"], r["uid"], r["euid"], r["gid"], r["nice"]) == ("mysleep", 65534, 65534, 65534, 5)
        assert (r["path"], r["on_disk"]) == (str(binary), 1)
        binary.unlink()
        assert os.readlink(f"/proc/{p.pid}/exe") == f"{binary} (deleted)"  # what the kernel shows
        (r,) = rows(db, f"SELECT path, on_disk FROM processes WHERE pid = {p.pid}")
        assert (r["path"], r["on_disk"]) == (str(binary), 0)  # osquery strips the suffix
        # a new file at the old path is not the running binary: still not on disk
        shutil.copy("/bin/sleep", binary)
        (r,) = rows(db, f"SELECT path, on_disk FROM processes WHERE pid = {p.pid}")
        assert (r["path"], r["on_disk"]) == (str(binary), 0)
        # nor is a file that happens to be named like the kernel's link (osquery compares inodes)
        shutil.copy("/bin/sleep", f"{binary} (deleted)")
        (r,) = rows(db, f"SELECT path, on_disk FROM processes WHERE pid = {p.pid}")
        assert (r["path"], r["on_disk"]) == (str(binary), 0)
    finally:
        p.kill()
        p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def test_binary_really_named_deleted_keeps_its_name(db, tmp_path):
    """A running binary whose name ends in " (deleted)" is on disk under that very name."""
    binary = tmp_path / "sleep (deleted)"
    shutil.copy("/bin/sleep", binary)
    p = subprocess.Popen([str(binary), "300"])
    try:
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{p.pid}/exe") != str(binary):
            assert time.monotonic() < deadline, "child did not exec"
            time.sleep(0.01)
        (r,) = rows(db, f"SELECT path, on_disk FROM processes WHERE pid = {p.pid}")
        assert (r["path"], r["on_disk"]) == (str(binary), 1)
    finally:
        p.kill()
        p.wait()


def test_kernel_thread_has_no_path(db):
    (r,) = rows(db, "SELECT pid, name, path, on_disk, cmdline FROM processes WHERE pid = 2")
    if r["name"] != "kthreadd":
        pytest.skip("pid 2 is not kthreadd in this pid namespace")
    assert (r["path"], r["on_disk"], r["cmdline"]) == ("", -1, "")


def test_zombie_is_listed(db):
    child = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 10
        while pf.parse_stat(pf.read_file(f"/proc/{child.pid}/stat"))[1][pf.STAT_STATE] != b"Z":
            assert time.monotonic() < deadline, "child did not exit"
            time.sleep(0.01)
        (r,) = rows(db, f"SELECT * FROM processes WHERE pid = {child.pid}")
        assert (r["state"], r["path"], r["on_disk"], r["cmdline"], r["parent"]) == ("Z", "", -1, "", os.getpid())
        assert any(x["pid"] == child.pid for x in rows(db, "SELECT pid FROM processes"))
    finally:
        child.wait()


def test_malformed_stat_is_skipped(tmp_path):
    root = tmp_path / "proc"
    for pid, stat in (
        (10, b"10 (ok) S 1 10 10 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 100 4096 2 0\n"),
        (11, b"11 (torn) S 1"),
        (12, b"garbage"),
    ):
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "stat").write_bytes(stat)
    db = Database([SPEC], paths=HostPaths(proc=str(root)))
    assert rows(db, "SELECT pid, name, parent, start_time FROM processes") == [
        {"pid": 10, "name": "ok", "parent": 1, "start_time": -1}
    ]


def test_column_types(db, sleepers):
    result = db.execute(f"SELECT {ALL_COLUMNS} FROM processes")
    assert result.columns == list(SPEC.column_names)
    assert len(result.rows) >= 3
    for row in result.rows:
        for column, value in zip(SPEC.columns, row, strict=True):
            if value is None:
                continue
            if column.type in INT_TYPES:
                assert type(value) is int, (column.name, value)
            elif column.type == "TEXT":
                assert type(value) is str, (column.name, value)
            elif column.type == "DOUBLE":
                assert type(value) is float, (column.name, value)
    # the columns every process has are never NULL for our own children
    for r in rows(db, "SELECT * FROM processes WHERE parent = " + str(os.getpid())):
        for name in ("name", "cmdline", "state", "uid", "start_time", "threads", "nice", "path"):
            assert r[name] is not None, name


def test_schema_matches_osquery_names():
    names = SPEC.column_names
    assert names[:26] == (
        "pid",
        "name",
        "path",
        "cmdline",
        "state",
        "cwd",
        "root",
        "uid",
        "gid",
        "euid",
        "egid",
        "suid",
        "sgid",
        "on_disk",
        "wired_size",
        "resident_size",
        "total_size",
        "user_time",
        "system_time",
        "disk_bytes_read",
        "disk_bytes_written",
        "start_time",
        "parent",
        "pgroup",
        "threads",
        "nice",
    )
    assert "cgroup_path" in names and not SPEC.column("cgroup_path").hidden
    assert SPEC.column("elevated_token").hidden and SPEC.column("pid").index


def test_refused_link_is_empty():
    """As nobody, a root process's /proc/<pid>/exe is refused: path is '' (osquery), the row stays."""
    target = subprocess.Popen(["sleep", "300"])
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child drops to nobody and queries; it never returns into pytest
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            db = Database([SPEC])
            result = db.execute(
                f"SELECT pid, name, path, on_disk, uid, cwd, root FROM processes WHERE pid = {target.pid}"
            )
            matched = db.execute(f"SELECT pid FROM processes WHERE path = '' AND pid = {target.pid}")
            os.write(write_end, repr(result.rows + matched.rows).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as pipe:
            out = pipe.read().decode()
        _, status = os.waitpid(child, 0)
    finally:
        target.kill()
        target.wait()
    assert os.waitstatus_to_exitcode(status) == 0
    assert out == repr([(target.pid, "sleep", "", -1, 0, "", ""), (target.pid,)])


def test_process_vanishing_mid_scan_is_skipped(sleepers):
    victim = subprocess.Popen(["sleep", "300"])
    context = QueryContext(table="processes", columns_used=frozenset({"pid", "name", "cmdline"}))
    it = processes.generate(context)
    first = next(it)  # the pid list is taken now; the victim is on it
    assert first["pid"] < victim.pid
    victim.kill()
    victim.wait()
    rest = list(it)
    pids = {r["pid"] for r in rest}
    assert victim.pid not in pids
    assert {p.pid for p in sleepers} <= pids


def test_nonsense_pid_constraints(db):
    assert rows(db, "SELECT pid FROM processes WHERE pid = 'abc'") == []
    assert rows(db, "SELECT pid FROM processes WHERE pid = -5") == []
    assert rows(db, f"SELECT pid FROM processes WHERE pid = '{os.getpid()}'") == [{"pid": os.getpid()}]


# ---------------------------------------------------------------------------
# Pushdown and column pruning, proved with inotify on a fixture proc tree
# ---------------------------------------------------------------------------

IN_OPEN = 0x20
IN_ISDIR = 0x40000000
_EVENT = struct.Struct("iIII")


class Inotify:
    """The kernel's record of which files were opened (ctypes over libc's inotify)."""

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            pytest.skip(f"inotify_init1 failed: {os.strerror(ctypes.get_errno())}")
        self.paths: dict[int, str] = {}

    def watch(self, path: Path) -> None:
        wd = self.libc.inotify_add_watch(self.fd, str(path).encode(), IN_OPEN)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {path}")
        self.paths[wd] = str(path)

    def opened(self) -> list[str]:
        """Paths opened since the last call (a directory itself: its path, for listdir)."""
        found: list[str] = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return found
            offset = 0
            while offset < len(data):
                wd, _mask, _cookie, length = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0").decode()
                offset += _EVENT.size + length
                found.append(os.path.join(self.paths[wd], name) if name else self.paths[wd])

    def close(self) -> None:
        os.close(self.fd)


def _copy_pid(src_pid: int, dst: Path) -> None:
    dst.mkdir()
    for name in ("stat", "status", "cmdline", "io", "cgroup"):
        (dst / name).write_bytes(pf.read_file(f"/proc/{src_pid}/{name}"))
    for name in ("exe", "cwd", "root"):
        os.symlink(os.readlink(f"/proc/{src_pid}/{name}"), dst / name)


@pytest.fixture
def fixture_proc(tmp_path, sleepers):
    """A proc root with copies of three real processes' files, watched by inotify."""
    root = tmp_path / "proc"
    root.mkdir()
    (root / "stat").write_bytes(pf.read_file("/proc/stat"))
    pids = [os.getpid()] + [p.pid for p in sleepers[:2]]
    for pid in pids:
        _copy_pid(pid, root / str(pid))
    ino = Inotify()
    ino.watch(root)
    for pid in pids:
        ino.watch(root / str(pid))
    yield root, pids, ino
    ino.close()


def test_where_pid_reads_only_that_pid(fixture_proc):
    root, pids, ino = fixture_proc
    db = Database([SPEC], paths=HostPaths(proc=str(root)))
    target = pids[1]
    ino.opened()
    assert rows(db, f"SELECT pid, name, cmdline FROM processes WHERE pid = {target}") == [
        {"pid": target, "name": "sleep", "cmdline": "sleep 300"}
    ]
    opened = ino.opened()
    assert sorted(opened) == sorted([f"{root}/{target}/stat", f"{root}/{target}/cmdline"])
    assert str(root) not in opened  # the proc root was never listed

    # IN (...) reads exactly those pids
    got = rows(db, f"SELECT pid FROM processes WHERE pid IN ({pids[0]}, {pids[2]}, 999999999)")
    assert sorted(r["pid"] for r in got) == sorted([pids[0], pids[2]])
    opened = ino.opened()
    assert str(root) not in opened
    assert not any(p.startswith(f"{root}/{target}/") for p in opened)

    # the proof can fail: a full scan lists the root and opens every pid's stat
    assert sorted(r["pid"] for r in rows(db, "SELECT pid, name FROM processes")) == sorted(pids)
    opened = ino.opened()
    assert str(root) in opened
    assert {f"{root}/{pid}/stat" for pid in pids} <= set(opened)


def test_only_needed_files_are_read(fixture_proc):
    root, _pids, ino = fixture_proc
    db = Database([SPEC], paths=HostPaths(proc=str(root)))
    ino.opened()
    rows(db, "SELECT pid, name, cmdline FROM processes")
    files = {os.path.basename(p) for p in ino.opened() if p != str(root)}
    assert files == {"stat", "cmdline"}

    rows(db, "SELECT pid, uid FROM processes")
    files = {os.path.basename(p) for p in ino.opened() if p != str(root)}
    assert files == {"status"}

    result = rows(db, "SELECT * FROM processes")
    files = {os.path.basename(p) for p in ino.opened() if p != str(root)}
    assert files == {"stat", "status", "cmdline", "io", "cgroup"}  # + /proc/stat for boot time
    me = next(r for r in result if r["pid"] == os.getpid())
    assert me["path"] == os.readlink("/proc/self/exe")
    assert me["cmdline"] == pf.parse_cmdline(Path("/proc/self/cmdline").read_bytes())


def test_fixture_pid_without_stat_is_skipped(fixture_proc):
    root, pids, _ino = fixture_proc
    (root / str(pids[2]) / "stat").unlink()  # vanished between listing and reading
    db = Database([SPEC], paths=HostPaths(proc=str(root)))
    assert sorted(r["pid"] for r in rows(db, "SELECT pid, name FROM processes")) == sorted(pids[:2])


def test_fixture_boot_time_missing_gives_minus_one(fixture_proc):
    root, _pids, _ino = fixture_proc
    (root / "stat").unlink()
    db = Database([SPEC], paths=HostPaths(proc=str(root)))
    assert {r["start_time"] for r in rows(db, "SELECT start_time FROM processes")} == {-1}


def test_name_is_the_escaped_status_name_and_cmdline_is_trimmed(db):
    """osquery's name is the Name of status (the kernel escapes \\n and \\\\ there); the cmdline is trimmed."""
    code = (
        "import ctypes, sys, time\n"
        "ctypes.CDLL(None).prctl(15, b'a\\nb\\\\c ', 0, 0, 0)\n"  # PR_SET_NAME: comm "a<newline>b\c "
        "print('ready', flush=True)\n"
        "time.sleep(300)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, " spaced arg ", ""], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        assert pf.read_file(f"/proc/{child.pid}/comm") == b"a\nb\\c \n"
        (r,) = rows(db, f"SELECT name, cmdline FROM processes WHERE pid = {child.pid}")
    finally:
        child.kill()
        child.wait()
    assert r["name"] == "a\\nb\\\\c"  # as status shows it, trailing blank trimmed (osquery)
    assert r["cmdline"] == f"{sys.executable} -c {code}  spaced arg"  # NULs as spaces, outer whitespace trimmed
