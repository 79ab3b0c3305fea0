"""AuditSource on the real kernel (root): owner mode, read-only mode, restore on every exit path.

Every test here uses the ``audit_state`` fixture (lock, snapshot, restore, assert identical).
Socket calls are made by child processes: the agent's own pid is excluded by its rules.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

import pytest

from eventsources.audit.netlink import AuditNetlink, open_audit_socket
from eventsources.audit.rules import DEFAULT_KEY, agent_rules, build_rule, native_abis, parse_rule
from eventsources.audit.source import AuditSource
from eventsources.base import SourceUnavailable
from eventsources.socketinfo import process_start_time
from protocol.community_id import community_id
from tables.events import EVENT_STORES, EventStore
from tables.procfs import boot_time
from tables.registry import all_specs
from tables.sqlite import Database
from tables.text import to_sql

pytestmark = pytest.mark.audit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRUE = os.path.realpath("/bin/true")


class Collector:
    """A sink that keeps rows per table."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, table: str, row: dict[str, Any]) -> None:
        self.rows.append((table, row))

    def of(self, table: str, pred: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        return [r for t, r in self.rows if t == table and pred(r)]

    async def wait_for(
        self, table: str, pred: Callable[[dict[str, Any]], bool], count: int = 1
    ) -> list[dict[str, Any]]:
        """Rows matching ``pred`` once ``count`` of them arrived (or what came within 20 s)."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = self.of(table, pred)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.05)
        return self.of(table, pred)


async def start_or_skip(source: AuditSource) -> None:
    try:
        await source.start()
    except SourceUnavailable as exc:
        pytest.skip(f"kernel refused audit: {exc}")


def kernel_state() -> tuple[Any, list[Any]]:
    ctl = AuditNetlink(open_audit_socket())
    try:
        return ctl.get_status(), [parse_rule(r) for r in ctl.list_rules()]
    finally:
        ctl.close()


async def test_process_events_owner_mode(audit_state, tmp_path, cgroup_child) -> None:
    sink = Collector()
    source = AuditSource(sink)
    await start_or_skip(source)
    try:
        st, rules = kernel_state()
        assert (st.pid, st.enabled, st.backlog_limit, st.backlog_wait_time) == (os.getpid(), 1, 8192, 0)
        ours = [r for r in rules if r.key == DEFAULT_KEY]
        assert {r.field_value(11) for r in ours} == set(native_abis())  # one rule per ABI, each with arch=
        assert all(r.field_value(0) == os.getpid() for r in ours)  # pid != the agent
        assert source.status().mode == "owner"

        args = {
            "spaces": ["with spaces", "two  spaces"],
            "nonascii": ["grüße", "日本語", "\udcff"],  # the last: the raw byte 0xff (invalid UTF-8)
            "long": ["L" * 9000, "tail"],
        }
        procs = {}
        for name, argv in args.items():
            p = subprocess.Popen([TRUE, name, *argv], cwd=tmp_path)
            p.wait()
            procs[name] = p.pid
        rows = await source_rows(sink, procs)
        for name, argv in args.items():
            row = rows[name]
            expected = " ".join([TRUE, name, *argv])  # 0xff kept as U+DCFF (surrogateescape), as os.fsdecode has it
            assert row["cmdline"] == expected
            assert row["path"] == TRUE
            assert row["cwd"] == str(tmp_path)
            assert (row["uid"], row["euid"], row["gid"]) == (os.getuid(), os.geteuid(), os.getgid())
            assert row["parent"] == os.getpid()
            assert row["syscall"] == "execve"
            assert row["mode"] == "0100755" and row["owner_uid"] == os.stat(TRUE).st_uid
            assert row["cmdline_size"] == len(expected.encode("utf-8", "surrogateescape"))  # bytes, as the kernel had
            assert row["mtime"] == int(os.stat(TRUE).st_mtime)
        # an executable whose name is not UTF-8: the row keeps its bytes, and SQL shows them as \xHH
        hostile = os.fsencode(tmp_path) + b"/tr\xfeue"
        shutil.copy(TRUE, hostile)
        p = subprocess.Popen([hostile, b"a\xffb"], cwd=tmp_path)
        p.wait()
        (row,) = await sink.wait_for("process_events", lambda r: r["pid"] == p.pid)
        assert os.fsencode(row["path"]) == hostile and row["cmdline"] == os.fsdecode(hostile + b" a\xffb")
        store = EventStore("process_events")
        store.add(row)
        db = Database(all_specs(), services={EVENT_STORES: {"process_events": store}})
        result = db.execute("SELECT path, cmdline FROM process_events")
        assert [tuple(r) for r in result.rows] == [(to_sql(row["path"]), to_sql(row["cmdline"]))]
        assert result.rows[0][0].endswith("/tr\\xFEue") and result.rows[0][1].endswith(" a\\xFFb")
        # cgroup path and container id are read at event time from a process that is still there:
        # a shell moves itself into a new cgroup (named like a docker scope), then execs sleep
        sleeper = subprocess.Popen(cgroup_child.enter_and_exec("/bin/sleep", "30"))
        try:
            rows = await sink.wait_for("process_events", lambda r: r["pid"] == sleeper.pid, 2)
            row = rows[-1]  # the shell's exec, then sleep's
            assert row["path"] == os.path.realpath("/bin/sleep")
            assert (row["cgroup_path"], row["container_id"]) == (cgroup_child.path, cgroup_child.container_id)
        finally:
            sleeper.kill()
            sleeper.wait()
        # the agent's own socket calls and execs never show up
        s = socket.socket()
        try:
            s.connect_ex(("127.0.0.1", closed_port()))
        finally:
            s.close()
        source.poll_status_now()
        status = source.status()
        assert status.events_seen >= 4 and status.parse_errors == 0
        assert status.kernel_lost == 0 and status.extra["kernel_lost_total"] >= 0
        assert status.extra["records"] > status.events_seen  # several records per exec
    finally:
        await source.stop()
    assert not [r for _, r in sink.rows if r["pid"] == os.getpid()]
    assert source.status().mode == "stopped"


async def source_rows(sink: Collector, procs: dict[str, int]) -> dict[str, dict[str, Any]]:
    found = await sink.wait_for("process_events", lambda r: r["pid"] in procs.values(), len(procs))
    by_pid = {r["pid"]: r for r in found}
    assert set(by_pid) == set(procs.values()), f"missing exec rows: {procs} vs {sorted(by_pid)}"
    return {name: by_pid[pid] for name, pid in procs.items()}


def closed_port(family: int = socket.AF_INET, host: str = "127.0.0.1") -> int:
    with socket.socket(family) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


SOCKET_CHILD = textwrap.dedent(
    """
    import json, os, socket, sys
    out = {"pid": os.getpid()}
    port4, port6, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    s = socket.socket(); out["c4"] = s.connect_ex(("127.0.0.1", port4)); out["c4fd"] = s.fileno(); s.close()
    s = socket.socket(socket.AF_INET6); out["c6"] = s.connect_ex(("::1", port6)); s.close()
    srv = socket.socket(socket.AF_UNIX); srv.bind(path); srv.listen()
    c = socket.socket(socket.AF_UNIX); c.connect(path); c.close(); srv.close()
    c = socket.socket(socket.AF_UNIX); out["abs"] = c.connect_ex("\\0zeek-agent-test-abstract"); c.close()
    srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(); out["srv"] = srv.getsockname()[1]
    cli = socket.socket(); cli.connect(("127.0.0.1", out["srv"])); out["cli"] = cli.getsockname()[1]
    conn, peer = srv.accept(); out["peer"] = peer[1]
    print(json.dumps(out), flush=True)
    sys.stdin.readline()  # the sockets stay open until the test has its rows
    conn.close(); cli.close(); srv.close()
    """
)


async def test_socket_events_owner_mode(audit_state, tmp_path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python build")
    sink = Collector()
    source = AuditSource(sink, socket_events=True)
    await start_or_skip(source)
    try:
        path = str(tmp_path / "agent-test.sock")
        port4, port6 = closed_port(), closed_port(socket.AF_INET6, "::1")
        child = subprocess.Popen(
            [sys.executable, "-c", SOCKET_CHILD, str(port4), str(port6), path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            info = json.loads(child.stdout.readline())
            pid = info["pid"]
            rows = await sink.wait_for("socket_events", lambda r: r["pid"] == pid, 8)
            start = process_start_time(pid, boot_time("/proc"))
        finally:
            child.communicate("\n", timeout=30)
        lookups = source.status().extra["socket_lookups"]
    finally:
        await source.stop()
    assert child.returncode == 0
    assert info["c4"] != 0 and info["c6"] != 0 and info["abs"] != 0
    got = [
        (
            r["action"],
            r["family"],
            r["local_address"],
            r["local_port"],
            r["remote_address"],
            r["remote_port"],
            r["status"],
        )
        for r in rows
    ]
    assert (
        got
        == [
            ("connect", 2, None, 0, "127.0.0.1", port4, "failed"),  # ports not named: 0, as osquery
            ("connect", 10, None, 0, "::1", port6, "failed"),
            ("bind", 1, path, 0, None, 0, "succeeded"),
            ("connect", 1, None, 0, path, 0, "succeeded"),
            ("connect", 1, None, 0, "@zeek-agent-test-abstract", 0, "failed"),
            # the process held these sockets when the agent read the events: their local ends are known
            ("bind", 2, "127.0.0.1", info["srv"], None, 0, "succeeded"),
            ("connect", 2, "127.0.0.1", info["cli"], "127.0.0.1", info["srv"], "succeeded"),
            ("accept", 2, "127.0.0.1", info["srv"], "127.0.0.1", info["cli"], "succeeded"),
        ][: len(got)]
    )
    assert len(got) == 8
    assert [r["protocol"] for r in rows[5:]] == [6, 6, 6] and rows[0]["protocol"] == 0  # a failed call: not read
    flow = community_id(6, "127.0.0.1", "127.0.0.1", info["cli"], info["srv"])
    assert [r["community_id"] for r in rows] == [None] * 6 + [flow, flow]
    assert {r["process_start_time"] for r in rows} == {start} and start is not None
    assert {(r["uid"], r["parent"]) for r in rows} == {(os.getuid(), os.getpid())}
    assert lookups["found"] >= 3  # other processes on this machine make socket calls too
    assert rows[0]["fd"] == str(info["c4fd"]) and rows[0]["path"] == os.path.realpath(sys.executable)
    assert rows[2]["socket"] == path and rows[4]["socket"] == "@zeek-agent-test-abstract"
    assert all(r["auid"] is not None and r["time"] > 0 for r in rows)


# The i386 syscall ABI from a 64-bit process: ``int 0x80`` with arguments in memory below 4 GiB.
IA32_CHILD = r"""
import ctypes, json, mmap, os, socket, struct, sys

libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
MAP_32BIT = 0x40
base = libc.mmap(None, 4096, 7, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_32BIT, -1, 0)
if base in (None, ctypes.c_void_p(-1).value) or base >= 1 << 32:
    print(json.dumps({"error": "no memory below 4 GiB for int 0x80 arguments"})); sys.exit(0)

def int80(eax, ebx, ecx, edx=0):
    # push rbx; mov eax, ebx, ecx, edx; int 0x80; pop rbx; ret  (the i386 syscall ABI from a 64-bit process)
    code = (b"\x53" + b"\xb8" + struct.pack("<I", eax) + b"\xbb" + struct.pack("<I", ebx)
            + b"\xb9" + struct.pack("<I", ecx) + b"\xba" + struct.pack("<I", edx) + b"\xcd\x80\x5b\xc3")
    ctypes.memmove(base, code, len(code))
    return ctypes.CFUNCTYPE(ctypes.c_int)(base)()

data = base + 256
def put(blob):
    global data
    addr = data
    ctypes.memmove(addr, blob, len(blob))
    data += (len(blob) + 7) & ~7
    return addr

if sys.argv[1] == "socket":
    port = int(sys.argv[2])
    s = socket.socket()
    sa = put(struct.pack("<H", socket.AF_INET) + struct.pack(">H", port) + socket.inet_aton("127.0.0.1") + b"\0" * 8)
    args = put(struct.pack("<III", s.fileno(), sa, 16))
    ret = int80(102, 3, args)  # socketcall(SYS_CONNECT, args)
    print(json.dumps({"pid": os.getpid(), "fd": s.fileno(), "ret": ret}), flush=True)
else:
    argv = [a.encode() + b"\0" for a in sys.argv[2:]]
    ptrs = [put(a) for a in argv]
    vec = put(struct.pack(f"<{len(ptrs) + 1}I", *ptrs, 0))
    env = put(struct.pack("<I", 0))
    print(json.dumps({"pid": os.getpid()}), flush=True)
    ret = int80(11, ptrs[0], vec, env)  # execve(argv[0], argv, {}) through the i386 table
    print(json.dumps({"error": f"execve returned {ret}"}), flush=True)
"""


async def test_32bit_abi_exec_and_socketcall(audit_state) -> None:
    """execve and socketcall(SYS_CONNECT) through the i386 table (arch=40000003) are captured."""
    if os.uname().machine != "x86_64":
        pytest.skip(f"the int 0x80 helper is x86_64 code; this is {os.uname().machine}")
    sink = Collector()
    source = AuditSource(sink, socket_events=True)
    await start_or_skip(source)
    try:
        port = closed_port()
        out = subprocess.run([sys.executable, "-c", IA32_CHILD, "socket", str(port)], capture_output=True, text=True)
        sock = json.loads(out.stdout)
        if "error" in sock or sock["ret"] == -38:  # ENOSYS: the kernel has no IA32 emulation
            pytest.skip(f"no i386 syscalls from a 64-bit process here: {sock}")
        out = subprocess.run(
            [sys.executable, "-c", IA32_CHILD, "exec", TRUE, "ia32 exec", "x"], capture_output=True, text=True
        )
        execd = json.loads(out.stdout.splitlines()[0])
        assert out.returncode == 0 and len(out.stdout.splitlines()) == 1, out.stdout + out.stderr
        (srow,) = await sink.wait_for("socket_events", lambda r: r["pid"] == sock["pid"])
        (prow,) = await sink.wait_for("process_events", lambda r: r["pid"] == execd["pid"] and r["path"] == TRUE)
    finally:
        await source.stop()
    assert sock["ret"] == -111  # ECONNREFUSED
    assert (
        srow["action"],
        srow["family"],
        srow["remote_address"],
        srow["remote_port"],
        srow["status"],
        srow["fd"],
    ) == ("connect", 2, "127.0.0.1", port, "failed", str(sock["fd"]))
    assert (prow["syscall"], prow["cmdline"], prow["parent"]) == ("execve", f"{TRUE} ia32 exec x", os.getpid())


OWNER_HELPER = textwrap.dedent(
    """
    import os, select, signal, sys
    sys.path.insert(0, sys.argv[1])
    from eventsources.audit.netlink import AuditNetlink, open_audit_socket
    sock = open_audit_socket(rcvbuf=8 << 20)
    nl = AuditNetlink(sock)
    nl.set_status(pid=os.getpid())
    nl.set_status(enabled=1)
    print("ready", flush=True)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    try:
        sock.setblocking(False)
        while True:  # an auditd: drain what the kernel sends us
            r, _, _ = select.select([sock, sys.stdin], [], [], 1.0)
            if sys.stdin in r and not sys.stdin.readline():
                break
            if sock in r:
                try:
                    while sock.recv(65536):
                        pass
                except BlockingIOError:
                    pass
    finally:
        sock.setblocking(True)
        nl.set_status(pid=0)
    """
)


async def test_read_only_next_to_another_owner(audit_state) -> None:
    helper = subprocess.Popen(
        [sys.executable, "-c", OWNER_HELPER, REPO], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert helper.stdout.readline().strip() == "ready"
        assert kernel_state()[0].pid == helper.pid
        with pytest.raises(SourceUnavailable, match=f"pid {helper.pid}"):
            await AuditSource(Collector(), mode="owner").start()
        assert kernel_state()[0].pid == helper.pid

        sink = Collector()
        source = AuditSource(sink)
        try:
            await source.start()
        except SourceUnavailable as exc:
            pytest.skip(f"the kernel refuses the audit multicast group: {exc}")
        try:
            status = source.status()
            assert status.mode == "read-only"
            assert f"pid {helper.pid}" in status.detail and "multicast" in status.detail
            st, rules = kernel_state()
            assert st.pid == helper.pid  # not taken over
            assert len([r for r in rules if r.key == DEFAULT_KEY]) == 2
            p = subprocess.Popen([TRUE, "read-only mode"])
            p.wait()
            rows = await sink.wait_for("process_events", lambda r: r["pid"] == p.pid)
        finally:
            await source.stop()
        assert [r["cmdline"] for r in rows] == [f"{TRUE} read-only mode"]
        st, rules = kernel_state()
        assert st.pid == helper.pid and not [r for r in rules if r.key == DEFAULT_KEY]
    finally:
        helper.stdin.close()
        helper.wait(timeout=10)
    assert helper.returncode == 0


async def test_failed_start_restores_everything(audit_state) -> None:
    # a key longer than the kernel's AUDIT_MAX_KEY_LEN (256): AUDIT_ADD_RULE fails after pid/enabled/backlog were set
    source = AuditSource(Collector(), key="k" * 300)
    with pytest.raises(SourceUnavailable, match="adding the audit rule"):
        await source.start()
    st, rules = kernel_state()
    assert (st.enabled, st.pid, st.backlog_limit, st.backlog_wait_time) == (
        audit_state.enabled,
        audit_state.pid,
        audit_state.backlog_limit,
        audit_state.backlog_wait_time,
    )
    assert tuple(r.raw for r in rules) == audit_state.rules
    assert source.status().mode == "failed" and "adding the audit rule" in source.status().detail
    await source.stop()  # safe after a failed start


CRASHING_AGENT = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    sys.path.insert(0, sys.argv[1])
    from eventsources.audit.source import AuditSource
    async def main():
        src = AuditSource(lambda t, r: None, socket_events=True)
        await src.start()
        if sys.argv[2] == "term":
            loop = asyncio.get_running_loop()
            done = asyncio.Event()
            loop.add_signal_handler(signal.SIGTERM, done.set)
            print("ready", flush=True)
            await done.wait()
            await src.stop()
            print("stopped", flush=True)
        elif sys.argv[2] == "raise":
            print("ready", flush=True)
            raise RuntimeError("the daemon failed without calling stop()")
        else:
            print("ready", flush=True)
            await asyncio.sleep(3600)
    asyncio.run(main())
    """
)


