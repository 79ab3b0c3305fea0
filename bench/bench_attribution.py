"""Attribution of short-lived clients: the share attributed correctly per side, the share
wrong (goal 0), and the time per lookup.

Run as root, holding the audit and bench locks (audit state is restored on every exit):

    flock /tmp/zeek-agent-audit-tests.lock flock /tmp/zeek-bench.lock \\
        .venv/bin/python bench/bench_attribution.py [--connections 1000] [--concurrency 4] [--think-ms 20] [--pipeline]

What runs, all real: the agent's kernel audit source (socket_events, process_events) feeds
an AttributionEngine row by row as collectord's sink would; the agent's tables give the
snapshots (interface_addresses, users, processes, listening_ports) through the attribution
subscriptions' SQL; a TCP server (uid 33) on 127.0.0.x answers each client after
``--think-ms`` (0: at once); ``--connections`` clients (bash's /dev/tcp, through setpriv)
run as 5 users, ``--concurrency`` at a time, each living under 50 ms (measured from before
its spawn to after its exit, so an upper bound); every connection's first SYN is captured
on lo with the kernel's timestamp, as Zeek would see it.  Each client writes its pid to the
server, so the right answer is known for every connection.

``--pipeline``: the same through the whole pipeline, real agentd (kernel audit, socket events)
streaming to a real collectord (attribution on): the answers come from the state collectord
saved, as ``collectord attribute`` reads it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from collector.attribution import Action, AttributionEngine, Connection, EngineConfig, Method, Table
from collector.attribution.queries import SUBSCRIPTIONS
from eventsources.audit.source import AuditSource
from tests import _attribution_lab as lab

UIDS = (1, 2, 3, 65534, 12345)  # daemon, bin, sys, nobody, and a uid without a name
SERVER_UID = 33
LIFETIME_LIMIT = 0.050


class Pipeline:
    """The agent's audit source feeding the engine row by row."""

    def __init__(self, engine: AttributionEngine, host: str) -> None:
        self.engine = engine
        self.host = host
        self.rows = 0
        self.connects: dict[int, dict[str, Any]] = {}
        self.source = AuditSource(self._sink, socket_events=True)

    def _sink(self, table: str, row: dict[str, Any]) -> None:
        self.rows += 1
        self.engine.ingest(self.host, Table(table), [(Action.ADDED, row)], row["time"])
        if table == "socket_events" and row["action"] == "connect" and row["family"] in (2, 10):
            self.connects.setdefault(row["pid"], {**row, "_seen": time.time()})


def snapshot(engine: AttributionEngine, host: str, table: Table) -> None:
    (sub,) = [s for s in SUBSCRIPTIONS if s.table is table]
    engine.ingest(host, table, [(Action.SNAPSHOT, r) for r in lab.query(sub.sql)], time.time())


class Accepted:
    """The server's reports, read on a thread."""

    def __init__(self, server: lab.Server) -> None:
        self.server = server
        self.by_pid: dict[int, lab.Accepted] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                found = self.server.next_accepted()
                self.by_pid[found.client_pid] = found
        except (RuntimeError, ValueError):
            return


