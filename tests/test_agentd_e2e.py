"""End to end: a real agentd subprocess with a 1 s schedule sees a process and a port come and go."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agent.control import ControlError, remote_query
from tests._jsonlines import read_json_lines
from tests._wait import wait_for

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def notify(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(60)
    yield sock
    sock.close()


def test_process_and_port_added_then_removed(tmp_path, notify):
    token = f"{random.randint(1000, 9999)}.{random.randint(100000, 999999)}"  # sleep's unique argument
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]  # reserved now, listening later
    config = {
        "options": {"disable_events": True, "schedule_splay_percent": 0},
        "schedule": {
            "sleeper": {
                "query": f"SELECT pid, name, cmdline FROM processes WHERE cmdline = 'sleep {token}'",
                "interval": 1,
            },
            "port": {
                "query": f"SELECT pid, port, address, protocol FROM listening_ports WHERE port = {port}",
                "interval": 1,
            },
        },
    }
    (tmp_path / "agentd.conf").write_text(json.dumps(config))
    results = tmp_path / "log" / "results.log"
    sock_path = str(tmp_path / "agentd.sock")
    env = {**os.environ, "PYTHONPATH": str(REPO), "NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
    agentd = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.daemon",
            "--config",
            str(tmp_path / "agentd.conf"),
            "--state-dir",
            str(tmp_path / "state"),
            "--log-dir",
            str(tmp_path / "log"),
            "--socket",
            sock_path,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sleeper = None
    try:
        assert notify.recv(4096).startswith(b"READY=1")
        # Both queries ran once with no rows before the system changes.
        wait_for(
            lambda: all(r[1] >= 1 for r in remote_query(sock_path, "SELECT name, executions FROM osquery_schedule")[1]),
            "the first runs",
        )
        sleeper = subprocess.Popen(["sleep", token])
        listener.listen()

        def added():
            lines = read_json_lines(results)
            proc = [l for l in lines if l["name"] == "sleeper" and l["action"] == "added"]
            ports = [l for l in lines if l["name"] == "port" and l["action"] == "added"]
            return (proc, ports) if proc and ports else None

        proc_lines, port_lines = wait_for(added, "added lines for the process and the port")
        assert proc_lines[0]["columns"] == {"pid": str(sleeper.pid), "name": "sleep", "cmdline": f"sleep {token}"}
        assert proc_lines[0]["hostIdentifier"] and proc_lines[0]["counter"] >= 1
        assert port_lines[0]["columns"] == {
            "pid": str(os.getpid()),
            "port": str(port),
            "address": "127.0.0.1",
            "protocol": "6",
        }

        sleeper.kill()
        sleeper.wait()
        listener.close()

        def removed():
            lines = read_json_lines(results)
            proc = [l for l in lines if l["name"] == "sleeper" and l["action"] == "removed"]
            ports = [l for l in lines if l["name"] == "port" and l["action"] == "removed"]
            return (proc, ports) if proc and ports else None

        proc_removed, port_removed = wait_for(removed, "removed lines for the process and the port")
        assert proc_removed[0]["columns"] == proc_lines[0]["columns"]
        assert port_removed[0]["columns"] == port_lines[0]["columns"]
        assert proc_removed[0]["counter"] == proc_lines[0]["counter"] + 1
        # Each change is reported once.
        lines = read_json_lines(results)
        assert len([l for l in lines if l["name"] == "sleeper"]) == 2
        assert len([l for l in lines if l["name"] == "port"]) == 2

        agentd.send_signal(signal.SIGTERM)
        _, err = agentd.communicate(timeout=10)
        assert agentd.returncode == 0, err
        assert "Traceback" not in err
    finally:
        if sleeper is not None and sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
        listener.close()
        if agentd.poll() is None:
            agentd.kill()
            agentd.communicate()


def _start(tmp_path: Path, config: Path, sock_path: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("NOTIFY_SOCKET", None)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.daemon",
            "--config",
            str(config),
            "--state-dir",
            str(tmp_path / "state"),
            "--log-dir",
            str(tmp_path / "log"),
            "--socket",
            sock_path,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_kill_9_between_runs_neither_duplicates_nor_misses(tmp_path):
    """A SIGKILLed agentd's successor reports exactly the changes made while it was down."""
    watched = tmp_path / "watched"
    watched.mkdir()
    config = tmp_path / "agentd.conf"
    config.write_text(
        json.dumps(
            {
                "options": {"disable_events": True, "schedule_splay_percent": 0},
                "schedule": {
                    "files": {"query": f"SELECT filename FROM file WHERE directory = '{watched}'", "interval": 1}
                },
            }
        )
    )
    results = tmp_path / "log" / "results.log"
    sock_path = str(tmp_path / "agentd.sock")

    def ran(times: int) -> bool:
        try:
            return remote_query(sock_path, "SELECT executions FROM osquery_schedule")[1][0][0] >= times
        except ControlError:  # not listening yet (or the stale socket of the killed one)
            return False

    def lines_for(action: str, filename: str) -> list[dict]:
        return [l for l in read_json_lines(results) if l["action"] == action and l["columns"] == {"filename": filename}]

    first = _start(tmp_path, config, sock_path)
    try:
        wait_for(lambda: ran(1), "the first run")
        (watched / "a").touch()
        added_a = wait_for(lambda: lines_for("added", "a"), "a added")
        first.kill()
        first.communicate()
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == -signal.SIGKILL
    # While agentd is down: b appears, a goes.
    (watched / "b").touch()
    (watched / "a").unlink()
    second = _start(tmp_path, config, sock_path)
    try:
        wait_for(lambda: lines_for("added", "b") and lines_for("removed", "a"), "the changes made while down")
        wait_for(lambda: ran(2), "a second run after the changes")
        second.send_signal(signal.SIGTERM)
        _, err = second.communicate(timeout=10)
    finally:
        if second.poll() is None:
            second.kill()
            second.communicate()
    assert second.returncode == 0, err
    lines = read_json_lines(results)
    assert (lines[0]["action"], lines[0]["columns"]) == ("added", {"filename": "a"})
    assert sorted((l["action"], l["columns"]["filename"]) for l in lines[1:]) == [("added", "b"), ("removed", "a")]
    assert added_a[0]["counter"] == 1  # the first run (no rows) was counter 0
    assert {l["counter"] for l in lines[1:]} == {2}  # one change, one bump, across the restart
    assert len({l["unixTime"] for l in lines[1:]}) == 1  # reported by one run of the successor