async def test_sigterm_restores_and_crash_leftovers_are_removed(audit_state) -> None:
    # SIGTERM: the daemon's handler calls stop(); everything is put back
    agent = subprocess.Popen([sys.executable, "-c", CRASHING_AGENT, REPO, "term"], stdout=subprocess.PIPE, text=True)
    line = agent.stdout.readline().strip()
    if line != "ready":
        agent.wait(10)
        pytest.skip(f"the agent could not start audit (kernel refused?): exit {agent.returncode}")
    assert kernel_state()[0].pid == agent.pid
    agent.send_signal(signal.SIGTERM)
    assert agent.stdout.readline().strip() == "stopped"
    agent.wait(10)
    st, rules = kernel_state()
    assert (st.enabled, st.pid, st.backlog_limit, st.backlog_wait_time) == (
        audit_state.enabled,
        audit_state.pid,
        audit_state.backlog_limit,
        audit_state.backlog_wait_time,
    )
    assert tuple(r.raw for r in rules) == audit_state.rules

    # an unhandled exception that never reaches stop(): restored at interpreter exit
    agent = subprocess.Popen(
        [sys.executable, "-c", CRASHING_AGENT, REPO, "raise"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert agent.stdout.readline().strip() == "ready"
    assert "RuntimeError" in agent.communicate(timeout=10)[1] and agent.returncode == 1
    st, rules = kernel_state()
    assert (st.enabled, st.pid, st.backlog_limit, st.backlog_wait_time) == (
        audit_state.enabled,
        audit_state.pid,
        audit_state.backlog_limit,
        audit_state.backlog_wait_time,
    )
    assert tuple(r.raw for r in rules) == audit_state.rules

    # SIGKILL: the rules stay behind; the next start removes them (their agent is dead)
    agent = subprocess.Popen([sys.executable, "-c", CRASHING_AGENT, REPO, "kill"], stdout=subprocess.PIPE, text=True)
    assert agent.stdout.readline().strip() == "ready"
    agent.kill()
    agent.wait(10)
    leftovers = [r for r in kernel_state()[1] if r.key == DEFAULT_KEY]
    ours = sum(len(agent_rules(arch, socket_events=True)) for arch in native_abis())  # 4 on x86_64 (socketcall)
    assert len(leftovers) == ours and all(r.field_value(0) == agent.pid for r in leftovers)
    # a rule of another *live* agent with our key is not touched
    live = build_rule(native_abis()[0], ("execve",), exclude_pid=os.getppid())
    ctl = AuditNetlink(open_audit_socket())
    try:
        ctl.add_rule(live)
        source = AuditSource(Collector())
        await start_or_skip(source)
        try:
            assert source.status().extra["stale_rules_removed"] == ours
            assert source.status().mode == "owner"
        finally:
            await source.stop()
        remaining = [r.raw for r in kernel_state()[1] if r.key == DEFAULT_KEY]
        assert remaining == [live]
        ctl.delete_rule(live)
    finally:
        ctl.close()


async def test_cancelled_start_restores(audit_state) -> None:
    source = AuditSource(Collector(), socket_events=True)
    task = asyncio.create_task(source.start())
    await asyncio.sleep(0)  # start() now waits for its setup thread
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    st, rules = kernel_state()
    assert (st.enabled, st.pid, st.backlog_limit, st.backlog_wait_time) == (
        audit_state.enabled,
        audit_state.pid,
        audit_state.backlog_limit,
        audit_state.backlog_wait_time,
    )
    assert tuple(r.raw for r in rules) == audit_state.rules
    assert source.status().mode == "inactive"
    await source.stop()


REFUSED_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, sys.argv[1])
    from eventsources.audit.source import AuditSource
    from eventsources.base import SourceUnavailable
    async def main():
        src = AuditSource(lambda t, r: None)
        try:
            await src.start()
        except SourceUnavailable as exc:
            print(f"{src.status().mode}|{exc}")
            return
        await src.stop()
        print("started")
    asyncio.run(main())
    """
)


@pytest.mark.parametrize(
    ("unshare", "reason"),
    [(["-U", "-r", "-n"], "initial user namespace"), (["-p", "-f", "--mount-proc"], "initial pid namespace")],
    ids=["userns", "pidns"],
)
def test_kernel_refusal_is_source_unavailable(audit_state, unshare, reason) -> None:
    try:
        out = subprocess.run(
            ["unshare", *unshare, sys.executable, "-c", REFUSED_CHILD, REPO], capture_output=True, text=True, timeout=30
        )
    except FileNotFoundError:
        pytest.skip("no unshare(1) on this host")
    if out.returncode != 0 and "unshare" in out.stderr:
        pytest.skip(f"cannot create the namespace here: {out.stderr.strip()}")
    mode, _, message = out.stdout.strip().partition("|")
    assert mode == "failed", out.stdout + out.stderr
    assert reason in message and "AUDIT_GET refused" in message


STATE_AGENT = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, sys.argv[1])
    from eventsources.audit.source import AuditSource
    async def main():
        src = AuditSource(lambda t, r: None, state_path=sys.argv[2])
        await src.start()
        print(src.status().mode, flush=True)
        await asyncio.sleep(3600)
    asyncio.run(main())
    """
)