#: The clients are run by a separate process, as on a real host: the agent process only
#: reads audit and feeds the engine.  It prints one JSON line per client.
SPAWNER = """
import json, subprocess, sys, threading, time
argvs = json.loads(sys.stdin.read())
concurrency = int(sys.argv[1])
lock = threading.Lock()
def worker():
    while True:
        with lock:
            if not argvs:
                return
            uid, argv = argvs.pop()
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
        code = proc.wait()
        line = json.dumps([proc.pid, uid, time.perf_counter() - t0, code])
        with lock:
            print(line, flush=True)
threads = [threading.Thread(target=worker) for _ in range(concurrency)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


def run_clients(count: int, concurrency: int, host: str, port: int) -> list[tuple[int, int, float, int]]:
    """``count`` clients (pid, uid, lifetime, exit code), ``concurrency`` at a time, from another process."""
    argvs = [(uid, lab.client_argv(uid, host, port)) for uid in (UIDS[i % len(UIDS)] for i in range(count))]
    out = subprocess.run(
        [sys.executable, "-c", SPAWNER, str(concurrency)],
        input=json.dumps(argvs[::-1]),
        capture_output=True,
        text=True,
        check=True,
    )
    return [tuple(json.loads(line)) for line in out.stdout.splitlines()]  # type: ignore[misc]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    host_id = "bench-host"
    engine = AttributionEngine(EngineConfig(clock_skew=args.clock_skew))
    pipeline = Pipeline(engine, host_id)
    address = "127.0.0.9"
    await pipeline.source.start()
    clients: list[tuple[int, int, float, int]] = []  # pid, uid, lifetime, exit code
    try:
        with lab.Server([address], uid=SERVER_UID, think_ms=args.think_ms) as server, lab.SynCapture("lo") as cap:
            accepted = Accepted(server)
            port = server.ports[address]
            for table in (Table.INTERFACE_ADDRESSES, Table.USERS, Table.PROCESSES, Table.LISTENING_PORTS):
                await asyncio.to_thread(snapshot, engine, host_id, table)
            started = time.monotonic()
            clients = await asyncio.to_thread(run_clients, args.connections, args.concurrency, address, port)
            elapsed = time.monotonic() - started
            deadline = time.monotonic() + 20  # let the last events and reports come in
            while time.monotonic() < deadline and (
                any(pid not in pipeline.connects for pid, *_ in clients) or len(accepted.by_pid) < len(clients)
            ):
                await asyncio.sleep(0.1)
            syns = cap.close()
            server_pid = server.pid
    finally:
        await pipeline.source.stop()
    result = score(engine, syns, accepted.by_pid, clients, server_pid, port)
    ours = [pipeline.connects[pid] for pid, *_ in clients if pid in pipeline.connects]
    delays = sorted(r["_seen"] - r["timestamp"] for r in ours)
    result.update(
        elapsed_s=round(elapsed, 2),
        rate_per_s=round(len(clients) / elapsed, 1),
        agent_socket_lookups=pipeline.source.status().extra["socket_lookups"],
        agent_event_delay_ms={
            "p50": round(1000 * statistics.median(delays), 1) if delays else None,
            "p99": round(1000 * delays[int(0.99 * (len(delays) - 1))], 1) if delays else None,
        },
        host_clock_vs_capture_ms=_clock(engine, host_id),
    )
    return result


def score(
    engine: AttributionEngine,
    syns: list[lab.Syn],
    accepted: dict[int, lab.Accepted],
    clients: list[tuple[int, int, float, int]],
    server_pid: int,
    port: int,
) -> dict[str, Any]:
    """Attribute every client's connection (timed) and count each side: correct, wrong, or why not."""
    expected = {pid: uid for pid, uid, _, _ in clients}
    results: Counter[str] = Counter()
    times: list[float] = []
    wrong_examples: list[str] = []
    read_in_time = 0
    for acc in accepted.values():
        syn = lab.syn_of(syns, acc)
        if syn is None or acc.client_pid not in expected:
            results["client without its SYN"] += 1
            continue
        conn = Connection(syn.ts, syn.uid(), syn.orig_h, syn.orig_p, syn.resp_h, syn.resp_p, 6)
        t0 = time.perf_counter()
        answer = engine.attribute(conn)
        times.append(time.perf_counter() - t0)
        results["connections"] += 1
        read_in_time += answer.orig.method is Method.SOCKET_EVENT
        for side, want_pid, want_uid in (
            (answer.orig, acc.client_pid, expected[acc.client_pid]),
            (answer.resp, server_pid, SERVER_UID),
        ):
            name = side.side.value
            if not side.attributed:
                results[f"{name} unattributed: {side.reason.value}"] += 1  # type: ignore[union-attr]
            elif (side.pid, side.uid) == (want_pid, want_uid):
                results[f"{name} correct"] += 1
                results[f"{name} correct by {side.method.value}"] += 1  # type: ignore[union-attr]
            else:
                results[f"{name} WRONG"] += 1
                if len(wrong_examples) < 5:
                    wrong_examples.append(f"{name}: got pid {side.pid} uid {side.uid}, want {want_pid} {want_uid}")
    lifetimes = sorted(t for _, _, t, _ in clients)
    n = results["connections"] or 1
    return {
        "connections_run": len(clients),
        "client_failures": sum(1 for *_, code in clients if code != 0),
        "connections_seen": results["connections"],
        "lifetime_ms": {
            "p50": round(1000 * statistics.median(lifetimes), 1),
            "p99": round(1000 * lifetimes[int(0.99 * (len(lifetimes) - 1))], 1),
            "max": round(1000 * lifetimes[-1], 1),
            "over_50ms": sum(1 for t in lifetimes if t >= LIFETIME_LIMIT),
        },
        "orig_correct_pct": round(100 * results["orig correct"] / n, 2),
        "resp_correct_pct": round(100 * results["resp correct"] / n, 2),
        "orig_wrong": results["orig WRONG"],
        "resp_wrong": results["resp WRONG"],
        "lookup_us": {
            "mean": round(1e6 * statistics.fmean(times), 1) if times else None,
            "p50": round(1e6 * statistics.median(times), 1) if times else None,
            "p99": round(1e6 * sorted(times)[int(0.99 * (len(times) - 1))], 1) if times else None,
        },
        "outcomes": dict(sorted(results.items())),
        "orig_exact": f"{read_in_time}/{results['connections']}",
        "wrong_examples": wrong_examples,
        "engine": {k: v for k, v in engine.stats().__dict__.items() if k != "counters"},
    }


