"""agentd in-process (stepped clock, injected shutdown trigger) and as a real subprocess (SIGTERM)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.control import ControlError, format_status, remote_query, remote_status
from agent.daemon import DEFAULT_CONFIG, Agent, Parts, Settings
from agent.lifecycle import BackgroundTask
from agent.options import Options
from agent.sdnotify import Notifier
from agent.state import StateDB
from agent.watchdog import EXIT_WATCHDOG
from eventsources.audit.rules import AUDIT_NOT_EQUAL, AUDIT_PID, parse_rule
from eventsources.base import SourceMode
from tests._clock import Clock
from tests._jsonlines import read_json_lines

REPO = Path(__file__).resolve().parent.parent
#: Counts until the time limit interrupts it (about 10^11 steps otherwise).
SLOW_SQL = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000000) SELECT count(*) FROM c"
)


def write_config(path: Path, schedule: dict, **options) -> str:
    config = {
        "options": {"disable_events": True, "schedule_splay_percent": 0, "watchdog_level": -1, **options},
        "schedule": schedule,
    }
    path.write_text(json.dumps(config))
    return str(path)


def settings_for(tmp_path: Path, config: str | None, clock: Clock | None = None, **kw) -> Settings:
    return Settings(
        config_path=config,
        state_dir=str(tmp_path / "state"),
        log_dir=str(tmp_path / "log"),
        socket_path=str(tmp_path / "agentd.sock"),
        clock=clock or Clock(),
        **kw,
    )


def result_lines(tmp_path: Path) -> list[dict]:
    return read_json_lines(tmp_path / "log" / "results.log")


async def test_schedule_with_a_stepped_clock(tmp_path):
    clock = Clock()
    config = write_config(
        tmp_path / "agentd.conf",
        {"me": {"query": f"SELECT pid, name FROM processes WHERE pid = {os.getpid()}", "interval": 60}},
    )
    agent = Agent(settings_for(tmp_path, config, clock), notifier=Notifier(None))
    await agent.startup()
    try:
        assert not agent.stopping
        [first] = await agent.run_due()
        assert first.error is None and first.rows == 1
        lines = result_lines(tmp_path)
        assert len(lines) == 1
        assert lines[0]["name"] == "me" and lines[0]["action"] == "added" and lines[0]["counter"] == 0
        assert lines[0]["columns"]["pid"] == str(os.getpid())
        assert lines[0]["unixTime"] == int(clock.now)

        clock.advance(30)
        assert await agent.run_due() == []  # not due yet
        clock.advance(31)
        [second] = await agent.run_due()
        assert second.error is None and second.line_count == 0  # nothing changed: nothing logged
        assert len(result_lines(tmp_path)) == 1

        _columns, rows = await agent.query("SELECT name, executions, last_executed, denylisted FROM osquery_schedule")
        assert rows == [("me", 2, int(clock.now), 0)]
        status = agent.status()
        assert status.schedule[0].executions == 2 and status.schedule[0].last_rows == 1
        assert status.agent.pid == os.getpid()
    finally:
        await agent.shutdown()
    assert not os.path.exists(agent.settings.socket)


async def test_pack_discovery_is_evaluated_again_every_pack_refresh_interval(tmp_path, caplog):
    """A pack whose discovery query starts (then stops) returning rows joins (then leaves) the schedule."""
    caplog.set_level(logging.INFO, logger="agentd")
    clock = Clock()
    flag = tmp_path / "flag"
    config = tmp_path / "agentd.conf"
    config.write_text(
        json.dumps(
            {
                "options": {
                    "disable_events": True,
                    "schedule_splay_percent": 0,
                    "watchdog_level": -1,
                    "pack_refresh_interval": 600,
                },
                "schedule": {"always": {"query": "SELECT 1 AS one", "interval": 60}},
                "packs": {
                    "flagged": {
                        "discovery": [f"SELECT 1 FROM file WHERE path = '{flag}'"],
                        "queries": {"two": {"query": "SELECT 2 AS two", "interval": 60}},
                    }
                },
            }
        )
    )
    agent = Agent(settings_for(tmp_path, str(config), clock), notifier=Notifier(None))
    await agent.startup()
    try:
        assert [o.name for o in await agent.run_due()] == ["always"]
        flag.touch()
        clock.advance(120)
        assert [o.name for o in await agent.run_due()] == ["always"]  # not re-evaluated before 600 s
        clock.advance(480)
        assert sorted(o.name for o in await agent.run_due()) == ["always", "pack_flagged_two"]
        assert "pack flagged is active now" in caplog.text
        _, rows = await agent.query("SELECT name, active, discovery_executions FROM osquery_packs")
        assert rows == [("flagged", 1, 2)]
        assert [l["name"] for l in result_lines(tmp_path)].count("pack_flagged_two") == 1
        flag.unlink()
        clock.advance(600)
        assert [o.name for o in await agent.run_due()] == ["always"]
        _, rows = await agent.query("SELECT name FROM osquery_schedule ORDER BY name")
        assert rows == [("always",)]
    finally:
        await agent.shutdown()


async def test_restart_does_not_rereport(tmp_path):
    clock = Clock()
    config = write_config(
        tmp_path / "agentd.conf",
        {"me": {"query": f"SELECT pid FROM processes WHERE pid = {os.getpid()}", "interval": 10}},
    )
    for _ in range(2):
        agent = Agent(settings_for(tmp_path, config, clock), notifier=Notifier(None))
        await agent.startup()
        await agent.run_due()
        await agent.shutdown()
        clock.advance(11)
    assert len(result_lines(tmp_path)) == 1


async def test_serve_until_the_shutdown_trigger(tmp_path):
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.setblocking(False)
    stop = asyncio.Event()
    config = write_config(tmp_path / "agentd.conf", {"one": {"query": "SELECT 1 AS one", "interval": 3600}})
    agent = Agent(
        settings_for(tmp_path, config, Clock()),  # a still clock: only the first run is due
        shutdown_trigger=stop.wait,
        environ={"NOTIFY_SOCKET": str(tmp_path / "notify.sock")},
    )
    serving = asyncio.create_task(agent.serve())
    loop = asyncio.get_running_loop()
    ready = await asyncio.wait_for(loop.sock_recv(notify, 4096), timeout=30)
    assert ready.startswith(b"READY=1")

    for _ in range(600):  # bounded: until the first (and, on a still clock, only) run is recorded
        status = await asyncio.to_thread(remote_status, agent.settings.socket)
        if status.schedule and status.schedule[0].executions:
            break
        await asyncio.sleep(0.05)
    assert [(q.name, q.executions) for q in status.schedule] == [("one", 1)]
    local = agent.status()  # what came through the socket is the daemon's own status, typed
    assert (status.schedule, status.events) == (local.schedule, local.events)
    steady = {"uptime": 0.0, "rss_bytes": 0, "cpu_percent": 0.0}
    assert dataclasses.replace(status.agent, **steady) == dataclasses.replace(local.agent, **steady)
    text = format_status(status)
    assert "schedule (1 queries)" in text and "process_events" in text
    _columns, rows = await asyncio.to_thread(remote_query, agent.settings.socket, "SELECT pid FROM agent_info")
    assert rows == [[os.getpid()]]

    stop.set()
    assert await asyncio.wait_for(serving, timeout=30) == 0
    assert await asyncio.wait_for(loop.sock_recv(notify, 4096), timeout=5) == b"STOPPING=1"
    notify.close()
    assert not os.path.exists(agent.settings.socket)
    assert [line["name"] for line in result_lines(tmp_path)] == ["one"]


async def test_adhoc_results_are_bounded_before_they_are_held(tmp_path):
    """A control-socket query past adhoc_max_rows gets a clear error; the daemon goes on serving."""
    stop = asyncio.Event()
    config = write_config(tmp_path / "agentd.conf", {"one": {"query": "SELECT 1 AS one", "interval": 3600}})
    agent = Agent(settings_for(tmp_path, config, Clock(), adhoc_max_rows=50), shutdown_trigger=stop.wait, environ={})
    serving = asyncio.create_task(agent.serve())
    for _ in range(300):
        if os.path.exists(agent.settings.socket):
            break
        await asyncio.sleep(0.05)
    many = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 51) SELECT x FROM c"
    with pytest.raises(ControlError, match="more than 50 rows"):
        await asyncio.to_thread(remote_query, agent.settings.socket, many)
    _, rows = await asyncio.to_thread(remote_query, agent.settings.socket, many.replace("51", "50"))
    assert len(rows) == 50
    stop.set()
    assert await asyncio.wait_for(serving, timeout=30) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signals_stop_serve_and_handlers_are_restored(tmp_path, sig):
    before = signal.getsignal(sig)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.setblocking(False)
    config = write_config(tmp_path / "agentd.conf", {"one": {"query": "SELECT 1", "interval": 3600}})
    agent = Agent(settings_for(tmp_path, config), environ={"NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
    serving = asyncio.create_task(agent.serve())
    loop = asyncio.get_running_loop()
    assert (await asyncio.wait_for(loop.sock_recv(notify, 4096), timeout=30)).startswith(b"READY=1")
    signal.raise_signal(sig)
    assert await asyncio.wait_for(serving, timeout=30) == 0
    notify.close()
    assert signal.getsignal(sig) == before


async def test_slow_query_is_interrupted_and_denylisted(tmp_path, caplog):
    clock = Clock()
    config = write_config(
        tmp_path / "agentd.conf",
        {
            "slow": {"query": SLOW_SQL, "interval": 60},
            "slow_exempt": {"query": SLOW_SQL + " -- exempt", "interval": 60, "denylist": False},
        },
        schedule_timeout=0.2,
    )
    agent = Agent(settings_for(tmp_path, config, clock), notifier=Notifier(None))
    await agent.startup()
    try:
        with caplog.at_level(logging.WARNING, logger="agentd"):
            outcomes = {o.name: o for o in await agent.run_due()}
        assert outcomes["slow"].timed_out and outcomes["slow_exempt"].timed_out
        assert (
            "query slow exceeded its time limit of 0.2 s (schedule_timeout) and was interrupted; "
            "denylisted until" in caplog.text
        )
        assert "query slow_exempt exceeded its time limit" in caplog.text and "not denylisted" in caplog.text
        stats = agent.parts.schedule.stats
        assert stats["slow"].denylisted(clock.now)
        assert not stats["slow_exempt"].denylisted(clock.now)

        clock.advance(61)
        assert [o.name for o in await agent.run_due()] == ["slow_exempt"]  # the denylisted one is skipped
        _, rows = await agent.query("SELECT name, denylisted FROM osquery_schedule ORDER BY name")
        assert rows == [("slow", 1), ("slow_exempt", 0)]
    finally:
        await agent.shutdown()

    statedb = StateDB(str(tmp_path / "state" / "agentd.db"))
    try:
        until, reason = statedb.denylist()["slow"]
        assert until == pytest.approx(clock.now - 61 + 86400, abs=1)
        assert "time limit" in reason
    finally:
        statedb.close()

    clock.advance(86400)  # a day later the query runs again
    agent = Agent(settings_for(tmp_path, config, clock), notifier=Notifier(None))
    await agent.startup()
    try:
        assert not agent.parts.schedule.stats["slow"].denylisted(clock.now)
        assert "slow" in [o.name for o in await agent.run_due()]
    finally:
        await agent.shutdown()


async def test_memory_watchdog_exits_for_a_restart(tmp_path, caplog):
    config = write_config(
        tmp_path / "agentd.conf",
        {"one": {"query": "SELECT 1", "interval": 3600}},
        watchdog_level=0,
        watchdog_memory_limit=1,
        watchdog_delay=0,
    )
    stop = asyncio.Event()  # never set: the watchdog must end serve() by itself
    agent = Agent(
        settings_for(tmp_path, config, watchdog_interval=0.05), shutdown_trigger=stop.wait, notifier=Notifier(None)
    )
    with caplog.at_level(logging.ERROR, logger="agentd"):
        code = await asyncio.wait_for(agent.serve(), timeout=30)
    assert code == EXIT_WATCHDOG
    assert "Memory limits exceeded" in caplog.text and "(limit 1 MB)" in caplog.text
    assert "systemd restarts it" in caplog.text


async def test_cpu_watchdog_interrupts_and_denylists_the_running_query(tmp_path, caplog):
    config = write_config(
        tmp_path / "agentd.conf",
        {"burner": {"query": SLOW_SQL, "interval": 60}},
        schedule_timeout=600,
        watchdog_level=0,
        watchdog_utilization_limit=1,
        watchdog_latency_limit=0,
        watchdog_delay=0,
    )
    agent = Agent(settings_for(tmp_path, config, watchdog_interval=0.05), notifier=Notifier(None))
    await agent.startup()
    try:
        with caplog.at_level(logging.WARNING, logger="agentd"):
            [outcome] = await asyncio.wait_for(agent.run_due(), timeout=60)
        assert outcome.error and outcome.timed_out
        assert "CPU utilization limit exceeded" in caplog.text and "interrupting it" in caplog.text
        assert "query burner exceeded the CPU limit" in caplog.text and "denylisted until" in caplog.text
        assert agent.parts.schedule.stats["burner"].denylisted()
        assert not agent.stopping  # the query was the culprit, not the agent
    finally:
        await agent.shutdown()


async def test_event_loss_is_summarised_not_per_event(tmp_path, caplog):
    config = write_config(tmp_path / "agentd.conf", {}, events_max=2)
    stop = asyncio.Event()
    agent = Agent(
        settings_for(tmp_path, config, loss_report_interval=0.05), shutdown_trigger=stop.wait, notifier=Notifier(None)
    )
    with caplog.at_level(logging.WARNING, logger="agentd"):
        serving = asyncio.create_task(agent.serve())
        for _ in range(3000):  # bounded: until startup has started the loss reporter
            if "event-loss" in agent.lifecycle.started or serving.done():
                break
            await asyncio.sleep(0.01)
        assert not serving.done()
        for pid in range(100_000, 100_010):
            agent.parts.events.sink("process_events", {"pid": pid, "path": "/bin/true"})
        for _ in range(200):  # bounded: until the next report
            if "events lost" in caplog.text:
                break
            await asyncio.sleep(0.05)
        stop.set()
        assert await asyncio.wait_for(serving, timeout=30) == 0
    reports = [r.getMessage() for r in caplog.records if "events lost" in r.getMessage()]
    assert reports == ["events lost since the last report: process_events dropped by events_max: 8"]


async def test_bad_config_exits_1_with_the_key(tmp_path, caplog):
    config = tmp_path / "agentd.conf"
    config.write_text('{"schedule": {"q": {"query": "SELECT 1", "interval": "often"}}}')
    agent = Agent(settings_for(tmp_path, str(config)), notifier=Notifier(None))
    with caplog.at_level(logging.ERROR, logger="agentd"):
        assert await agent.serve() == 1
    assert "config error" in caplog.text and "schedule.q.interval" in caplog.text


async def test_a_socket_path_that_is_a_file_exits_1_and_keeps_the_file(tmp_path, caplog):
    """A bad --socket fails start-up before the event sources start, and the file is not removed."""
    config = write_config(tmp_path / "agentd.conf", {}, disable_events=False, disable_audit=True)
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    settings = dataclasses.replace(settings_for(tmp_path, config), socket_path=str(precious))
    agent = Agent(settings, notifier=Notifier(None))
    with caplog.at_level(logging.ERROR, logger="agentd"):
        assert await agent.serve() == 1
    assert "is not a socket" in caplog.text
    assert precious.read_text() == "keep me\n"
    assert agent.parts.events.choice == "not started"


class UplinkWithoutItsCA:
    """A component that cannot start, as an uplink whose CA file is missing would (it plugs in like the uplink)."""

    name = "uplink"

    def __init__(self, parts: Parts, ca_file: Path) -> None:
        self.parts = parts
        self.ca_file = ca_file
        self.seen: dict[str, object] = {}
        self.stopped = False

    async def start(self) -> None:
        self.seen["socket"] = os.path.exists(self.parts.settings.socket)
        self.seen["sources"] = {s.name: s.mode for s in self.parts.events.report().sources}
        self.seen["kernel_audit_pid"] = _kernel_audit()[1]
        with open(self.ca_file, "rb"):  # FileNotFoundError, as a missing CA file
            pass

    async def stop(self) -> None:
        self.stopped = True


@pytest.mark.audit
async def test_a_failed_startup_still_shuts_down_and_restores_audit(audit_state, tmp_path, caplog):
    """A part failing after the socket and kernel audit started: exit 1, socket removed, sources stopped, audit back."""
    config = write_config(
        tmp_path / "agentd.conf", {"one": {"query": "SELECT 1", "interval": 60}}, disable_events=False
    )
    made: list[UplinkWithoutItsCA] = []

    def uplink(parts: Parts) -> UplinkWithoutItsCA:
        made.append(UplinkWithoutItsCA(parts, tmp_path / "missing-ca.pem"))
        return made[-1]

    agent = Agent(settings_for(tmp_path, config), notifier=Notifier(None), components=[uplink])
    with caplog.at_level(logging.INFO, logger="agentd"):
        assert await asyncio.wait_for(agent.serve(), timeout=60) == 1
    [component] = made
    if component.seen["sources"].get("audit") != SourceMode.OWNER:
        pytest.skip(f"agentd did not take kernel audit here: {component.seen['sources']}")
    assert component.seen["socket"] and component.seen["kernel_audit_pid"] == os.getpid()  # all was up
    assert "cannot start uplink: [Errno 2] No such file or directory" in caplog.text
    assert "Traceback" not in caplog.text and "agentd stopped" in caplog.text
    assert component.stopped  # a part whose start failed is stopped too
    assert not os.path.exists(agent.settings.socket)
    assert {s.name: s.mode for s in agent.parts.events.report().sources}["audit"] == SourceMode.STOPPED
    # restored by shutdown now, not by atexit when the interpreter ends
    assert _kernel_audit() == (
        audit_state.enabled,
        audit_state.pid,
        audit_state.backlog_limit,
        audit_state.backlog_wait_time,
        audit_state.rules,
    )
    assert agent.lifecycle.started == ()


#: posix_spawn /bin/true as fast as it can until SIGTERM, then print how many it ran
SPAWNER = """
import os, signal, sys
n = 0
def done(*_):
    print(n, flush=True)
    os._exit(0)