OURS = (1, 8192, 0)  # (enabled, backlog_limit, backlog_wait_time) as owner mode sets them


def _baseline(audit_state) -> tuple[int, int, int]:
    """The (enabled, backlog_limit, backlog_wait_time) to restore to; made unlike OURS so a restore shows."""
    found = (audit_state.enabled, audit_state.backlog_limit, audit_state.backlog_wait_time)
    if found[0] == 2:
        pytest.skip("audit configuration is locked (enabled=2): owner mode cannot run")
    if found == OURS:  # the fixture puts the real state back afterwards
        ctl = AuditNetlink(open_audit_socket())
        try:
            ctl.set_status(backlog_limit=321)
            ctl.set_status(backlog_wait_time=4321)
            ctl.set_status(enabled=0)
        finally:
            ctl.close()
        return (0, 321, 4321)
    return found


def _settings(st) -> tuple[int, int, int]:
    return (st.enabled, st.backlog_limit, st.backlog_wait_time)


def assert_restored(audit_state, settings: tuple[int, int, int]) -> None:
    """The kernel has ``settings``, the audit pid and exactly the rules the test found."""
    st, rules = kernel_state()
    assert _settings(st) == settings and st.pid == audit_state.pid
    assert tuple(r.raw for r in rules) == audit_state.rules