def run_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    """The same clients through the whole pipeline: real agentd (kernel audit) -> real collectord
    (attribution on, its sink and persisted state); answers from the state collectord saved, as
    ``collectord attribute`` reads it."""
    from collector.attribution.persist import load_engine, state_path
    from collector.attribution.queries import SUBSCRIPTIONS
    from tests._collector import Agentd, Collectord

    workdir = Path(tempfile.mkdtemp(prefix="bench-attribution-"))
    for d in ("c", "a"):
        (workdir / d).mkdir()
    server = Collectord(workdir / "c", "[attribution]\nsave_interval = 0.5\n", attribution=True)
    agent = None
    try:
        server.start()
        agent = Agentd(
            workdir / "a",
            {
                "options": {"audit_allow_sockets": True, "schedule_splay_percent": 0, "watchdog_level": -1},
                "collector": {"urls": [server.url], "enroll_secret_file": str(server.state / "enroll-secret")},
            },
        ).start()
        state = state_path(server.state)
        _wait(lambda: agent.status().uplink.subscriptions == len(SUBSCRIPTIONS), "the attribution subscriptions")
        _wait(lambda: state.exists() and bool(load_engine(state).owners("127.0.0.1", time.time())), "the host")
        address = "127.0.0.9"
        with lab.Server([address], uid=SERVER_UID, think_ms=args.think_ms) as tcp, lab.SynCapture("lo") as cap:
            accepted = Accepted(tcp)
            port = tcp.ports[address]
            started = time.monotonic()
            clients = run_clients(args.connections, args.concurrency, address, port)
            elapsed = time.monotonic() - started

            def learned() -> bool:
                pids = {v.pid for v in load_engine(state).user_connections()}
                return all(pid in pids for pid, *_ in clients) and len(accepted.by_pid) >= len(clients)

            _wait(learned, "every connect in collectord's state", timeout=120, quiet=True)
            syns = cap.close()
            server_pid = tcp.pid
        result = score(load_engine(state), syns, accepted.by_pid, clients, server_pid, port)
        result.update(elapsed_s=round(elapsed, 2), rate_per_s=round(len(clients) / elapsed, 1), pipeline=True)
        return result
    finally:
        if agent is not None:
            agent.close()
        server.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait(predicate: Any, what: str, timeout: float = 90.0, *, quiet: bool = False) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (OSError, ValueError):
            pass  # the state file is being replaced
        time.sleep(0.2)
    if not quiet:
        raise RuntimeError(f"bench_attribution: timed out waiting for {what}")


def _clock(engine: AttributionEngine, host_id: str) -> dict[str, float] | None:
    """The learned offset (capture time - audit time of the connect) and its spread."""
    estimate = engine.hosts[host_id].clock_estimate()
    if estimate is None:
        return None
    return {"offset": round(1000 * estimate[0], 2), "spread": round(1000 * estimate[1], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--think-ms", type=float, default=20.0, help="server's delay before it answers (0: at once)")
    parser.add_argument("--clock-skew", type=float, default=1.0, help="EngineConfig.clock_skew (s)")
    parser.add_argument(
        "--pipeline", action="store_true", help="through real agentd and collectord (answers from its saved state)"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_attribution: needs root (kernel audit, AF_PACKET capture, setpriv)", file=sys.stderr)
        return 2
    for tool, what in ((lab.SETPRIV, "setpriv"), (lab.IP, "ip")):
        if tool is None:
            print(f"bench_attribution: {what} is not installed", file=sys.stderr)
            return 2
    result = run_pipeline(args) if args.pipeline else asyncio.run(run(args))
    result["args"] = vars(args)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
