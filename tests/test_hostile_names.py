"""Hostile names: every table over real processes, files, sockets and mounts whose names are any bytes.

Names on Linux are bytes.  A tree of names with bytes 0x80-0xff, newlines, tabs, quotes,
backslashes (some that read like tables.text's own escapes), Unicode line separators and
very long names is built; a process runs from such a binary, in such a directory, with
such arguments and environment, holding such files and a UNIX socket of such a name; a
tmpfs is mounted on such paths (in a private mount namespace); a host root holds such
/etc files and homes.  Then every registered table is queried: no row may make a query
fail, and where a table shows one of these names it shows it in tables.text's
representation, from which the exact bytes come back.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventsources.procinfo import snapshot
from eventsources.uevent import parse_uevent
from tables.events import EVENT_STORES, EventStore
from tables.registry import all_specs
from tables.spec import HostPaths
from tables.sqlite import Database
from tables.text import from_sql, to_sql

REPO = Path(__file__).resolve().parent.parent

LONG = b"L" * 200 + b"\xfe" * 55  # 255 bytes: the longest name a filesystem takes
HOSTILE: tuple[bytes, ...] = (
    b"bad\xffname",
    b"\x80\x81\xfe\xff",
    b"new\nline",
    b"tab\tname",
    b"quo\"te'and`back",
    b"back\\x8Fslash\\x5C\\",  # reads like the escapes tables.text writes
    b" lead and trail ",
    b"nel\xc2\x85ls\xe2\x80\xa8fs\x1c\rcr",  # characters str.splitlines() and str.split() break on
    b"semi;colon|pipe$(x)%_like",
    "caf\u00e9".encode() + b"\xe9",  # valid UTF-8 next to an invalid byte
    LONG,
)


def sql(name: bytes) -> str:
    """How a table shows host text ``name``."""
    return to_sql(os.fsdecode(name))


def fs(path: Path) -> bytes:
    return os.fsencode(path)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """<root>/<name>/<name> for every hostile name (content: the name), plus a deep path of long names."""
    root = tmp_path_factory.mktemp("hostile")
    for name in HOSTILE:
        directory = fs(root) + b"/" + name
        os.mkdir(directory)
        with open(directory + b"/" + name, "wb") as f:
            f.write(name)
        if len(name) < 250:
            os.symlink(name, directory + b"/" + name + b".lnk")
    deep = fs(root) + b"/deep"
    os.mkdir(deep)
    for _ in range(14):  # about 3,600 bytes of path
        deep += b"/" + LONG
        os.mkdir(deep)
    with open(deep + b"/end\xff", "wb") as f:
        f.write(b"deep")
    return root


@pytest.fixture(scope="module")
def hostile_process(tree: Path) -> Iterator[dict[str, Any]]:
    """A shell copied to a hostile name, in a hostile cwd, with hostile argv/env, holding two hostile files."""
    exe_dir = fs(tree) + b"/bad\xffname"
    exe = exe_dir + b"/sh\xfe\tx \"q'"
    shutil.copy("/bin/sh", exe)
    cwd = fs(tree) + b"/new\nline"
    held = [fs(tree) + b"/" + n + b"/" + n for n in (b"\x80\x81\xfe\xff", LONG)]
    argv = [exe, b"-c", b'exec 3<"$1" 4<"$2"; read line', b"arg\xff0 ", *held]
    env = {b"HOSTILE\xfe": b"v\xff\nal\tue", b"PATH": b"/usr/bin:/bin"}
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while len(os.listdir(f"/proc/{proc.pid}/fd")) < 5:  # stdin..stderr, 3, 4: the script ran
            assert time.monotonic() < deadline, "the hostile shell did not start"
            time.sleep(0.01)
        yield {"proc": proc, "exe": exe, "cwd": cwd, "argv": argv, "env": env, "held": held}
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def hostile_socket(tree: Path) -> Iterator[dict[str, Any]]:
    """A process listening on a UNIX socket with a hostile (relative) name, in a hostile cwd."""
    cwd = fs(tree) + b"/tab\tname"
    name = b"s\xff\n k\\x9A"
    code = (
        "import os, socket, sys, time\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        f"s.bind({name!r})\n"
        "s.listen()\n"
        "print(s.fileno(), flush=True)\n"
        "time.sleep(300)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=cwd, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        fd = int(proc.stdout.readline())
        yield {"proc": proc, "name": name, "fd": fd, "cwd": cwd}
    finally:
        proc.kill()
        proc.wait()


def _hostile_root(tree: Path) -> Path:
    """A host root (HostPaths.root) whose /etc files and homes hold hostile names."""
    root = tree / "hostroot"
    if root.exists():
        return root
    home = b"/home/us\xffer\x1c\xc2\x85x"  # passwd is line-based: no newline in a field
    for d in (b"etc/cron.d", b"var/spool/cron/crontabs", b"var/lib/dpkg", b"etc/apt", b"etc/sudoers.d"):
        os.makedirs(fs(root) + b"/" + d, exist_ok=True)
    os.makedirs(fs(root) + home + b"/.ssh")

    def write(rel: bytes, data: bytes) -> None:
        with open(fs(root) + b"/" + rel.lstrip(b"/"), "wb") as f:
            f.write(data)

    write(
        b"etc/passwd",
        b"root:x:0:0:root:/root:/bin/bash\nus\xffer:x:1000:1000:G\xe9cos\x1c,\xc2\x85:" + home + b":/bin/sh\xfe\n",
    )
    write(b"etc/group", b"root:x:0:\ngr\xfeoup:x:1000:us\xffer\n")
    write(b"etc/shadow", b"us\xffer:!:19000:0:99999:7:::\n")
    write(b"etc/hosts", b"127.0.0.1 localhost h\xffst\xe2\x80\xa8name\n")
    write(b"etc/crontab", b"* * * * * root /bin/echo \xff  two\tblanks\x85\n")
    write(b"var/spool/cron/crontabs/us\xffer", b'0 1 * * * /usr/bin/run "q\xfe"\n')
    write(b"etc/sudoers", b"us\xffer ALL=(ALL) /bin/c\xfeat \\\n  /tmp/x\xff\n@includedir /etc/sudoers.d\n")
    write(b"etc/sudoers.d/ex\xfetra", b"%gr\xfeoup ALL=(ALL) ALL\n")
    write(b"etc/resolv.conf", b"nameserver 192.0.2.53\nsearch ex\xffample.org\n")
    write(b"etc/protocols", b"pr\xffoto 250 PR\xfeOTO # c\xffomment\n")
    write(b"etc/services", b"se\xffrvice 4242/tcp al\xfeias # c\xffomment\n")
    write(b"etc/os-release", b'NAME="Hos\xfftile"\nVERSION_ID="1\xfe"\nID=hostile\n')
    write(b"etc/apt/sources.list", b"deb http://ex\xffample.org/debian st\xfeable main\n")
    write(
        b"var/lib/dpkg/status",
        b"Package: pk\xffg\nStatus: install ok installed\nVersion: 1.0-1\nSource: sr\xfec (1)\n"
        b"Maintainer: M\xe9 <m@x>\nArchitecture: all\n\n",
    )
    write(home + b"/.bash_history", b"#1700000000\necho \xff\n\ncat 'new\xfe\tfile'\n")
    write(home + b"/.ssh/authorized_keys", b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA== us\xffer@h\xfeost\n")
    write(home + b"/.ssh/known_hosts", b"h\xffost ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==\n")
    return root


def _required(spec_name: str, tree: Path) -> str:
    """A WHERE clause for tables that require one: every hostile directory."""
    dirs = ", ".join("'" + sql(fs(tree) + b"/" + n).replace("'", "''") + "'" for n in HOSTILE)
    return f" WHERE directory IN ({dirs})" if spec_name in ("file", "hash") else ""


def _event_services(hostile_process: dict[str, Any]) -> dict[str, Any]:
    """Event stores holding what the event sources make of the hostile process (and a hostile uevent)."""
    stores = {name: EventStore(name) for name in ("process_events", "socket_events", "hardware_events")}
    row = snapshot(hostile_process["proc"].pid)
    row.update(syscall="execve", status=0, time=int(time.time()), uptime=0)
    stores["process_events"].add(row)
    uevent = parse_uevent(
        b"add@/devices/usb1/1-1\0ACTION=add\0DEVPATH=/devices/usb1/1-1\0SUBSYSTEM=usb\0"
        b"DEVTYPE=usb_device\0ID_MODEL=Dis\xffk\nX\0ID_VENDOR=V\xfend\0"
    )
    stores["hardware_events"].add({"action": uevent.action, "path": uevent.devpath, "model": uevent.env["ID_MODEL"]})
    return {EVENT_STORES: stores}


def test_every_table_survives_hostile_names(tree: Path, hostile_process, hostile_socket) -> None:
    """SELECT * from every table, on the live host and on a hostile host root: no query fails."""
    services = _event_services(hostile_process)
    seen: dict[str, int] = {}
    for paths in (HostPaths(), HostPaths(root=str(_hostile_root(tree)))):
        db = Database(all_specs(), paths=paths, services=services)
        for spec in all_specs():
            result = db.execute(f"SELECT * FROM {spec.name}{_required(spec.name, tree)}")  # must not raise
            for row in result.rows:
                for value in row:
                    if isinstance(value, str):
                        value.encode("utf-8")  # valid UTF-8, always
                        assert to_sql(from_sql(value)) == value  # and one-to-one
            seen[spec.name] = seen.get(spec.name, 0) + len(result.rows)
    assert seen["processes"] and seen["file"] and seen["hash"] and seen["process_events"]


def test_processes(hostile_process) -> None:
    proc, exe, cwd = hostile_process["proc"], hostile_process["exe"], hostile_process["cwd"]
    db = Database(all_specs())
    (row,) = db.execute(f"SELECT path, cwd, cmdline, name, on_disk FROM processes WHERE pid = {proc.pid}").dicts()
    assert row["path"] == sql(exe) and from_sql(row["path"]) == os.fsdecode(exe)
    assert row["cwd"] == sql(cwd)
    assert row["cmdline"] == sql(b" ".join(hostile_process["argv"]).strip())
    comm = Path(f"/proc/{proc.pid}/comm").read_bytes().rstrip(b"\n")
    assert row["name"] == sql(comm.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").strip())  # the kernel's escapes
    assert row["on_disk"] == 1
    # the text a table shows is what another table takes: a JOIN through the hostile path
    joined = db.execute(
        "SELECT f.filename, f.size FROM processes p JOIN file f ON f.path = p.path WHERE p.pid = ?", (proc.pid,)
    ).rows
    assert joined == [(sql(os.path.basename(exe)), os.stat(exe).st_size)]
    assert db.execute("SELECT count(*) FROM processes WHERE path = ?", (row["path"],)).rows == [(1,)]


def test_process_files_maps_and_environment(hostile_process) -> None:
    pid = hostile_process["proc"].pid
    db = Database(all_specs())
    files = dict(db.execute("SELECT fd, path FROM process_open_files WHERE pid = ?", (pid,)).rows)
    assert (files[3], files[4]) == tuple(sql(p) for p in hostile_process["held"])
    hashed = db.execute(
        "SELECT h.path, h.sha256 FROM process_open_files f JOIN hash h ON h.path = f.path WHERE f.pid = ? AND f.fd >= 3",
        (pid,),
    ).rows
    assert sorted(hashed) == sorted(
        (sql(p), hashlib.sha256(Path(os.fsdecode(p)).read_bytes()).hexdigest()) for p in hostile_process["held"]
    )
    maps = {r[0] for r in db.execute("SELECT path FROM process_memory_map WHERE pid = ?", (pid,)).rows}
    assert sql(hostile_process["exe"]) in maps
    envs = dict(db.execute("SELECT key, value FROM process_envs WHERE pid = ?", (pid,)).rows)
    assert envs[sql(b"HOSTILE\xfe")] == sql(b"v\xff\nal\tue")


def test_file_and_hash_over_hostile_directories(tree: Path) -> None:
    db = Database(all_specs())
    for name in HOSTILE:
        directory = fs(tree) + b"/" + name
        rows = db.execute(
            "SELECT path, directory, filename, type, symlink FROM file WHERE directory = ?", (sql(directory),)
        ).rows
        expected = set(os.listdir(directory))
        assert {from_sql(r[2]) for r in rows} == {os.fsdecode(n) for n in expected}
        assert all(r[1] == sql(directory) and r[0] == sql(directory + b"/" + os.fsencode(from_sql(r[2]))) for r in rows)
        hashes = db.execute("SELECT path, md5 FROM hash WHERE directory = ?", (sql(directory),)).rows
        assert (sql(directory + b"/" + name), hashlib.md5(name).hexdigest()) in hashes
        if len(name) < 250:
            (target,) = db.execute(
                "SELECT symlink_target_path FROM file WHERE path = ?", (sql(directory + b"/" + name + b".lnk"),)
            ).rows
            assert target == (sql(name),)
    # LIKE patterns reach the hostile names too
    pattern = sql(fs(tree)) + "/bad%"
    assert db.execute("SELECT count(*) FROM file WHERE path LIKE ?", (pattern,)).rows == [(1,)]
    deep = db.execute("SELECT path FROM file WHERE path LIKE ?", (sql(fs(tree)) + "/deep/%%",)).rows
    assert any(from_sql(p).endswith("/end\udcff") for (p,) in deep)


def test_unix_socket_with_a_hostile_name(hostile_socket) -> None:
    pid, name = hostile_socket["proc"].pid, hostile_socket["name"]
    db = Database(all_specs())
    rows = db.execute("SELECT fd, path FROM process_open_sockets WHERE pid = ? AND family = 1", (pid,)).rows
    assert (hostile_socket["fd"], sql(name)) in rows
    listening = db.execute("SELECT fd, path, socket FROM listening_ports WHERE pid = ? AND family = 1", (pid,)).rows
    assert (hostile_socket["fd"], sql(name), 0) in listening


def test_mounts_on_hostile_paths(tree: Path) -> None:
    """tmpfs mounted on hostile paths in a private mount namespace (nothing leaks to the host)."""
    targets = [
        fs(tree) + b"/" + n
        for n in (b"bad\xffname", b"new\nline", b"tab\tname", b" lead and trail ", b"back\\x8Fslash\\x5C\\")
    ]
    code = (
        "import ctypes, json, os, sys\n"
        "from tables.registry import all_specs\n"
        "from tables.sqlite import Database\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "targets = [bytes.fromhex(t) for t in sys.argv[1:]]\n"
        "for t in targets:\n"
        "    if libc.mount(b'dev\\xff ' + t[-4:], t, b'tmpfs', 0, None) != 0:\n"
        "        sys.exit('mount failed: ' + os.strerror(ctypes.get_errno()))\n"
        "rows = Database(all_specs()).execute('SELECT device, path, type, blocks_size FROM mounts').rows\n"
        "print(json.dumps(rows))\n"
    )
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", code, *(t.hex() for t in targets)],
        capture_output=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        timeout=60,
    )
    if done.returncode != 0 and (b"mount failed" in done.stderr or b"unshare failed" in done.stderr):
        pytest.skip(
            f"this machine refuses a private mount namespace with tmpfs: {done.stderr.decode(errors='replace')}"
        )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    rows = json.loads(done.stdout)
    for target in targets:
        assert [sql(b"dev\xff " + target[-4:]), sql(target), "tmpfs"] in [r[:3] for r in rows], target
        assert all(r[3] is not None for r in rows if r[1] == sql(target))  # statvfs() reached it


def test_host_root_files_with_hostile_text(tree: Path) -> None:
    root = _hostile_root(tree)
    db = Database(all_specs(), paths=HostPaths(root=str(root)))
    home = "/home/us\udcffer\x1c\x85x"
    users = db.execute("SELECT username, description, directory, shell FROM users WHERE uid = 1000").rows
    assert users == [(to_sql("us\udcffer"), to_sql("G\udce9cos\x1c,\x85"), to_sql(home), to_sql("/bin/sh\udcfe"))]
    history = db.execute("SELECT time, command, history_file FROM shell_history WHERE uid = 1000").rows
    assert [r[:2] for r in history] == [
        (1700000000, to_sql("echo \udcff")),
        (0, ""),
        (0, to_sql("cat 'new\udcfe\tfile'")),
    ]
    assert {r[2] for r in history} == {to_sql(home + "/.bash_history")}
    crontab = db.execute("SELECT command, path FROM crontab").rows
    assert (to_sql("root /bin/echo \udcff two blanks\udc85"), "/etc/crontab") in crontab
    assert (to_sql('/usr/bin/run "q\udcfe"'), to_sql("/var/spool/cron/crontabs/us\udcffer")) in crontab
    sudoers = db.execute("SELECT source, header, rule_details FROM sudoers").rows
    assert ("/etc/sudoers", to_sql("us\udcffer"), to_sql("ALL=(ALL) /bin/c\udcfeat /tmp/x\udcff")) in sudoers
    assert (to_sql("/etc/sudoers.d/ex\udcfetra"), to_sql("%gr\udcfeoup"), "ALL=(ALL) ALL") in sudoers
    assert db.execute("SELECT hostnames FROM etc_hosts").rows == [(to_sql("localhost h\udcffst\u2028name"),)]
    keys = db.execute("SELECT comment, key_file FROM authorized_keys WHERE uid = 1000").rows
    assert keys == [(to_sql("us\udcffer@h\udcfeost"), to_sql(home + "/.ssh/authorized_keys"))]
    assert db.execute("SELECT source FROM deb_packages").rows == [(to_sql("sr\udcfec (1)"),)]