async def test_state_file_restores_what_a_killed_run_changed(audit_state, tmp_path) -> None:
    from eventsources.audit.state import load_state

    baseline = _baseline(audit_state)
    path = tmp_path / "state" / "audit-state.json"
    agent = subprocess.Popen([sys.executable, "-c", STATE_AGENT, REPO, str(path)], stdout=subprocess.PIPE, text=True)
    line = agent.stdout.readline().strip()
    if line != "owner":
        agent.kill()
        agent.wait(10)
        pytest.skip(f"the agent could not start audit in owner mode (kernel refused?): {line!r}")
    saved = load_state(str(path))  # written before the agent changed anything
    assert saved is not None and (saved.enabled, saved.backlog_limit, saved.backlog_wait_time) == baseline
    assert saved.agent_pid == agent.pid and saved.pid_free == (audit_state.pid == 0)
    agent.kill()
    agent.wait(10)
    st, _ = kernel_state()
    assert _settings(st) == OURS  # what the killed run set stays: nothing ran at its exit
    assert path.exists()

    # the next start finds the file: the kernel state is the crashed run's, the file is what to put back
    source = AuditSource(Collector(), state_path=str(path))
    await start_or_skip(source)
    try:
        assert source.status().mode == "owner"
        assert source.crash_recovered == saved and source.status().extra["crash_recovered"] is True
        assert f"pid {agent.pid}" in source.status().detail
        assert load_state(str(path)) == saved  # not overwritten with the crashed run's settings
        st, _ = kernel_state()
        assert _settings(st) == OURS and st.pid == os.getpid()
    finally:
        await source.stop()
    assert_restored(audit_state, baseline)
    assert not path.exists()
    assert not list(path.parent.iterdir())  # no temp files left either


async def test_corrupt_state_file_is_ignored_with_a_warning(audit_state, tmp_path, caplog) -> None:
    from eventsources.audit.state import load_state

    baseline = _baseline(audit_state)
    path = tmp_path / "audit-state.json"
    path.write_text('{"format": 1, "enabled": "yes"')
    source = AuditSource(Collector(), state_path=str(path))
    with caplog.at_level("WARNING", logger="eventsources.audit.source"):
        await start_or_skip(source)
    try:
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert any(str(path) in w and "corrupt" in w for w in warnings), warnings
        assert source.status().mode == "owner" and source.crash_recovered is None
        saved = load_state(str(path))  # a fresh start: the state found now replaces the corrupt file
        assert saved is not None and (saved.enabled, saved.backlog_limit, saved.backlog_wait_time) == baseline
        assert saved.agent_pid == os.getpid()
        assert _settings(kernel_state()[0]) == OURS
    finally:
        await source.stop()
    assert_restored(audit_state, baseline)
    assert not path.exists()
