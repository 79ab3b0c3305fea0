"""Real agentd -> real collectord -> the strict double of Zeek's endpoint (tests/zeek_double.py).

The double replays what the package's table scripts subscribe (and the README example), checks
every event against the package's declarations (count vs int, records as vectors) and keeps the
delivery marks across its restarts, as the package's state file does. Kernel events are off
unless a test needs them (then the audit_state fixture serialises and restores kernel audit).
The same pipeline with the real Zeek is in tests/test_zeek_real.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from collector.zeek.values import Enum
from tests._collector import Agentd, Collectord, growing_query
from tests._wait import wait_for
from tests.zeek_double import (
    README_EXAMPLE_SQL,
    README_EXAMPLE_TYPE,
    DoubleThread,
    Flavour,
    ScriptRequest,
    package_subscriptions,
    request_record,
)

ROOT = Path(__file__).resolve().parent.parent
GROW_TYPE = "event(resultInfo:osquery::ResultInfo, n:count, text:string)"


@pytest.fixture(params=list(Flavour), ids=lambda f: f.value)
def double(request):
    """The double as Zeek 7.2+'s endpoint and as Broker's (Zeek 6.0-7.1). Either way, nothing
    collectord sends may be refused: Zeek 7.2+ would answer an error, Zeek 6.0-7.1 would drop the
    event inside Zeek with a reporter error and tell collectord nothing. To Broker's endpoint every
    frame after the ack must be longer than its reader's 2,048 bytes (collector.zeek.link)."""
    refused: list[tuple[str, str]] = []
    dropped: list[str] = []
    short: list[int] = []  # Broker flavour: frames Broker's reader could take with the next
    thread = DoubleThread(flavour=request.param, errors_sent=refused, reporter_errors=dropped, short_frames=short)
    thread.decls.declare_event("host_server_apps", README_EXAMPLE_TYPE)
    thread.decls.declare_event("osquery::grow", GROW_TYPE)
    yield thread
    thread.close()
    assert refused == [] and dropped == [] and short == []


@pytest.fixture
def processes():
    started: list[Any] = []
    yield started
    for process in started:
        process.close()


def agent_config(server: Collectord, *, events: bool = False, **extra: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"schedule_splay_percent": 0, "watchdog_level": -1}
    options.update({"audit_allow_sockets": True} if events else {"disable_events": True})
    return {
        "options": options,
        "collector": {"urls": [server.url], "enroll_secret_file": str(server.state / "enroll-secret"), **extra},
    }


def start(tmp_path: Path, double: DoubleThread, processes: list[Any], **agent: Any) -> tuple[Collectord, Agentd]:
    (tmp_path / "c").mkdir()
    (tmp_path / "a").mkdir()
    server = Collectord(tmp_path / "c", extra_args=["--zeek", double.url])
    processes.append(server)
    server.start()
    agentd = Agentd(tmp_path / "a", agent_config(server, **agent))
    processes.append(agentd)
    agentd.start()
    return server, agentd


def rows(double: DoubleThread, name: str, everything: bool = False) -> list[tuple[Any, ...]]:
    events = double.everything() if everything else double.snapshot()
    return [e.args for e in events if e.name == name]


def types(args: tuple[Any, ...]) -> list[str]:
    return [type(a).__name__ for a in args[1:]]


