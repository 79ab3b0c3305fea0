"""collectord -> Zeek: real collectord processes sending to the strict double of Zeek's endpoint.

Protocol-level agents (tests/_collector.py's RawAgent) drive the requests from Zeek: groups by
subnet and by the agents' configs, one-time queries, refused requests and rows that cannot be
the declared types. tests/test_zeek_e2e.py runs real agentd processes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from collector.zeek import brokerjson as bj
from collector.zeek.values import Count, Enum
from protocol import operator as op
from protocol.messages import Action, Execute, ExecuteResult, Results, Subscribe, Unsubscribe
from tests._collector import Collectord, Operator, RawAgent, hello
from tests.zeek_double import DoubleThread, ScriptRequest, request_record

ROOT = Path(__file__).resolve().parent.parent
LAB_ONE = "event(resultInfo:osquery::ResultInfo, one:int)"


@pytest.fixture
def double():
    thread = DoubleThread()
    thread.decls.declare_event("osquery::lab_one", LAB_ONE)
    thread.decls.declare_event("osquery::web_one", LAB_ONE)
    thread.decls.declare_event("osquery::answer", "event(resultInfo:osquery::ResultInfo, answer:count)")
    thread.decls.declare_event("osquery::named", "event(resultInfo:osquery::ResultInfo, name:count)")
    thread.start()
    yield thread
    thread.close()


@pytest.fixture
def collectord(tmp_path, double):
    server = Collectord(tmp_path, extra_args=["--zeek", double.url])
    server.start()
    yield server
    server.close()


def subscribe(decls: Any, ev: str, query: str, *, groups=("",), hosts=("",), utype="ADD", inter=10) -> ScriptRequest:
    record = request_record(decls, ev, query, utype, inter, "", hosts, groups)
    return ScriptRequest("osquery::subscribe_v1", (record,))


def join(ranges: list[str], group: str, *, leave: bool = False) -> ScriptRequest:
    name = "osquery::leave_v1" if leave else "osquery::join_v1"
    return ScriptRequest(name, ([ipaddress.ip_network(r) for r in ranges], group))


async def until(predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll until ``predicate`` is truthy (a bound on waiting, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def next_of(agent: RawAgent, kind: type, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        message = await agent.recv(max(0.1, deadline - time.monotonic()))
        if isinstance(message, kind):
            return message


async def synced(server: Collectord, times: int = 1) -> None:
    await until(lambda: server.log().count("synced with zeek_") >= times, "the framework's replay")


async def zeek_status(server: Collectord) -> op.ComponentInfo:
    async with Operator(server.url, server.operator_token) as operator:
        (reply,) = await operator.request(op.GetStatus(operator.session.next_req()))
        assert isinstance(reply, op.CollectorStatus)
        (component,) = [c for c in reply.components if c.kind == "zeek"]
        return component


def counters(component: op.ComponentInfo) -> dict[str, int]:
    return {c.name: c.value for c in component.counters}


async def test_subnet_groups_and_config_groups_reach_hosts_now_and_later(double, collectord):
    decls = double.decls
    lab = subscribe(decls, "osquery::lab_one", "SELECT 1 AS one", groups=("lab",))
    web = subscribe(decls, "osquery::web_one", "SELECT 2 AS one", groups=("web",))
    for req in (join(["10.1.0.0/16"], "lab"), lab, web):
        double.call(lambda r=req: double.double.request(r))
    await synced(collectord)
    secret = collectord.enroll_secret
    a = RawAgent(collectord.url, hello("host-a", secret=secret, addresses=["10.1.2.3", "fe80::1%eth0"]))
    b = RawAgent(collectord.url, hello("host-b", secret=secret, addresses=["10.2.0.1"], groups=["web"]))
    await a.connect()
    await b.connect()
    try:
        sub_a = await next_of(a, Subscribe)
        assert sub_a.sql == "SELECT 1 AS one" and sub_a.interval == 10 and sub_a.removed is False
        sub_b = await next_of(b, Subscribe)
        assert sub_b.sql == "SELECT 2 AS one"
        # A result of host a arrives typed as the event declares it (int, not count), as osquery::ADD.
        seq = a.session.next_seq
        await a.send(Results(seq, sub_a.id, sub_a.name, ("one",), ((Action.ADDED, (1,)),), 1, 0, time.time()))
        (row,) = await until(lambda: [e for e in double.snapshot() if e.name == "osquery::lab_one"], "a's row")
        assert row.args == (["host-a", Enum("osquery::ADD"), ""], 1) and type(row.args[1]) is int
        # Zeek joins another range to the group while b is connected: b gets the subscription at once.
        double.call(lambda: double.double.request(join(["10.2.0.0/16"], "lab")))
        assert (await next_of(b, Subscribe)).id == sub_a.id
        # a host that connects later is in the group by its address
        c = RawAgent(collectord.url, hello("host-c", secret=secret, addresses=["10.1.9.9"]))
        await c.connect()
        assert (await next_of(c, Subscribe)).id == sub_a.id
        await c.close()
        # leave: a's range goes, a stops the query
        double.call(lambda: double.double.request(join(["10.1.0.0/16"], "lab", leave=True)))
        assert (await next_of(a, Unsubscribe)).id == sub_a.id
        async with Operator(collectord.url, collectord.operator_token) as operator:
            hosts = {h.host_id: h for h in await operator.hosts()}
        assert set(hosts["host-b"].groups) == {"lab", "web"} and hosts["host-a"].groups == ()
    finally:
        await a.close()
        await b.close()


async def test_one_time_queries_and_errors_go_to_zeek(double, collectord):
    decls = double.decls
    await synced(collectord)
    a = RawAgent(collectord.url, hello("host-a", secret=collectord.enroll_secret))
    await a.connect()
    try:
        await until(lambda: any(e.name == "osquery::host_connected_v1" for e in double.snapshot()), "host_connected")
        record = request_record(decls, "osquery::answer", "SELECT 42 AS answer", "SNAPSHOT", 10, "k1", ("host-a",))
        double.call(lambda: double.double.request(ScriptRequest("osquery::execute_v1", (record,)), keep=False))
        execute = await next_of(a, Execute)
        assert execute.sql == "SELECT 42 AS answer"
        await a.send(ExecuteResult(execute.query_id, ("answer",), ((42,),), True))
        (answer,) = await until(lambda: [e for e in double.snapshot() if e.name == "osquery::answer"], "the answer")
        assert answer.args == (["host-a", Enum("osquery::SNAPSHOT"), "k1"], Count(42))
        # the host's error comes back as osquery::error naming the event
        failing = request_record(decls, "osquery::answer", "SELECT nope", "SNAPSHOT", 10, "k2", ("host-a",))
        double.call(lambda: double.double.request(ScriptRequest("osquery::execute_v1", (failing,)), keep=False))
        execute = await next_of(a, Execute)
        await a.send(ExecuteResult(execute.query_id, (), (), True, "no such column: nope"))

        def errors() -> list[bj.Event]:
            return [e for e in double.snapshot() if e.name == "osquery::error"]

        (error,) = await until(errors, "osquery::error")
        info, ev, message = error.args
        assert info == ["host-a", Enum("osquery::SNAPSHOT"), "k2"] and ev == "osquery::answer"
        assert "no such column: nope" in message
        # a subscription whose event collectord cannot fill is refused, with the reason
        bad = ScriptRequest(
            "osquery::subscribe_v1",
            (["osquery::answer", "event(answer:count)", "SELECT 1", "ADD", Count(10), "", [""], [""]],),
        )
        double.call(lambda: double.double.request(bad, keep=False))
        await until(lambda: len(errors()) == 2, "the refusal")
        assert "first parameter must be of type osquery::ResultInfo" in errors()[1].args[2]
        # a column that cannot be the declared type: osquery::error instead of the row, never a wrong value
        named = subscribe(decls, "osquery::named", "SELECT 'text' AS name")
        double.call(lambda: double.double.request(named))
        sub = await next_of(a, Subscribe)
        rows = ((Action.ADDED, ("text",)), (Action.ADDED, ("7",)))
        await a.send(Results(a.session.next_seq, sub.id, sub.name, ("name",), rows, 1, 0, time.time()))
        await until(lambda: len(errors()) == 3, "the conversion error")
        assert "column name value 'text' cannot be sent as name:count" in errors()[2].args[2]
        (converted,) = [e for e in double.snapshot() if e.name == "osquery::named"]
        assert converted.args[1] == Count(7)  # numeric text declared count is converted
        status = await zeek_status(collectord)
        assert status.state == "ready" and counters(status)["conversion_errors"] == 1
        assert counters(status)["refused_requests"] == 1 and counters(status)["subscriptions"] == 1
        assert "refused" in collectord.log() and "cannot be sent as name:count" in collectord.log()
        # the operator's view in text
        token = str(collectord.state / "operator-token")
        shown = subprocess.run(
            [sys.executable, "-m", "agent.cli", "--collector", collectord.url, "--token-file", token, "status"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert shown.returncode == 0, shown.stderr
        first, zeek_line, counters_line = shown.stdout.splitlines()[:3]
        assert first.endswith(": 1 of 1 hosts online")
        assert zeek_line.startswith(
            f"zeek:127.0.0.1:{double.double.port}: ready - {double.url}/v1/messages/json (Zeek zeek_"
        )
        assert "last error:" in zeek_line and "conversion_errors 1" in counters_line
    finally:
        await a.close()


async def test_host_events_reach_zeek_in_order(double, collectord):
    await synced(collectord)
    a = RawAgent(collectord.url, hello("host-a", secret=collectord.enroll_secret, addresses=["10.1.2.3"]))
    await a.connect()
    await until(lambda: any(e.name == "osquery::host_connected_v1" for e in double.snapshot()), "host_connected")
    await a.close()
    await until(lambda: any(e.name == "osquery::host_disconnected_v1" for e in double.snapshot()), "host_disconnected")
    events = [e for e in double.snapshot() if e.name.startswith("osquery::host_")]
    assert [e.name for e in events] == ["osquery::host_connected_v1", "osquery::host_disconnected_v1"]
    assert events[0].args == ("host-a", "host-a", [ipaddress.ip_address("10.1.2.3")], [])
    # Zeek restarted: it is told again which hosts are connected (none now)
    b = RawAgent(collectord.url, hello("host-b", secret=collectord.enroll_secret))
    await b.connect()
    await until(lambda: sum(e.name == "osquery::host_connected_v1" for e in double.snapshot()) == 2, "b connected")
    double.restart()
    await synced(collectord, 2)
    await until(
        lambda: [e.args[0] for e in double.snapshot() if e.name == "osquery::host_connected_v1"] == ["host-b"],
        "b again",
    )
    await b.close()


async def test_two_endpoints_with_their_own_topics_each_get_their_own_run(tmp_path):
    first, second = DoubleThread(), DoubleThread()
    try:
        for d in (first, second):
            d.decls.declare_event("osquery::lab_one", LAB_ONE)
        first.start()
        second.start(zeek_topic="/site/zeek/", collector_topic="/site/collector/")
        config = (
            f'[[zeek]]\nurl = "{first.url}"\nname = "one"\n'
            f'[[zeek]]\nurl = "{second.url}"\nname = "two"\nzeek_topic = "/site/zeek/"\n'
            'collector_topic = "/site/collector/"\n'
        )
        server = Collectord(tmp_path, config)
        server.start()
        try:
            for d in (first, second):
                d.call(lambda d=d: d.double.request(subscribe(d.decls, "osquery::lab_one", "SELECT 1 AS one")))
            await synced(server, 2)
            a = RawAgent(server.url, hello("host-a", secret=server.enroll_secret))
            await a.connect()
            subs = [await next_of(a, Subscribe), await next_of(a, Subscribe)]
            assert len({s.id for s in subs}) == 2  # the same query, a run of its own for each endpoint
            for sub in subs:
                await a.send(
                    Results(a.session.next_seq, sub.id, sub.name, ("one",), ((Action.ADDED, (1,)),), 1, 0, 0.0)
                )
            for d in (first, second):
                await until(lambda d=d: [e for e in d.snapshot() if e.name == "osquery::lab_one"], "a row at each")
                assert len([e for e in d.snapshot() if e.name == "osquery::lab_one"]) == 1
            await a.close()
        finally:
            server.close()
    finally:
        first.close()
        second.close()


async def test_while_zeek_is_away_the_backlog_is_bounded_and_drops_are_reported(tmp_path, double):
    double.call(lambda: double.double.request(subscribe(double.decls, "osquery::lab_one", "SELECT n AS one FROM t")))
    config = f'[[zeek]]\nurl = "{double.url}"\nname = "z"\nmax_inflight = 1\nmax_backlog = 3\n'
    server = Collectord(tmp_path, config)
    server.start()
    a = RawAgent(server.url, hello("host-a", secret=server.enroll_secret))
    try:
        await synced(server)
        await a.connect()
        sub = await next_of(a, Subscribe)
        away = double.double
        double.call(away.stop)
        await until(lambda: "reconnecting" in server.log(), "collectord noticing Zeek is away")
        for n in range(10):
            seq = a.session.next_seq
            await a.send(Results(seq, sub.id, sub.name, ("one",), ((Action.ADDED, (n,)),), 1, 0, 0.0))
            await a.wait_ack(seq)

        async def dropped() -> int:
            return counters(await zeek_status(server))["dropped_batches"]

        deadline = time.monotonic() + 60
        while await dropped() == 0:
            assert time.monotonic() < deadline, "no drop counted"
            await asyncio.sleep(0.2)
        double.start(port=away.port, state=away.state, requests=list(away.requests))
        await synced(server, 2)

        def got() -> list[int]:
            return [e.args[1] for e in double.snapshot() if e.name == "osquery::lab_one"]

        errors = await until(
            lambda: [e for e in double.snapshot() if e.name == "osquery::error" and "dropped" in e.args[2]],
            "the report",
        )
        status = counters(await zeek_status(server))
        await until(lambda: len(got()) + status["dropped_rows"] == 10, "the rows kept")
        assert sorted(got()) == sorted(set(got())) and set(got()) <= set(range(10))
        assert max(got()) == 9 and status["dropped_batches"] == status["dropped_rows"] > 0  # the oldest went
        assert f"dropped {status['dropped_rows']} result rows" in errors[0].args[2]
        assert "max_backlog = 3" in errors[0].args[2] and "dropping the oldest" in server.log()
    finally:
        await a.close()
        server.close()
