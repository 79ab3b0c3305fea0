"""The README's first command: collectord --with-local-agent (what `make run` runs) on the embedded default.

As root the local agentd takes kernel audit: osq-process_events.log and osq-socket_events.log fill
from it, and Ctrl-C (SIGINT to collectord) stops both, the agent first, audit given back as found
(the audit_state fixture checks it).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests._collector import _env

LISTENING = re.compile(r"listening on ws://([^ ]+?)/agent")


def wait_for(predicate, what: str, process: subprocess.Popen[str], log: Path, timeout: float = 90.0):
    """Poll until ``predicate`` is truthy (a bound on waiting, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if process.poll() is not None:
            pytest.fail(f"collectord exited ({process.returncode}) while waiting for {what}:\n{log.read_text()}")
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-4000:]}")


def lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if not line.startswith("#")] if path.exists() else []


@pytest.mark.audit
def test_one_command_runs_the_pipeline_and_ctrl_c_stops_both(audit_state, tmp_path):
    log = tmp_path / "out.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "collector.daemon", "--with-local-agent", "--listen", "127.0.0.1:0"],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=_env(),
        )
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    logs = tmp_path / "logs"
    try:
        wait_for(lambda: LISTENING.search(log.read_text()), "collectord listening", process, log)
        for name in ("osq-processes", "osq-listening_ports", "osq-users", "osq-interfaces", "osq-mounts"):
            wait_for(lambda n=name: lines(logs / f"{n}.log"), f"{name}.log", process, log)
        marker = f"make-run-{uuid.uuid4().hex}"
        code = f"import socket; socket.create_connection(('127.0.0.1', {port})).close()  # {marker}"
        subprocess.run([sys.executable, "-c", code], timeout=60, check=True)
        execs = wait_for(
            lambda: [r for r in lines(logs / "osq-process_events.log") if marker in r], "the exec", process, log
        )
        pid = execs[0].split("\t")[2]
        wait_for(
            lambda: [
                r
                for r in lines(logs / "osq-socket_events.log")
                if r.split("\t")[2:4] == ["connect", pid] and r.split("\t")[11] == str(port)
            ],
            "the connect in osq-socket_events.log",
            process,
            log,
        )
        process.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends collectord
        assert process.wait(60) == 0, log.read_text()
    finally:
        listener.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert "local agent stopped (status 0)" in text and "agentd stopped" in text and "collectord stopped" in text
    assert text.index("agentd stopped") < text.index("collectord stopped")
    assert "Traceback" not in text
    # Zeek rotates its logs at exit when rotation is on; so does collectord
    assert not (logs / "osq-processes.log").exists() and list(logs.glob("osq-processes.*.log"))
    assert (tmp_path / "state" / "agentd.db").exists() or any((tmp_path / "state").iterdir())
    assert os.path.isdir(tmp_path / "collector-state")