def test_listening_ports_processes_and_the_readme_example_arrive_typed(tmp_path, double, processes):
    decls = double.decls
    example = request_record(decls, "host_server_apps", README_EXAMPLE_SQL, "ADD", 10)
    double.start(requests=[*package_subscriptions(decls), ScriptRequest("osquery::subscribe_v1", (example,))])
    server_socket = socket.socket()
    server_socket.bind(("0.0.0.0", 0))
    server_socket.listen()
    port = server_socket.getsockname()[1]
    try:
        server, _ = start(tmp_path, double, processes)
        apps = wait_for(lambda: [r for r in rows(double, "host_server_apps") if r[3] == port], "the README example")
        comm = Path("/proc/self/comm").read_text().strip()
        info, username, name, port_number = apps[0]
        assert info[1:] == [Enum("osquery::ADD"), ""] and info[0]
        assert (username, name, port_number) == ("root", comm, port) and type(port_number) is int
        ports = wait_for(
            lambda: [r for r in rows(double, "osquery::table_listening_ports") if r[7] == port], "listening_ports"
        )
        assert ports[0][1:] == (os.getpid(), server_socket.fileno(), 2, ports[0][4], 6, "0.0.0.0", port)
        assert types(ports[0]) == ["int"] * 5 + ["str", "int"]
        mine = wait_for(
            lambda: [r for r in rows(double, "osquery::table_processes") if r[1] == os.getpid()], "our process"
        )
        assert mine[0][0][1] == Enum("osquery::ADD") and mine[0][2] == comm
        assert types(mine[0]) == ["int", "str", "str", "str", "str", "str", "int", "int", "int", "int", "int", "int"]
        # the log format of a Zeek status line and the operator's view
        token = str(server.state / "operator-token")
        status = subprocess.run(
            [sys.executable, "-m", "agent.cli", "--collector", server.url, "--token-file", token, "status", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert status.returncode == 0, status.stderr
        body = json.loads(status.stdout)
        (zeek,) = body["components"]
        assert zeek["name"] == f"zeek:127.0.0.1:{double.double.port}" and zeek["state"] == "ready"
        assert zeek["counters"]["subscriptions"] == 10 and zeek["counters"]["delivered_batches"] > 0
        assert body["hosts_online"] == 1
    finally:
        server_socket.close()
    assert double.call(lambda: double.double.repeated_batches) == 0


@pytest.mark.audit
def test_process_and_socket_events_from_audit_arrive_typed(audit_state, tmp_path, double, processes):
    # audit_state first: it is checked after everything else stopped (agentd gives audit back as it found it)
    double.start(requests=package_subscriptions(double.decls))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    agentd = None
    try:
        agentd = start(tmp_path, double, processes, events=True)[1]
        wait_for(lambda: rows(double, "osquery::table_processes"), "the agent's first results")
        marker = f"zeek-e2e-{uuid.uuid4().hex}"
        code = f"import socket; socket.create_connection(('127.0.0.1', {port})).close()  # {marker}"
        child = subprocess.run([sys.executable, "-c", code], timeout=60, check=True)
        assert child.returncode == 0
        execs = wait_for(
            lambda: [r for r in rows(double, "osquery::table_process_events") if marker in r[3]], "the exec"
        )
        info, pid, path, _, cwd, uid, gid, _, parent = execs[0]
        assert info[1] == Enum("osquery::ADD") and path == os.path.realpath(sys.executable)
        assert (uid, gid, parent, cwd) == (0, 0, os.getpid(), os.getcwd())
        assert types(execs[0]) == ["int", "str", "str", "str", "int", "int", "int", "int"]
        connects = wait_for(
            lambda: [
                r
                for r in rows(double, "osquery::table_socket_events")
                if r[1] == "connect" and r[2] == pid and r[10] == port
            ],
            "the connect",
        )
        row = connects[0]
        fd_str, spath, family, remote, rport, success = row[3], row[4], row[5], row[8], row[10], row[12]
        assert (family, remote, rport, spath, success) == (2, "127.0.0.1", port, path, 1)
        assert fd_str.isdigit()  # socket_events.fd is TEXT: the original scripts' fd_str: string
        assert types(row) == ["str", "int", "str", "str", *["int"] * 2, "str", "str", *["int"] * 4]
    finally:
        listener.close()
        if agentd is not None:
            assert agentd.stop() == 0


def test_zeek_restarts_and_collectord_sigkill_lose_nothing_and_repeat_only_a_cut_batch(tmp_path, double, processes):
    total = 3000
    grow = request_record(double.decls, "osquery::grow", growing_query(time.time(), total, 250), "ADD", 1)
    # a busy Zeek (2 ms per message): batches are in flight when it restarts or collectord dies
    double.start(requests=[ScriptRequest("osquery::subscribe_v1", (grow,))], slow=0.002)
    server, agentd = start(tmp_path, double, processes)

    def delivered() -> Counter[int]:
        return Counter(int(r[1]) for r in rows(double, "osquery::grow", everything=True))

    wait_for(lambda: len(delivered()) >= 400, "the first rows in Zeek")
    double.restart(abort=True)
    wait_for(lambda: len(delivered()) >= 1200, "rows after Zeek's restart")
    server.kill()
    server.start()
    wait_for(lambda: len(delivered()) >= 1800, "rows after collectord's SIGKILL")
    double.restart()
    wait_for(lambda: len(delivered()) >= total, "every row", timeout=180)
    accepted = Counter(r["columns"]["n"] for r in server.rows() if r["name"].startswith("zeek-"))
    assert sorted(accepted) == list(range(total)) and set(accepted.values()) == {1}
    got = delivered()
    assert sorted(got) == list(range(total)), "rows collectord accepted are missing in Zeek"
    # Only rows of a batch a closed connection cut off mid-way arrive again (the link's documented limit).
    cut = Counter(
        int(e.args[1]) for _, _, events in double.double.state.cut for e in events if e.name == "osquery::grow"
    )
    repeats = {n: c - 1 for n, c in got.items() if c > 1}
    assert all(repeats[n] <= cut[n] for n in repeats), (repeats, cut)
    assert len(repeats) <= 100 * len(double.double.state.cut)  # a cut repeats at most one batch (100 rows)
    assert double.call(lambda: double.double.repeated_batches) == 0
    assert agentd.status().uplink.dropped_rows == 0


def test_zeek_restarting_with_the_same_subscriptions_changes_nothing_on_the_hosts(tmp_path, double, processes):
    requests = package_subscriptions(double.decls)
    double.start(requests=requests)
    server, agentd = start(tmp_path, double, processes)
    wait_for(lambda: agentd.status().uplink.subscriptions == 9, "the package's 9 subscriptions on the host")
    wait_for(lambda: rows(double, "osquery::table_processes"), "results")
    subscribed = agentd.log().count("collector subscription ")
    assert subscribed == 9
    for restart in (2, 3):
        double.restart()  # a new Zeek process (new zeek_id) replays the same subscriptions
        wait_for(lambda r=restart: server.log().count("synced with zeek_") >= r, "the replay")
        (line,) = [x for x in server.log().splitlines() if "synced with zeek_" in x][restart - 1 : restart]
        assert "9 subscriptions (0 new, 0 removed)" in line, line
        time.sleep(1.0)  # anything pushed to the host would be in its log by now; nothing may be
        assert agentd.log().count("collector subscription ") == subscribed
        assert agentd.status().uplink.subscriptions == 9
    # the processes' first run is not sent again: the new Zeek continues where the old one was
    pids = Counter(
        r[1] for r in rows(double, "osquery::table_processes", everything=True) if r[0][1] == Enum("osquery::ADD")
    )
    assert pids[os.getpid()] == 1
    # a Zeek that comes back with one subscription less: exactly that one stops on the host
    double.call(lambda: double.double.requests.pop(0))
    double.restart()
    wait_for(lambda: agentd.status().uplink.subscriptions == 8, "the host dropping one subscription")
    assert agentd.log().count(") removed") == 1
