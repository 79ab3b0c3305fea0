"""End to end: a real agentd subprocess with a 1 s schedule sees a process and a port come and go."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.control import remote_query

REPO = Path(__file__).resolve().parent.parent


def wait_for(predicate, what: str, timeout: float = 60.0):
    """Poll ``predicate`` until it returns something truthy (bounded; not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def read_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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
        [sys.executable, "-m", "agent.daemon", "--config", str(tmp_path / "agentd.conf"),
         "--state-dir", str(tmp_path / "state"), "--log-dir", str(tmp_path / "log"), "--socket", sock_path],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
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
            lines = read_lines(results)
            proc = [l for l in lines if l["name"] == "sleeper" and l["action"] == "added"]
            ports = [l for l in lines if l["name"] == "port" and l["action"] == "added"]
            return (proc, ports) if proc and ports else None

        proc_lines, port_lines = wait_for(added, "added lines for the process and the port")
        assert proc_lines[0]["columns"] == {"pid": str(sleeper.pid), "name": "sleep", "cmdline": f"sleep {token}"}
        assert proc_lines[0]["hostIdentifier"] and proc_lines[0]["counter"] >= 1
        assert port_lines[0]["columns"] == {
            "pid": str(os.getpid()), "port": str(port), "address": "127.0.0.1", "protocol": "6"
        }

        sleeper.kill()
        sleeper.wait()
        listener.close()

        def removed():
            lines = read_lines(results)
            proc = [l for l in lines if l["name"] == "sleeper" and l["action"] == "removed"]
            ports = [l for l in lines if l["name"] == "port" and l["action"] == "removed"]
            return (proc, ports) if proc and ports else None

        proc_removed, port_removed = wait_for(removed, "removed lines for the process and the port")
        assert proc_removed[0]["columns"] == proc_lines[0]["columns"]
        assert port_removed[0]["columns"] == port_lines[0]["columns"]
        assert proc_removed[0]["counter"] == proc_lines[0]["counter"] + 1
        # Each change is reported once.
        lines = read_lines(results)
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
