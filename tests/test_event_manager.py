"""agent.events: the EventManager's source choice, own-pid filter, bounds and agent_events_status.

Most tests never touch kernel audit: they ask for the proc connector (or polling)
explicitly.  The "auto" choice, which may start audit, runs under the audit_state
fixture (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from agent.events import EVENTS_STATUS_SPEC, EventManager, EventOptions
from agent.status import SourceEntry, TableMode
from agent.status_tables import SPECS as STATUS_SPECS
from eventsources.base import SourceMode
from tables.hardware_events import SPEC as HARDWARE_EVENTS
from tables.registry import all_specs
from tables.sqlite import Database
from tests._clock import Clock


async def _wait(pred, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(0.01)
    return pred()


def _status(manager: EventManager, name: str) -> dict[str, Any]:
    db = Database([EVENTS_STATUS_SPEC], services=manager.services)
    result = db.execute(f"SELECT * FROM agent_events_status WHERE name = '{name}'")
    rows = [dict(zip(result.columns, r, strict=False)) for r in result.rows]
    assert len(rows) == 1, rows
    return rows[0]


async def _started(manager: EventManager) -> EventManager:
    await manager.start()
    if manager.process_source is None:
        await manager.stop()
        pytest.skip(f"the kernel refused every process source: {manager.choice}")
    return manager


def test_options_from_an_options_object_and_validation() -> None:
    class Opts:
        events_max = 7
        events_expiry = 60
        audit_allow_sockets = True
        audit_backlog_limit = 4096
        schedule_timeout = 5.0  # not ours: ignored

    opts = EventOptions.from_options(Opts())
    assert (opts.events_max, opts.events_expiry, opts.audit_allow_sockets) == (7, 60, True)
    assert opts.audit_backlog_limit == 4096
    from agent.options import parse_options

    assert EventOptions.from_options(parse_options({})[0]).audit_backlog_limit == 8192  # agentd's default
    with pytest.raises(ValueError, match="process_events_source"):
        EventOptions(process_events_source="ebpf")


def test_options_from_the_agents_config_options() -> None:
    from agent.options import parse_options

    options, _ = parse_options({"events_max": 10, "audit_allow_sockets": True, "audit_backlog_limit": 2048})
    opts = EventOptions.from_options(options)
    assert (opts.events_max, opts.audit_allow_sockets, opts.audit_backlog_limit) == (10, True, 2048)
    options, warnings = parse_options({"process_events_source": "proc_poll"})  # docs/events.md: a config option
    assert warnings == [] and EventOptions.from_options(options).process_events_source == "proc_poll"


async def test_proc_connector_is_chosen_and_reported() -> None:
    manager = await _started(
        EventManager(EventOptions(process_events_source="proc_connector", audit_allow_sockets=True))
    )
    try:
        assert manager.process_source == "proc_connector"
        assert "proc_connector" in manager.choice
        row = _status(manager, "proc_connector")
        assert (row["kind"], row["mode"], row["active"]) == ("source", "active", 1)
        assert "process_events_source is proc_connector" in row["detail"]
        sockets = _status(manager, "socket_events")
        assert sockets["mode"] == "unavailable" and sockets["detail"] == "socket_events unavailable without audit"
        assert _status(manager, "process_events")["tables"] == "proc_connector"
        hardware = _status(manager, "uevent")
        assert hardware["mode"] in ("active", "failed")

        proc = await asyncio.create_subprocess_exec("/bin/true", "manager test")
        await proc.wait()
        store = manager.stores["process_events"]
        assert await _wait(lambda: any(r["pid"] == proc.pid for r in store.select(None)))
        assert _status(manager, "proc_connector")["events_seen"] >= 1
    finally:
        await manager.stop()
    await manager.stop()
    assert _status(manager, "proc_connector")["active"] == 0


async def test_rows_reach_listeners_and_the_table_through_services() -> None:
    manager = await _started(
        EventManager(EventOptions(process_events_source="proc_connector", disable_hardware_events=True))
    )
    seen: list[tuple[str, dict[str, Any]]] = []
    remove = manager.add_listener(lambda table, row: seen.append((table, row)))
    try:
        proc = await asyncio.create_subprocess_exec("/bin/true", "listener")
        await proc.wait()
        assert await _wait(lambda: any(r["pid"] == proc.pid for _, r in seen))
        remove()
        specs = [s for s in all_specs() if s.name == "process_events"] + list(manager.specs())
        db = Database(specs, services=manager.services)
        result = db.execute(f"SELECT pid, parent, syscall FROM process_events WHERE pid = {proc.pid}")
        assert [tuple(r) for r in result.rows] == [(proc.pid, os.getpid(), "execve")]
        assert _status(manager, "hardware_events")["mode"] == "disabled"
    finally:
        await manager.stop()


async def test_the_agents_own_events_are_filtered_and_counted() -> None:
    manager = await _started(
        EventManager(EventOptions(process_events_source="proc_connector", disable_hardware_events=True))
    )
    try:
        # A child that execs /bin/true only when told: we make its pid "ours" first.
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", "read line; exec /bin/true own", stdin=asyncio.subprocess.PIPE
        )
        await asyncio.sleep(0)  # let the sh exec notice (if any) be handled before we claim the pid
        manager.own_pid = proc.pid
        before = _status(manager, "process_events")["filtered_self"]
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        await proc.wait()
        assert await _wait(lambda: _status(manager, "process_events")["filtered_self"] > before)
        stored = manager.stores["process_events"].select(None)
        assert not any(r["pid"] == proc.pid and r.get("cmdline") == "/bin/true own" for r in stored)
    finally:
        await manager.stop()
    # the sink itself, without the kernel
    manager.own_pid = 4242
    manager.sink("process_events", {"pid": 4242})
    manager.sink("process_events", {"pid": 4243})
    assert [r["pid"] for r in manager.stores["process_events"].select(None)].count(4242) == 0


async def test_events_max_and_expiry_are_counted_in_agent_events_status() -> None:
    clock = Clock(time.time())  # the stores' expiry clock (the rows themselves come from the kernel)
    manager = await _started(
        EventManager(
            EventOptions(
                process_events_source="proc_connector", events_max=3, events_expiry=60, disable_hardware_events=True
            ),
            clock=clock,
        )
    )
    seen = len(manager.stores["process_events"].select("sched"))  # a scheduled query that read everything so far
    try:
        pids = []
        for i in range(6):
            proc = await asyncio.create_subprocess_exec("/bin/true", f"bound {i}")
            await proc.wait()
            pids.append(proc.pid)
        store = manager.stores["process_events"]
        assert await _wait(lambda: store.stats().added >= 6)
    finally:
        await manager.stop()  # no more rows from here on
    row = _status(manager, "process_events")
    assert row["buffered"] == 3
    assert row["dropped_overflow"] == row["added"] - 3 >= 3
    assert row["dropped_expired"] == 0
    assert json.loads(row["extra"])["missed"] == {"sched": row["dropped_overflow"] - seen}, "it never read those"
    summary = manager.loss_summary()
    assert summary is not None and f"process_events dropped by events_max: {row['dropped_overflow']}" in summary
    assert manager.loss_summary() is None  # nothing new since the last call

    clock.now += 61
    row = _status(manager, "process_events")
    assert (row["buffered"], row["dropped_expired"]) == (0, 3)


async def test_poll_fallback_and_disable_events() -> None:
    manager = EventManager(EventOptions(process_events_source="proc_poll", disable_hardware_events=True))
    await manager.start()
    try:
        assert manager.process_source == "proc_poll"
        assert "missed" in _status(manager, "proc_poll")["detail"]
    finally:
        await manager.stop()

    manager = EventManager(EventOptions(disable_events=True))
    await manager.start()
    assert manager.process_source is None and manager.status()[-1]["mode"] == "disabled"
    assert all(r["active"] == 0 for r in manager.status())
    await manager.stop()


def test_status_table_without_a_manager_is_empty() -> None:
    db = Database([EVENTS_STATUS_SPEC, HARDWARE_EVENTS])
    assert db.execute("SELECT * FROM agent_events_status").rows == []
    assert db.execute("SELECT * FROM hardware_events").rows == []


@pytest.mark.audit
async def test_auto_prefers_audit_then_falls_back(audit_state) -> None:
    manager = EventManager(EventOptions(disable_hardware_events=True))
    await manager.start()
    try:
        assert manager.process_source in ("audit", "proc_connector", "proc_poll")
        print(f"auto chose: {manager.choice}")
        statuses = {r["name"]: r for r in manager.status() if r["kind"] == "source"}
        if manager.process_source != "audit":
            assert statuses["audit"]["mode"] == "failed" and statuses["audit"]["detail"]
        assert statuses[manager.process_source]["active"] == 1
        proc = await asyncio.create_subprocess_exec("/bin/true", "auto choice")
        await proc.wait()
        store = manager.stores["process_events"]
        assert await _wait(lambda: any(r["pid"] == proc.pid for r in store.select(None)))
    finally:
        await manager.stop()


def test_audit_state_file_location() -> None:
    assert EventOptions().audit_state_file() is None  # no state directory: no crash recovery
    assert EventOptions(state_dir="/var/lib/agentd").audit_state_file() == "/var/lib/agentd/audit-state.json"
    opts = EventOptions(state_dir="/var/lib/agentd", audit_state_path="/run/agentd/audit.json")
    assert opts.audit_state_file() == "/run/agentd/audit.json"
    manager = EventManager(EventOptions(events_max=5), state_dir="/srv/agent")
    assert manager.options.audit_state_file() == "/srv/agent/audit-state.json"
    assert manager.options.events_max == 5


@pytest.mark.audit
async def test_audit_source_gets_the_state_file(audit_state, tmp_path) -> None:
    manager = EventManager(
        EventOptions(process_events_source="audit", disable_hardware_events=True), state_dir=str(tmp_path)
    )
    path = tmp_path / "audit-state.json"
    await manager.start()
    try:
        source = {s.name: s for s in manager.source_statuses()}["audit"]
        if source.mode != "owner":
            pytest.skip(f"audit is not in owner mode here: {source.mode}: {source.detail}")
        assert source.extra["state_path"] == str(path)
        assert path.exists()
    finally:
        await manager.stop()
    assert not path.exists()


def _source(manager: EventManager, name: str) -> SourceEntry:
    return next(s for s in manager.report().sources if s.name == name)


def _kernel_audit() -> tuple[int, int, int, int, tuple[bytes, ...]]:
    from eventsources.audit.netlink import AuditNetlink, open_audit_socket

    ctl = AuditNetlink(open_audit_socket())
    try:
        st = ctl.get_status()
        return st.enabled, st.pid, st.backlog_limit, st.backlog_wait_time, tuple(ctl.list_rules())
    finally:
        ctl.close()


#: Registers itself as the audit daemon, then gives audit back when told (a line on stdin).
TAKEOVER_CHILD = """
import os, sys
sys.path.insert(0, sys.argv[1])
from eventsources.audit.netlink import AuditNetlink, open_audit_socket
ctl = AuditNetlink(open_audit_socket())
ctl.set_status(pid=os.getpid())
print("registered", flush=True)
sys.stdin.readline()
ctl.set_status(pid=0)
"""


@pytest.mark.audit
async def test_lost_audit_ownership_is_reported_as_lost_not_active(audit_state) -> None:
    """Another process takes audit over: audit shows 'lost' and inactive, and process_events is not fed by it."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    manager = EventManager(EventOptions(process_events_source="audit", disable_hardware_events=True))
    await manager.start()
    child = None
    try:
        audit = _source(manager, "audit")
        if audit.mode is not SourceMode.OWNER:
            pytest.skip(f"audit is not in owner mode here: {audit.mode}: {audit.detail}")
        assert audit.active and _status(manager, "process_events")["mode"] == "active"
        # The kernel never hands a healthy owner's audit to another process (EEXIST). The owner's own
        # process may unregister it, as when its event socket dies; then another process registers.
        from eventsources.audit.netlink import AuditNetlink, open_audit_socket

        ctl = AuditNetlink(open_audit_socket())
        try:
            ctl.set_status(pid=0)
        finally:
            ctl.close()
        child = subprocess.Popen(
            [sys.executable, "-c", TAKEOVER_CHILD, repo], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None and child.stdout.readline().strip() == "registered"
        # the source notices at its next status poll (every 5 s)
        assert await _wait(lambda: _source(manager, "audit").mode is SourceMode.LOST, 20)
        audit = _source(manager, "audit")
        assert not audit.active and f"audit ownership lost to pid {child.pid}" in audit.detail
        buffer = next(b for b in manager.report().buffers if b.name == "process_events")
        assert (buffer.mode, buffer.active, buffer.source) == (TableMode.LOST, False, None)
        assert buffer.detail.startswith("audit: audit ownership lost")
        # the same in agent_events_status and osquery_events
        assert (_status(manager, "audit")["mode"], _status(manager, "audit")["active"]) == ("lost", 0)
        assert (_status(manager, "process_events")["mode"], _status(manager, "process_events")["active"]) == (
            "lost",
            0,
        )
        db = Database(STATUS_SPECS, services=manager.services)
        try:
            rows = db.execute("SELECT name, type, active FROM osquery_events WHERE name IN ('audit', 'process_events')")
            assert sorted(rows.rows) == [("audit", "publisher", 0), ("process_events", "subscriber", 0)]
        finally:
            db.close()
    finally:
        if child is not None:
            assert child.stdin is not None
            child.stdin.write("\n")
            child.stdin.close()
            child.wait(10)
        await manager.stop()
    assert _source(manager, "audit").mode is SourceMode.STOPPED
    assert _kernel_audit() == (
        audit_state.enabled,
        audit_state.pid,
        audit_state.backlog_limit,
        audit_state.backlog_wait_time,
        audit_state.rules,
    )


FALLBACK_CHILD = """
import asyncio, json, logging, sys, time
sys.path.insert(0, sys.argv[1])
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
from agent.events import EventManager, EventOptions
async def main():
    manager = EventManager(EventOptions(disable_hardware_events=True))
    await manager.start()
    try:
        proc = await asyncio.create_subprocess_exec("/bin/sleep", "1")  # long enough for /proc polling
        await proc.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if any(r["pid"] == proc.pid for r in manager.stores["process_events"].select(None)):
                break
            await asyncio.sleep(0.05)
        found = any(r["pid"] == proc.pid for r in manager.stores["process_events"].select(None))
        print(json.dumps({"source": manager.process_source, "found": found, "status": manager.status()}))
    finally:
        await manager.stop()
asyncio.run(main())
"""


@pytest.mark.audit
@pytest.mark.parametrize(
    ("wrapper", "chosen", "refused"),
    [
        # no audit capability in the initial namespaces: the proc connector still works
        (
            ["setpriv", "--inh-caps=-audit_control,-audit_read", "--bounding-set=-audit_control,-audit_read"],
            "proc_connector",
            ("audit",),
        ),
        # an unprivileged user namespace (a container): audit and the proc connector refuse, /proc polling runs
        (["unshare", "-U", "-r", "-n"], "proc_poll", ("audit", "proc_connector")),
    ],
    ids=["no-audit-caps", "userns"],
)
def test_auto_falls_back_when_the_kernel_refuses(audit_state, wrapper, chosen, refused) -> None:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run(
            [*wrapper, sys.executable, "-c", FALLBACK_CHILD, repo], capture_output=True, text=True, timeout=60
        )
    except FileNotFoundError:
        pytest.skip(f"no {wrapper[0]}(1) on this host")
    if out.returncode != 0 and wrapper[0] in out.stderr.split(":")[0]:
        pytest.skip(f"cannot run {wrapper[0]} here: {out.stderr.strip()}")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    if result["source"] == "audit":
        pytest.skip(f"the kernel allowed audit under {' '.join(wrapper)}: nothing to fall back from")
    assert (result["source"], result["found"]) == (chosen, True)
    rows = {r["name"]: r for r in result["status"]}
    for name in refused:
        assert (rows[name]["kind"], rows[name]["mode"], rows[name]["active"]) == ("source", "failed", 0)
        assert "refused" in rows[name]["detail"]
        assert f"events: {name} refused" in out.stderr  # and logged
    assert rows[chosen]["active"] == 1 and rows[chosen]["events_seen"] >= 1
    assert all(f"{name}: refused" in rows[chosen]["detail"] for name in refused)  # why it was chosen
    assert rows["process_events"]["tables"] == chosen
    assert rows["socket_events"]["mode"] == "unavailable"
    assert f"events: process_events from {chosen}" in out.stderr