signal.signal(signal.SIGTERM, done)
while True:
    os.waitpid(os.posix_spawn("/bin/true", ["/bin/true", "shed-test"], {}), 0)
    n += 1
"""


@pytest.mark.audit
async def test_cpu_watchdog_sheds_events_instead_of_exiting(audit_state, tmp_path, caplog):
    """Reading events over the CPU limit: agentd keeps running, the events beyond its budget are counted."""
    cores = os.cpu_count() or 1
    if cores > 16:
        pytest.skip(f"{cores} cores: 1 % of them (the smallest limit) is more than an exec flood takes here")
    config = write_config(
        tmp_path / "agentd.conf",
        {},
        disable_events=False,
        events_max=10_000_000,
        watchdog_level=0,
        watchdog_utilization_limit=-(-10 // cores),  # about 10 % of one core
        watchdog_latency_limit=1,
        watchdog_delay=0,
    )
    stop = asyncio.Event()
    agent = Agent(
        settings_for(tmp_path, config, watchdog_interval=0.25), shutdown_trigger=stop.wait, notifier=Notifier(None)
    )
    spawners: list[asyncio.subprocess.Process] = []
    with caplog.at_level(logging.INFO, logger="agentd"):
        serving = asyncio.create_task(agent.serve())
        try:
            for _ in range(3000):  # bounded: until startup has started the watchdog
                if "watchdog" in agent.lifecycle.started or serving.done():
                    break
                await asyncio.sleep(0.01)
            assert not serving.done()
            if agent.parts.events.process_source != "audit":
                pytest.skip(f"no kernel audit here: {agent.parts.events.choice}")
            for _ in range(3):
                spawners.append(
                    await asyncio.create_subprocess_exec(sys.executable, "-c", SPAWNER, stdout=subprocess.PIPE)
                )
            for _ in range(1200):  # bounded: until the watchdog set a budget and the source kept to it by shedding
                audit = {s.name: s for s in agent.parts.events.report().sources}["audit"]
                if audit.shed + audit.degraded > 0 or serving.done():
                    break
                await asyncio.sleep(0.05)
            assert not serving.done(), caplog.text[-2000:]
            assert agent.parts.activity.event_cpu_budget is not None
        finally:
            spawned = 0
            for p in spawners:
                p.terminate()
                out, _ = await p.communicate()
                spawned += int(out or 0)
        parents = {p.pid for p in spawners}
        # Until the source has read what the kernel sent.  Every half second: the limit here is tiny, and a scan
        # of the buffer every few ms would be over it by itself (the query thread's CPU is agentd's).
        for _ in range(120):  # bounded
            await asyncio.sleep(0.5)
            assert not serving.done(), caplog.text[-2000:]
            status = {s.name: s for s in agent.parts.events.report().sources}["audit"]
            _, rows = await agent.query("SELECT parent FROM process_events WHERE cmdline = '/bin/true shed-test'")
            if sum(1 for (parent,) in rows if parent in parents) + status.shed >= spawned:
                break
        assert not serving.done(), caplog.text[-2000:]
        stop.set()
        assert await asyncio.wait_for(serving, timeout=30) == 0
    captured = sum(1 for (parent,) in rows if parent in parents)
    assert "reading events now keeps within" in caplog.text and "counted" in caplog.text
    assert status.shed + status.degraded > 0 and status.extra["cpu_budget"] is not None
    assert captured + status.shed + status.kernel_lost >= spawned  # every exec a row or counted
    assert "CPU utilization limit exceeded" in caplog.text and "exits with status" not in caplog.text


async def test_a_state_dir_that_is_a_file_exits_1_and_starts_nothing(tmp_path, caplog):
    config = write_config(tmp_path / "agentd.conf", {"one": {"query": "SELECT 1", "interval": 60}})
    (tmp_path / "state").write_text("not a directory\n")
    agent = Agent(settings_for(tmp_path, config), notifier=Notifier(None))
    with caplog.at_level(logging.INFO, logger="agentd"):
        assert await agent.serve() == 1
    assert f"cannot open the state directory {tmp_path / 'state'}" in caplog.text and "Traceback" not in caplog.text
    assert not os.path.exists(agent.settings.socket) and agent.lifecycle.started == ()
    with pytest.raises(RuntimeError, match="has not built its parts"):
        agent.status()


class LinkThatDrops(BackgroundTask):
    """A long-lived part whose task ends with an error while agentd runs (a connection that breaks for good)."""

    def __init__(self, parts: Parts) -> None:
        super().__init__("link", parts.on_failure)

    async def run(self) -> None:
        await asyncio.sleep(0.05)
        raise ConnectionResetError(104, "Connection reset by peer")


async def test_a_failing_part_stops_the_agent_with_status_1(tmp_path, caplog):
    config = write_config(tmp_path / "agentd.conf", {"one": {"query": "SELECT 1", "interval": 3600}})
    stop = asyncio.Event()  # never set: the failing part must end serve() by itself
    agent = Agent(
        settings_for(tmp_path, config), shutdown_trigger=stop.wait, notifier=Notifier(None), components=[LinkThatDrops]
    )
    with caplog.at_level(logging.INFO, logger="agentd"):
        assert await asyncio.wait_for(agent.serve(), timeout=30) == 1
    assert "link failed: ConnectionResetError" in caplog.text and "agentd stopping: link failed" in caplog.text
    assert not os.path.exists(agent.settings.socket) and agent.lifecycle.started == ()


def test_embedded_default_config_shows_events():
    """The default schedule: snapshot tables plus process_events and socket_events (audit sockets on)."""
    config = parse_config(DEFAULT_CONFIG, base_dir=str(REPO), source="<embedded default config>")
    assert sorted(q.name for q in config.queries) == [
        "agent_info",
        "listening_ports",
        "process_events",
        "processes",
        "socket_events",
        "system_info",
    ]
    assert config.options.audit_allow_sockets and not config.options.disable_events
    assert not config.warnings
    assert all(q.interval >= 60 for q in config.queries)


@pytest.mark.audit
async def test_embedded_default_config(audit_state, tmp_path):
    """The embedded default starts events (kernel audit here); every query of it runs."""
    agent = Agent(settings_for(tmp_path, None), notifier=Notifier(None))
    await agent.startup()
    try:
        assert not agent.stopping
        _, rows = await agent.query("SELECT config_valid, config_hash != '' FROM osquery_info")
        assert rows == [(1, 1)]
        outcomes = await agent.run_due()
        assert sorted(o.name for o in outcomes) == sorted(agent.parts.schedule.queries)
        assert [o.error for o in outcomes if o.error] == []
    finally:
        await agent.shutdown()


def test_docs_example_config_is_the_embedded_default():
    assert json.loads((REPO / "docs" / "config.example.json").read_text()) == json.loads(DEFAULT_CONFIG)


def _spawn(tmp_path: Path, config: str, notify: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "NOTIFY_SOCKET": notify}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.daemon",
            "--config",
            config,
            "--state-dir",
            str(tmp_path / "state"),
            "--log-dir",
            str(tmp_path / "log"),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigterm_stops_a_real_agentd(tmp_path):
    notify_path = str(tmp_path / "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(60)
    # A query that is still running when SIGTERM arrives: shutdown must interrupt it.
    config = write_config(
        tmp_path / "agentd.conf", {"slow": {"query": SLOW_SQL, "interval": 3600}}, schedule_timeout=600
    )
    proc = _spawn(tmp_path, config, notify_path)
    try:
        assert notify.recv(4096).startswith(b"READY=1")
        socket_path = str(tmp_path / "state" / "agentd.sock")
        for _ in range(600):  # bounded: until the slow query is running
            if remote_status(socket_path).agent.running == "slow":
                break
            time.sleep(0.05)
        else:
            pytest.fail("the scheduled query never started")
        proc.send_signal(signal.SIGTERM)
        # systemd's TimeoutStopSec is 10 s; agentd's own shutdown is time-boxed to 5 s.
        _out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
    assert proc.returncode == 0, err
    assert "interrupting the running query slow" in err
    assert "agentd stopped" in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "state" / "agentd.sock")


def test_bad_config_subprocess_has_no_traceback(tmp_path):
    config = tmp_path / "agentd.conf"
    config.write_text('{"options": {"events_max": "lots"}}')
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.daemon",
            "--config",
            str(config),
            "--state-dir",
            str(tmp_path / "s"),
            "--log-dir",
            str(tmp_path / "l"),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "options.events_max" in proc.stderr and "Traceback" not in proc.stderr


def test_config_check(tmp_path):
    good = tmp_path / "good.conf"
    good.write_text(DEFAULT_CONFIG)
    bad = tmp_path / "bad.conf"
    bad.write_text('{"schedule": {"q": {"interval": 10}}}')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ok = subprocess.run(
        [sys.executable, "-m", "agent.daemon", "--config-check", str(good)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0 and "config OK: 6 queries" in ok.stdout
    fail = subprocess.run(
        [sys.executable, "-m", "agent.daemon", "--config-check", str(bad)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert fail.returncode == 1 and "schedule.q.query" in fail.stderr and "Traceback" not in fail.stderr


def _kernel_audit() -> tuple[int, int, int, int, tuple[bytes, ...]]:
    from eventsources.audit.netlink import AuditNetlink, open_audit_socket

    ctl = AuditNetlink(open_audit_socket())
    try:
        st = ctl.get_status()
        return st.enabled, st.pid, st.backlog_limit, st.backlog_wait_time, tuple(ctl.list_rules())
    finally:
        ctl.close()


@pytest.mark.audit
def test_sigterm_restores_kernel_audit_state(audit_state, tmp_path):
    """agentd takes kernel audit, serves process_events over its socket, and SIGTERM puts audit back."""
    notify_path = str(tmp_path / "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(60)
    config = tmp_path / "agentd.conf"
    config.write_text(
        json.dumps(
            {
                "options": {"disable_events": False, "disable_audit": False},
                "schedule": {"one": {"query": "SELECT 1", "interval": 3600}},
            }
        )
    )
    proc = _spawn(tmp_path, str(config), notify_path)
    socket_path = str(tmp_path / "state" / "agentd.sock")
    try:
        assert notify.recv(4096).startswith(b"READY=1")
        _, sources = remote_query(
            socket_path, "SELECT name, mode, detail FROM agent_events_status WHERE kind = 'source'"
        )
        audit = [s for s in sources if s[0] == "audit"]
        if not audit or audit[0][1] != "owner":
            pytest.skip(f"agentd did not take kernel audit here: {sources}")
        assert _kernel_audit()[1] == proc.pid
        subprocess.run(["/bin/true"], check=True)
        sql = "SELECT pid, path, cmdline FROM process_events WHERE path = '/bin/true' OR path = '/usr/bin/true'"
        deadline = time.monotonic() + 30
        rows: list = []
        while time.monotonic() < deadline and not rows:
            rows = remote_query(socket_path, sql)[1]
            time.sleep(0.1)
        assert rows, "process_events over the control socket must show the exec"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
    assert proc.returncode == 0, err
    assert _kernel_audit() == (
        audit_state.enabled,
        audit_state.pid,
        audit_state.backlog_limit,
        audit_state.backlog_wait_time,
        audit_state.rules,
    )


@pytest.mark.audit
def test_successor_of_a_sigkilled_agentd_restores_kernel_audit_state(audit_state, tmp_path):
    """kill -9 leaves audit as agentd set it; the next agentd (same state dir) puts back what the first found."""
    config = tmp_path / "agentd.conf"
    config.write_text(
        json.dumps(
            {
                "options": {"disable_events": False, "disable_audit": False},
                "schedule": {"one": {"query": "SELECT 1", "interval": 3600}},
            }
        )
    )
    socket_path = str(tmp_path / "state" / "agentd.sock")
    notify_path = str(tmp_path / "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(60)
    first = _spawn(tmp_path, str(config), notify_path)
    try:
        assert notify.recv(4096).startswith(b"READY=1")
        _, sources = remote_query(socket_path, "SELECT name, mode FROM agent_events_status WHERE kind = 'source'")
        if ["audit", "owner"] not in sources:
            pytest.skip(f"agentd did not take kernel audit here: {sources}")
        assert (tmp_path / "state" / "audit-state.json").exists()
        first.kill()
        first.communicate()
        # Left behind: the dead agentd's settings and rules. Its pid stays registered only until the kernel next
        # fails to deliver a record to it: any exec on the host matches its rules, kauditd's send to the closed
        # socket is refused and the kernel drops the pid (as it does when a process asks to become the audit pid,
        # e.g. the successor). What else ran since the kill decides which of the two this reads.
        enabled, pid, backlog_limit, backlog_wait_time, rules = _kernel_audit()
        assert pid in (first.pid, 0)
        assert (enabled, backlog_limit, backlog_wait_time) == (1, Options().audit_backlog_limit, 0)
        left = [parse_rule(raw) for raw in rules if raw not in audit_state.rules]
        assert left and all(r.field_value(AUDIT_PID, AUDIT_NOT_EQUAL) == first.pid for r in left), left
        second = _spawn(tmp_path, str(config), notify_path)
        try:
            assert notify.recv(4096).startswith(b"READY=1")
            second.send_signal(signal.SIGTERM)
            _, err = second.communicate(timeout=10)
        finally:
            if second.poll() is None:
                second.kill()
                second.communicate()
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
        notify.close()
    assert second.returncode == 0, err
    assert "Traceback" not in err
    assert _kernel_audit() == (
        audit_state.enabled,
        audit_state.pid,
        audit_state.backlog_limit,
        audit_state.backlog_wait_time,
        audit_state.rules,
    )
    assert not (tmp_path / "state" / "audit-state.json").exists()
