"""agentd -> collectord as real processes on loopback: kill -9 of either side, overflow, failover, streaming.

The agent's schedule runs a query whose result grows by a few hundred rows a second up
to N: with osquery's differential results each row is reported once, as "added".  Every
test counts rows by (host, n) at the collector's JSON-lines sink: exactly once unless a
test says otherwise.  Kernel events are disabled where a test does not need them.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest

from protocol import operator as op
from protocol.messages import Mode
from tests._collector import Agentd, Collectord, Operator, growing_query
from tests._wait import wait_for


def numbers(server: Collectord, name: str = "grow") -> Counter[int]:
    return Counter(r["columns"]["n"] for r in server.rows() if r["name"] == name)


def agent_config(urls: list[str], secret_file: Path, query: str, **collector) -> dict:
    return {
        "options": {"disable_events": True, "schedule_splay_percent": 0, "watchdog_level": -1},
        "schedule": {"grow": {"query": query, "interval": 1}},
        "collector": {"urls": urls, "enroll_secret_file": str(secret_file), **collector},
    }


@pytest.fixture
def dirs(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "a").mkdir()
    return tmp_path


@pytest.fixture
def processes():
    started: list = []
    yield started
    for process in started:
        process.close()


async def subscribe(server: Collectord, name: str, sql: str, interval: int) -> None:
    async with Operator(server.url, server.operator_token) as operator:
        (done,) = await operator.request(
            op.AddSubscription(
                operator.session.next_req(), name, sql, interval, Mode.DIFFERENTIAL, True, op.Targets(all=True)
            )
        )
        assert isinstance(done, op.Done), done


async def subscription_names(server: Collectord) -> list[str]:
    async with Operator(server.url, server.operator_token) as operator:
        (reply,) = await operator.request(op.ListSubscriptions(operator.session.next_req()))
        return [s.name for s in reply.subscriptions]


TICK = "SELECT CAST(strftime('%s', 'now') AS INTEGER) / 2 AS tick"


def ticks(server: Collectord) -> list[int]:
    return sorted({r["columns"]["tick"] for r in server.rows() if r["name"] == "tick" and r["action"] == "added"})


def test_collectord_killed_while_an_agent_streams_10000_rows(dirs, processes):
    server = Collectord(dirs / "c")
    processes.append(server)
    server.start()
    agent = Agentd(
        dirs / "a", agent_config([server.url], server.state / "enroll-secret", growing_query(time.time(), 10_000, 700))
    )
    processes.append(agent)
    agent.start()
    wait_for(lambda: sum(numbers(server).values()) >= 2000, "the first rows at the collector")
    asyncio.run(subscribe(server, "tick", TICK, 1))
    wait_for(lambda: ticks(server), "the operator subscription's first results")
    server.kill()
    time.sleep(1.0)
    server.start()  # same port, same state
    wait_for(lambda: sum(numbers(server).values()) >= 10_000, "all 10,000 rows at the collector", timeout=120)
    first_tick_after = max(ticks(server))
    rows = numbers(server)
    assert sorted(rows) == list(range(10_000))
    assert set(rows.values()) == {1}, [n for n, c in rows.items() if c > 1][:10]
    # The subscription survived in the registry and keeps running on the host.
    assert asyncio.run(subscription_names(server)) == ["tick"]
    wait_for(lambda: max(ticks(server)) > first_tick_after, "the subscription's results after the restart")
    status = agent.status().uplink
    assert status is not None and status.state == "connected" and status.dropped_rows == 0
    assert agent.stop() == 0 and server.stop() == 0


def test_agentd_killed_while_streaming_10000_rows(dirs, processes):
    server = Collectord(dirs / "c")
    processes.append(server)
    server.start()
    agent = Agentd(
        dirs / "a", agent_config([server.url], server.state / "enroll-secret", growing_query(time.time(), 10_000, 700))
    )
    processes.append(agent)
    agent.start()
    asyncio.run(subscribe(server, "tick", TICK, 1))
    wait_for(lambda: sum(numbers(server).values()) >= 3000 and ticks(server), "rows and ticks at the collector")
    agent.kill()
    before = max(ticks(server))
    time.sleep(1.0)
    agent.start()
    assert "1 collector subscriptions back on the schedule" in agent.log()
    wait_for(lambda: sum(numbers(server).values()) >= 10_000, "all 10,000 rows at the collector", timeout=120)
    rows = numbers(server)
    assert sorted(rows) == list(range(10_000))
    assert set(rows.values()) == {1}, [n for n, c in rows.items() if c > 1][:10]
    wait_for(lambda: max(ticks(server)) > before, "the persisted subscription running after the restart")
    assert agent.stop() == 0 and server.stop() == 0


def test_queue_overflow_reports_exactly_the_rows_dropped(dirs, processes):
    secret = dirs / "enroll-secret"
    secret.write_text("an-enroll-secret-for-the-test\n")
    os.chmod(secret, 0o600)
    # No collector yet: everything the agent produces waits in its bounded queue.
    server = Collectord(dirs / "c", extra_args=["--enroll-secret-file", str(secret)])
    processes.append(server)
    import socket

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    url = f"ws://127.0.0.1:{port}"
    total = 3000
    agent = Agentd(
        dirs / "a",
        agent_config([url], secret, growing_query(time.time(), total, 400), queue_max_rows=1000),
    )
    processes.append(agent)
    agent.start()

    def overflowed():
        up = agent.status().uplink
        return up if up is not None and up.dropped_rows > 0 and up.queued_rows + up.dropped_rows >= total else None

    queued = wait_for(overflowed, "the agent's queue to overflow")
    assert queued.queued_rows <= 1000
    assert queued.queued_rows + queued.dropped_rows == total
    server.start(listen=f"127.0.0.1:{port}")
    wait_for(lambda: sum(numbers(server).values()) >= queued.queued_rows, "the queued rows at the collector")
    rows = numbers(server)
    assert set(rows.values()) == {1}
    dropped = total - len(rows)
    assert dropped == queued.dropped_rows
    # The oldest were dropped: what arrived is the newest part.
    assert sorted(rows) == list(range(dropped, total))

    async def host_dropped() -> int:
        async with Operator(server.url, server.operator_token) as operator:
            (host,) = await operator.hosts()
            return host.dropped_rows

    assert asyncio.run(host_dropped()) == dropped
    assert f"dropped {dropped} rows in" in server.log()
    assert agent.stop() == 0 and server.stop() == 0


def test_two_collector_urls_the_first_dies_the_agent_fails_over(dirs, processes):
    secret = dirs / "enroll-secret"
    secret.write_text("an-enroll-secret-for-the-test\n")
    (dirs / "c2").mkdir()
    first = Collectord(dirs / "c", extra_args=["--enroll-secret-file", str(secret)])
    second = Collectord(dirs / "c2", extra_args=["--enroll-secret-file", str(secret)])
    processes.extend([first, second])
    first.start()
    second.start()
    total = 6000
    agent = Agentd(dirs / "a", agent_config([first.url, second.url], secret, growing_query(time.time(), total, 600)))
    processes.append(agent)
    agent.start()
    wait_for(lambda: sum(numbers(first).values()) >= 1500, "rows at the first collector")
    first.kill()
    wait_for(lambda: sum(numbers(second).values()) > 0, "rows at the second collector")
    wait_for(lambda: len(set(numbers(first)) | set(numbers(second))) >= total, "every row at one of them", timeout=120)
    one, two = numbers(first), numbers(second)
    assert set(one) | set(two) == set(range(total))  # nothing lost
    assert set(one.values()) <= {1} and set(two.values()) == {1}  # each collector stored each row once
    # At most the batches in flight when the first died can be at both.
    assert len(set(one) & set(two)) <= 256 * 600
    assert "uplink connected to " + second.url in agent.log()
    assert agent.stop() == 0 and second.stop() == 0


def test_plaintext_to_a_non_loopback_collector_is_refused(dirs, processes):
    done = Agentd(dirs / "a", {"options": {"disable_events": True}}, extra_args=["--collector", "ws://192.0.2.1:9440"])
    with pytest.raises(RuntimeError, match="exited with 1"):
        done.start()
    assert "--collector: plaintext ws:// is only allowed to a loopback address" in done.log()


def test_event_table_subscription_streams_new_rows(dirs, processes):
    """A subscription on process_events is not held to its interval: a new process arrives in well under it."""
    server = Collectord(dirs / "c")
    processes.append(server)
    server.start()
    config = {
        "options": {
            "schedule_splay_percent": 0,
            "watchdog_level": -1,
            "process_events_source": "proc_poll",
            "disable_hardware_events": True,
        },
        "collector": {"urls": [server.url], "enroll_secret_file": str(server.state / "enroll-secret")},
    }
    agent = Agentd(dirs / "a", config)
    processes.append(agent)
    agent.start()
    marker = f"uplink-stream-{os.getpid()}-{time.monotonic_ns()}"
    asyncio.run(
        subscribe(
            server, "execs", f"SELECT pid, path, cmdline FROM process_events WHERE cmdline LIKE '%{marker}%'", 3600
        )
    )
    wait_for(lambda: agent.status().uplink.subscriptions == 1, "the subscription on the host")
    import subprocess

    subprocess.run(["sh", "-c", f"sleep 0.3 # {marker}"], check=True)
    found = wait_for(
        lambda: [r for r in server.rows() if r["name"] == "execs"], "the exec at the collector", timeout=30
    )
    assert any(marker in r["columns"]["cmdline"] for r in found)
    assert agent.stop() == 0 and server.stop() == 0
    assert json.loads(json.dumps(found[0]))["action"] == "added"


def agent_cli(server: Collectord, *argv: str):
    import subprocess
    import sys

    from tests._collector import _env

    return subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "--collector",
            server.url,
            "--token-file",
            str(server.state / "operator-token"),
            *argv,
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
        check=False,
    )


def test_fleet_query_and_revoke_with_a_real_agent(dirs, processes):
    server = Collectord(dirs / "c")
    processes.append(server)
    server.start()
    agent = Agentd(dirs / "a", agent_config([server.url], server.state / "enroll-secret", "SELECT 1 AS n"))
    processes.append(agent)
    agent.start()
    wait_for(lambda: agent.status().uplink.state == "connected", "the agent's connection")
    done = agent_cli(server, "query", "--all", "--json", "SELECT pid, 2.5 AS f, NULL AS z FROM processes WHERE pid = 1")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    assert row["pid"] == "1" and row["f"] == "2.5" and row["z"] == ""
    assert done.stderr.strip().endswith(": 1 rows")
    bad = agent_cli(server, "query", "--all", "SELECT * FROM no_such_table")
    assert bad.returncode == 1 and "error: no such table: no_such_table" in bad.stderr
    # Collector SQL runs through the read-only authorizer.
    write = agent_cli(server, "query", "--all", "CREATE TABLE t (x)")
    assert write.returncode == 1 and "error:" in write.stderr and "not authorized" in write.stderr
    revoked = agent_cli(server, "revoke", agent.status().agent.host_identifier)
    assert revoked.returncode == 0, revoked.stderr
    wait_for(lambda: agent.status().uplink.state == "revoked", "the agent to learn it is revoked")
    assert "this host was revoked by the collector" in agent.log()
    assert agent.stop() == 0 and server.stop() == 0


def test_bad_input_while_a_real_agent_streams(dirs, processes):
    from tests.test_collectord import bad_frame_after_welcome, oversized_frame, replayed_sequence, silent_client

    server = Collectord(dirs / "c", "[limits]\nhello_timeout = 1.5\nmax_frame = 131072\n")
    processes.append(server)
    server.start()
    total = 5000
    agent = Agentd(
        dirs / "a", agent_config([server.url], server.state / "enroll-secret", growing_query(time.time(), total, 700))
    )
    processes.append(agent)
    agent.start()

    async def attacks():
        results = []
        for attack in (bad_frame_after_welcome, replayed_sequence, oversized_frame, silent_client):
            results.append(await attack(server))
        return results

    outcomes = asyncio.run(attacks())
    assert [code for _, code in outcomes] == [1008, 1008, 1009, 1008]
    wait_for(lambda: sum(numbers(server).values()) >= total, "every row of the real agent", timeout=120)
    rows = numbers(server)
    assert sorted(rows) == list(range(total)) and set(rows.values()) == {1}
    assert agent.status().uplink.state == "connected"
    assert agent.stop() == 0 and server.stop() == 0


def test_an_unreachable_collector_is_logged_once_and_results_wait(dirs, processes):
    import socket

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there
    secret = dirs / "secret"
    secret.write_text("an-enroll-secret-for-the-test\n")
    agent = Agentd(dirs / "a", agent_config([f"ws://127.0.0.1:{port}"], secret, growing_query(time.time(), 500, 100)))
    processes.append(agent)
    agent.start()
    status = wait_for(
        lambda: (up := agent.status().uplink) is not None and up.queued_rows >= 300 and up, "rows waiting in the queue"
    )
    assert status.state in ("disconnected", "connecting") and "Connection refused" in status.last_error
    # Several attempts were made by now (backoff 1, 2, 4 s...), one line says so.
    assert agent.log().count("uplink disconnected: cannot reach") == 1
    assert agent.stop() == 0
