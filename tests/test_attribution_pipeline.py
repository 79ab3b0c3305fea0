"""Attribution through the whole pipeline: real agentd (kernel audit) -> real collectord.

collectord subscribes the agent to the attribution queries by itself (attribution is on by
default), learns from the streamed results, persists its state, writes
osq-user_connections.log, and ``collectord attribute`` over a conn.log answers every
connection with the pid and user the test knows, also after collectord restarted.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from collector.attribution.logs import USER_CONNECTIONS_PATH
from collector.attribution.persist import load_engine, state_path
from collector.attribution.queries import SUBSCRIPTIONS
from collector.zeek.ztypes import parse_type
from collector.zeeklog.writer import LogField, ZeekLogWriter
from tests import _attribution_lab as lab
from tests._collector import Agentd, Collectord, _env
from tests._wait import wait_for
from tests.test_attribution_live import BASH, PYTHON, SERVER_UID, USERS, _require_tools
from tests.test_attribution_offline import read_zeek_ascii

pytestmark = pytest.mark.audit

CONN_FIELDS = [
    LogField(name, parse_type(t))
    for name, t in (
        ("ts", "time"),
        ("uid", "string"),
        ("id.orig_h", "addr"),
        ("id.orig_p", "port"),
        ("id.resp_h", "addr"),
        ("id.resp_p", "port"),
        ("proto", "transport_proto"),
    )
]


def write_conn_log(directory: Path, syns: list[lab.Syn]) -> Path:
    """conn.log as Zeek writes it (its ASCII format, through collectord's Zeek log writer)."""
    import ipaddress

    from collector.zeek.values import Enum, Port, Proto, Time

    writer = ZeekLogWriter(directory, "conn", CONN_FIELDS)
    for syn in syns:
        writer.write(
            [
                Time.from_seconds(syn.ts),
                syn.uid(),
                ipaddress.ip_address(syn.orig_h),
                Port(syn.orig_p, Proto.TCP),
                ipaddress.ip_address(syn.resp_h),
                Port(syn.resp_p, Proto.TCP),
                Enum("tcp"),
            ]
        )
    writer.close()
    return writer.live_path


def attribute(server: Collectord, conn_log: Path, out: Path) -> dict[str, dict[str, str]]:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "collector.daemon",
            "attribute",
            str(conn_log),
            "-o",
            str(out),
            "--state-dir",
            str(server.state),
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return {r["uid"]: r for r in read_zeek_ascii(out / "osq-attribution.log")}


def test_agentd_to_collectord_to_collectord_attribute(audit_state, tmp_path) -> None:
    _require_tools()
    for d in ("c", "a", "logs"):
        (tmp_path / d).mkdir()
    server = Collectord(
        tmp_path / "c",
        f'[attribution]\nsave_interval = 0.2\nlog_dir = "{tmp_path / "logs"}"\n',
        attribution=True,
    )
    agent = None
    clients: list[tuple[int, int, lab.Accepted]] = []
    try:
        server.start()
        agent = Agentd(
            tmp_path / "a",
            {
                "options": {
                    "audit_allow_sockets": True,
                    "schedule_splay_percent": 0,
                    "watchdog_level": -1,
                    "disable_hardware_events": True,
                },
                "collector": {"urls": [server.url], "enroll_secret_file": str(server.state / "enroll-secret")},
            },
        ).start()
        wait_for(lambda: agent.status().uplink.subscriptions == len(SUBSCRIPTIONS), "the attribution subscriptions")

        def host_known() -> bool:
            path = state_path(server.state)
            return path.exists() and bool(load_engine(path).owners("127.0.0.1", time.time()))

        wait_for(host_known, "the host's addresses at collectord")
        with (
            lab.SynCapture("lo") as capture,
            lab.Server(["127.0.0.8", "::1"], uid=SERVER_UID, think_ms=300) as tcp_server,
        ):
            for uid in (1, 2, 65534, 12345):
                for address in ("127.0.0.8", "::1"):
                    proc = subprocess.Popen(lab.client_argv(uid, address, tcp_server.ports[address]))
                    accepted = tcp_server.next_accepted()
                    assert proc.wait(30) == 0 and accepted.client_pid == proc.pid
                    clients.append((proc.pid, uid, accepted))
            syns = capture.close()

            def all_learned() -> bool:
                engine = load_engine(state_path(server.state))
                connects = {v.pid for v in engine.user_connections()}
                return {pid for pid, _, _ in clients} <= connects

            wait_for(all_learned, "every client's connect in collectord's state")
            server_pid = tcp_server.pid
        mine = [s for s in syns if s.resp_p in tcp_server.ports.values()]
        conn_log = write_conn_log(tmp_path / "zeek", mine)
        expected = {}
        for pid, uid, accepted in clients:
            syn = lab.syn_of(mine, accepted)
            assert syn is not None
            expected[(syn.orig_h, syn.orig_p)] = (pid, uid)

        def check(answers: dict[str, dict[str, str]]) -> None:
            assert len(answers) == len(clients)
            for row in answers.values():
                pid, uid = expected[(row["id.orig_h"], int(row["id.orig_p"]))]
                assert (row["orig_match"], row["orig_pid"], row["orig_user_id"], row["orig_path"]) == (
                    "socket_event",
                    str(pid),
                    str(uid),
                    BASH,
                ), row
                assert row["orig_user"] == (USERS[uid] or "-")
                assert row["orig_hostname"] not in ("-", "")  # from the agent's hello
                assert (row["resp_match"], row["resp_pid"], row["resp_user"], row["resp_path"]) == (
                    "socket_event",
                    str(server_pid),
                    "www-data",
                    PYTHON,
                ), row

        check(attribute(server, conn_log, tmp_path / "out1"))  # while collectord runs
        # the user-connections view, written live
        log = tmp_path / "logs" / f"{USER_CONNECTIONS_PATH}.log"
        wait_for(lambda: log.exists() and all(f"\t{pid}\t" in log.read_text() for pid, _, _ in clients), "the log")
        views = {int(r["pid"]): r for r in read_zeek_ascii(log) if r["pid"] in {str(p) for p, _, _ in clients}}
        for pid, uid, accepted in clients:
            assert (views[pid]["uid"], views[pid]["username"]) == (str(uid), USERS[uid] or "-")
            assert views[pid]["local_port"] == str(accepted.peer[1]) and views[pid]["path"] == BASH
        # a restart keeps the history
        assert agent.stop() == 0
        agent = None
        assert server.stop() == 0
        server.start()
        check(attribute(server, conn_log, tmp_path / "out2"))
    finally:
        if agent is not None:
            agent.close()
        server.close()
    collectord_log = server.log_path.read_text()
    assert "Traceback" not in collectord_log and "attribution:" not in collectord_log, collectord_log
