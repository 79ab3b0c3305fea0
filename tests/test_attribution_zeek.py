"""Attribution against the real Zeek: its conn.log, its Community ID.

Zeek captures the test's loopback traffic (community-id logging on); real clients of
several users connect to a real server; the agent's audit source and tables give the
rows.  The Community ID Zeek writes must be the one protocol.community_id computes, and
``collectord attribute`` over Zeek's own conn.log must name each connection's processes
and users.  Without a Zeek binary (PATH or $ZEEK) the test skips, saying so.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from collector.attribution import EngineConfig, Table
from collector.attribution.connlog import read_conn_log
from collector.attribution.engine import AttributionEngine
from collector.attribution.offline import main as attribute_main
from collector.attribution.persist import save_engine, state_path
from tests import _attribution_lab as lab
from tests.test_attribution_live import (
    BASH,
    PYTHON,
    SERVER_UID,
    USERS,
    Agent,
    Client,
    _require_tools,
    feed_events,
    host_setup,
    run_client,
)
from tests.test_attribution_offline import read_zeek_ascii

pytestmark = pytest.mark.audit


def zeek_binary() -> str:
    found = os.environ.get("ZEEK") or shutil.which("zeek")
    if not found:
        pytest.skip("no Zeek binary: put zeek on PATH or set $ZEEK (see .ci/run)")
    return found


class ZeekOnInterface:
    """zeek -i IFACE -f FILTER with community-id logging, in ``workdir``; stopped with SIGTERM."""

    def __init__(self, zeek: str, workdir: Path, iface: str, bpf: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.proc = subprocess.Popen(
            [zeek, "-C", "-i", iface, "-f", bpf, "policy/protocols/conn/community-id-logging"],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_listening(self) -> None:
        assert self.proc.stderr is not None
        seen = []
        for line in self.proc.stderr:
            seen.append(line)
            if line.startswith("listening on"):
                return
        raise RuntimeError("zeek did not start capturing: " + "".join(seen))

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


async def test_collectord_attribute_on_real_zeek_conn_log(audit_state, tmp_path) -> None:
    zeek = zeek_binary()
    _require_tools()
    agent = Agent()
    await agent.start()
    clients: list[Client] = []
    try:
        with lab.Server(["127.0.0.6", "::1"], uid=SERVER_UID, hold=True) as server:
            engine = AttributionEngine(EngineConfig(clock_skew=0.5))
            await asyncio.to_thread(host_setup, engine, "this-host")
            bpf = " or ".join(f"tcp port {p}" for p in server.ports.values())
            capture = ZeekOnInterface(zeek, tmp_path / "zeek", "lo", bpf)
            try:
                await asyncio.wait_for(asyncio.to_thread(capture.wait_listening), 60)
                for uid in USERS:
                    for address in ("127.0.0.6", "::1"):
                        clients.append(await run_client(agent, server, uid, address, hold=True))
            finally:
                await asyncio.to_thread(capture.stop)
            for table in (Table.PROCESS_EVENTS, Table.SOCKET_EVENTS):
                feed_events(engine, "this-host", agent.results(table), table)
    finally:
        await agent.source.stop()
    conn_log = tmp_path / "zeek" / "conn.log"
    assert conn_log.exists(), sorted(p.name for p in (tmp_path / "zeek").iterdir())
    zeek_rows = read_zeek_ascii(conn_log)
    assert len(zeek_rows) == len(clients)

    def zeek_row(client: Client) -> dict[str, str]:
        """Zeek's record of the client's connection (ports come back: the last one before the accept)."""
        peer = client.accepted.peer
        rows = [r for r in zeek_rows if int(r["id.orig_p"]) == peer[1] and float(r["ts"]) <= client.accepted.t + 0.5]
        return max(rows, key=lambda r: float(r["ts"]))

    # the Community ID Zeek computed is ours, for IPv4 and IPv6
    conns = list(read_conn_log(str(conn_log)))
    assert {c.uid: c.community_id for c in conns} == {r["uid"]: r["community_id"] for r in zeek_rows}
    # collectord attribute over Zeek's own conn.log, from the persisted state
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    save_engine(engine, state_path(state_dir))
    out = tmp_path / "out"
    assert attribute_main([str(conn_log), "-o", str(out), "--state-dir", str(state_dir)]) == 0
    answers = {r["uid"]: r for r in read_zeek_ascii(out / "osq-attribution.log")}
    assert len(answers) == len(clients)
    for client in clients:
        zeek = zeek_row(client)
        row = answers[zeek["uid"]]
        assert row["community_id"] == zeek["community_id"]
        assert (row["orig_match"], row["orig_pid"], row["orig_user_id"], row["orig_path"]) == (
            "socket_event",
            str(client.pid),
            str(client.uid),
            BASH,
        )
        assert row["orig_user"] == (USERS[client.uid] or "-")
        assert (row["resp_match"], row["resp_pid"], row["resp_user"], row["resp_path"]) == (
            "socket_event",
            str(server.pid),
            "www-data",
            PYTHON,
        )
    user_connections = read_zeek_ascii(out / "osq-user_connections.log")
    mine = {int(r["pid"]): r for r in user_connections if r["pid"] in {str(c.pid) for c in clients}}
    assert {c.pid for c in clients} == set(mine)
    for client in clients:
        assert mine[client.pid]["local_port"] == str(client.accepted.peer[1])
        assert mine[client.pid]["community_id"] == zeek_row(client)["community_id"]
