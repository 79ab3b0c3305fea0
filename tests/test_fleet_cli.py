"""agent-cli --collector: hosts, query across hosts with per-host status, subscribe/unsubscribe, revoke.

A real collectord process; the hosts are protocol-level agents that answer one-time
queries as the test scripts them (so every status can be produced on purpose).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys

import pytest

from protocol.messages import Execute, ExecuteResult, Subscribe, Unsubscribe
from tests._collector import Collectord, RawAgent, _env, hello


@pytest.fixture(scope="module")
def collectord(tmp_path_factory):
    server = Collectord(tmp_path_factory.mktemp("fleetcli")).start()
    yield server
    server.close()


async def agent_cli(server: Collectord, *argv: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    token_file = server.state / "operator-token"
    if token is not None:
        token_file = server.directory / "other-token"
        token_file.write_text(token)
    args = [sys.executable, "-m", "agent.cli", "--collector", server.url, "--token-file", str(token_file), *argv]
    process = await asyncio.create_subprocess_exec(
        *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=server.directory
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return subprocess.CompletedProcess(args, process.returncode, out.decode(), err.decode())


async def answer(agent: RawAgent, rows=None, error: str | None = None) -> None:
    message = await agent.recv(30)
    assert isinstance(message, Execute)
    if error is not None:
        await agent.send(ExecuteResult(message.query_id, (), (), last=True, error=error))
        return
    await agent.send(ExecuteResult(message.query_id, ("pid", "name"), tuple(rows or ()), last=True))


async def connected(server: Collectord, host_id: str, groups=("cli",)) -> RawAgent:
    agent = RawAgent(server.url, hello(host_id, secret=server.enroll_secret, groups=groups, hostname=f"{host_id}.lan"))
    await agent.connect()
    return agent


async def test_hosts_lists_every_enrolled_host(collectord):
    agent = await connected(collectord, "cli-hosts-1")
    done = await agent_cli(collectord, "hosts", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    (row,) = [r for r in rows if r["host_id"] == "cli-hosts-1"]
    assert row["hostname"] == "cli-hosts-1.lan" and row["online"] == "yes" and row["groups"] == "cli"
    pretty = await agent_cli(collectord, "hosts")
    assert "| host_id" in pretty.stdout and "cli-hosts-1.lan" in pretty.stdout
    await agent.close()


async def test_query_streams_rows_with_a_host_column_then_statuses(collectord):
    ok = await connected(collectord, "cli-q-ok", groups=("qcli",))
    empty = await connected(collectord, "cli-q-empty", groups=("qcli",))
    broken = await connected(collectord, "cli-q-broken", groups=("qcli",))
    command = asyncio.create_task(
        agent_cli(collectord, "query", "--group", "qcli", "--timeout", "20", "--csv", "SELECT pid, name FROM processes")
    )
    await asyncio.gather(
        answer(ok, rows=[(1, "systemd"), (2, "kthreadd")]),
        answer(empty, rows=[]),
        answer(broken, error="no such table: processes"),
    )
    done = await command
    assert done.returncode == 1
    assert list(csv.reader(io.StringIO(done.stdout))) == [
        ["host", "pid", "name"],
        ["cli-q-ok.lan", "1", "systemd"],
        ["cli-q-ok.lan", "2", "kthreadd"],
    ]
    assert done.stderr.splitlines() == [
        "cli-q-broken.lan (cli-q-broken): error: no such table: processes",
        "cli-q-empty.lan (cli-q-empty): no rows",
        "cli-q-ok.lan (cli-q-ok): 2 rows",
        "Error: 1 of 3 hosts failed",
    ]
    for agent in (ok, empty, broken):
        await agent.close()


async def test_query_reports_offline_unknown_and_timed_out_hosts(collectord):
    gone = await connected(collectord, "cli-q-gone", groups=("qcli2",))
    await gone.close()
    silent = await connected(collectord, "cli-q-silent", groups=("qcli2",))
    ok = await connected(collectord, "cli-q-fine", groups=("qcli2",))
    await asyncio.sleep(0.3)
    command = asyncio.create_task(
        agent_cli(
            collectord, "query", "--group", "qcli2", "--host", "no-such-host", "--timeout", "2", "--json", "SELECT 1"
        )
    )
    await answer(ok, rows=[(7, "x")])
    done = await command
    assert done.returncode == 1
    assert json.loads(done.stdout) == [{"host": "cli-q-fine.lan", "name": "x", "pid": "7"}]
    lines = done.stderr.splitlines()
    assert "cli-q-gone.lan (cli-q-gone): offline" in lines
    assert "cli-q-silent.lan (cli-q-silent): timed out" in lines
    assert "no-such-host: unknown host" in lines
    assert lines[-1] == "Error: 3 of 4 hosts failed"
    await silent.close()
    await ok.close()


async def test_query_with_every_host_answering_exits_0(collectord):
    a = await connected(collectord, "cli-q-all-a", groups=("qcli3",))
    command = asyncio.create_task(agent_cli(collectord, "query", "--group", "qcli3", "SELECT 1"))
    await answer(a, rows=[(1, "one")])
    done = await command
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1] == "| host            | pid | name |"
    await a.close()


async def test_subscribe_unsubscribe_and_revoke(collectord):
    agent = await connected(collectord, "cli-sub-1", groups=("subcli",))
    done = await agent_cli(
        collectord, "subscribe", "procs", "--interval", "30", "--group", "subcli", "SELECT pid FROM processes"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "subscription 'procs' targets 1 hosts (1 connected)"
    message = await agent.recv()
    assert isinstance(message, Subscribe) and message.interval == 30 and message.name == "procs"
    listed = await agent_cli(collectord, "subscriptions", "--csv")
    assert "procs,operator,30,differential,yes,group:subcli,SELECT pid FROM processes" in listed.stdout
    done = await agent_cli(collectord, "unsubscribe", "procs")
    assert done.stdout.strip() == "subscription 'procs' removed"
    assert isinstance(await agent.recv(), Unsubscribe)
    missing = await agent_cli(collectord, "unsubscribe", "procs")
    assert missing.returncode == 1 and missing.stderr.strip() == "Error: no operator subscription named 'procs'"
    done = await agent_cli(collectord, "revoke", "cli-sub-1.lan")
    assert done.stdout.strip() == "host cli-sub-1 (cli-sub-1.lan) revoked"
    unknown = await agent_cli(collectord, "revoke", "nobody")
    assert unknown.stderr.strip() == "Error: no enrolled host with id or hostname 'nobody'"
    await agent.close()


async def test_clear_errors(collectord, tmp_path):
    wrong = await agent_cli(collectord, "hosts", token="not-the-operator-token")
    assert wrong.returncode == 1
    assert wrong.stderr.strip() == f"Error: {collectord.url}/operator refused: wrong operator token"
    no_targets = await agent_cli(collectord, "query", "SELECT 1")
    assert no_targets.stderr.strip() == "Error: which hosts? give --host H, --group G or --all"
    args = [
        sys.executable,
        "-m",
        "agent.cli",
        "--collector",
        "ws://127.0.0.1:1",
        "--token-file",
        str(collectord.state / "operator-token"),
        "hosts",
    ]
    down = subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=60, check=False)
    assert down.returncode == 1 and down.stderr.startswith("Error: cannot connect to ws://127.0.0.1:1/operator:")
    assert "Traceback" not in down.stderr
    local = subprocess.run(
        [sys.executable, "-m", "agent.cli", "hosts"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert local.stderr.strip() == "Error: hosts needs a collector: agent-cli --collector URL hosts ..."
    fleet_flag = subprocess.run(
        [sys.executable, "-m", "agent.cli", "query", "--all", "SELECT 1"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert fleet_flag.stderr.strip() == "Error: --host, --group and --all query the fleet: add --collector URL"
    no_token = subprocess.run(
        [sys.executable, "-m", "agent.cli", "--collector", collectord.url, "hosts"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert no_token.stderr.strip().startswith("Error: an operator token is needed: --token-file FILE")


def test_local_commands_do_not_load_the_fleet_client():
    code = "import sys, agent.cli; agent.cli.build_parser(); print('websockets' in sys.modules, 'protocol.opsession' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60, check=True
    )
    assert done.stdout.strip() == "False False"
