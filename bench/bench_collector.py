"""collectord under 1,000 simulated agents: rows/s, collector CPU and RSS, send-to-sink latency.

    PYTHONPATH=. python bench/bench_collector.py [--agents 1000] [--procs 4] [--rows 20] [--interval 1]
                                                 [--seconds 60] [--warmup 20]

A real collectord process (its embedded defaults plus limits for 1,000 connections; the
JSON-lines sink with fsync) on loopback; ``--procs`` client processes each hold their
share of the agents, every one a WebSocket connection speaking the wire protocol through
protocol.session.AgentSession: enroll, then a results batch of ``--rows`` rows every
``--interval`` seconds (random phase), each row carrying its send time.  This process
tails the results file: a row's latency is the time its line appeared minus its send
time (both on this machine's clock).  Collector CPU and RSS come from psutil.
Goals (issue 9): 1,000 agents held with RSS < 300 MB, >= 20,000 rows/s, p99 < 200 ms.
Hold the bench lock while measuring: ``flock /tmp/zeek-bench.lock ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIG = """
[limits]
max_connections = 20000
max_rate = 1000
hello_timeout = 60
"""


# ---------------------------------------------------------------------------
# client processes
# ---------------------------------------------------------------------------


async def _agent(index: int, args: argparse.Namespace, stats: dict[str, int], stop_at: float) -> None:
    from websockets.asyncio.client import connect

    from protocol.messages import Action, Hello, Results
    from protocol.session import AgentSession

    hello = Hello(
        versions=(1,),
        host_id=f"bench-{index:05d}",
        hostname=f"bench-{index:05d}",
        addresses=("127.0.0.1",),
        platform="linux",
        agent_version="bench",
        tables=(),
        groups=("bench",),
        node_key=None,
        enroll_secret=args.secret,
        stream=f"bench-stream-{index}",
        acked_seq=0,
        subscriptions=(),
    )
    session = AgentSession(hello)
    await asyncio.sleep(random.uniform(0, args.ramp))
    for attempt in range(20):
        try:
            ws = await connect(args.url + "/agent", compression=None, max_size=None, open_timeout=60)
            break
        except OSError:
            stats["connect_retries"] += 1
            await asyncio.sleep(0.5 + attempt)
    else:
        stats["failed"] += 1
        return
    session.start()
    for frame in session.data_to_send():
        await ws.send(frame)
    while session.welcome is None:
        session.receive_frame(await ws.recv())
        session.events_received()
        if session.closed:
            stats["refused"] += 1
            return
    stats["connected"] += 1

    async def reader() -> None:
        try:
            async for frame in ws:
                session.receive_frame(frame)
                session.events_received()
                for out in session.data_to_send():
                    await ws.send(out)
        except Exception:
            pass

    read_task = asyncio.create_task(reader())
    payload = "x" * 40
    await asyncio.sleep(random.uniform(0, args.interval))
    next_send = time.monotonic()
    try:
        while time.time() < stop_at and not session.closed:
            if session.in_flight < 200:
                seq = session.next_seq
                now = time.time()
                rows = tuple((Action.ADDED, (seq * args.rows + k, now, payload)) for k in range(args.rows))
                session.send(Results(seq, None, "bench", ("id", "sent", "payload"), rows, seq, 0, now))
                for frame in session.data_to_send():
                    await ws.send(frame)
                stats["rows_sent"] += args.rows
                stats["batches_sent"] += 1
            else:
                stats["window_full"] += 1
            next_send += args.interval
            await asyncio.sleep(max(0.0, next_send - time.monotonic()))
        deadline = time.monotonic() + 30
        while session.in_flight and time.monotonic() < deadline and not session.closed:
            await asyncio.sleep(0.1)
        stats["rows_acked"] += (session.acked) * args.rows
    finally:
        read_task.cancel()
        await ws.close()


async def _client_main(args: argparse.Namespace) -> None:
    keys = ("connected", "failed", "refused", "connect_retries", "rows_sent", "batches_sent", "rows_acked")
    stats = dict.fromkeys((*keys, "window_full"), 0)
    stop_at = time.time() + args.duration
    await asyncio.gather(
        *(_agent(i, args, stats, stop_at) for i in range(args.first, args.first + args.count)), return_exceptions=True
    )
    print(json.dumps(stats), flush=True)


# ---------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------

_SENT = re.compile(rb'"sent":([0-9.e+]+)')


def _clients_cpu(clients: list[subprocess.Popen[str]]) -> float:
    import psutil

    total = 0.0
    for client in clients:
        try:
            total += sum(psutil.Process(client.pid).cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(args: argparse.Namespace) -> dict[str, object]:
    import psutil

    tmp = Path(tempfile.mkdtemp(prefix="bench-collector-"))
    (tmp / "c.toml").write_text(CONFIG)
    results = tmp / "results.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = open(tmp / "collectord.log", "w")  # noqa: SIM115 - the child's stderr
    profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
    collectord = subprocess.Popen(
        [
            sys.executable,
            *profile,
            "-m",
            "collector.daemon",
            "--config",
            str(tmp / "c.toml"),
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            str(tmp / "state"),
            "--results",
            str(results),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = ""
    for _ in range(600):
        found = re.search(r"listening on (ws://[^ ]+)/agent", (tmp / "collectord.log").read_text())
        if found:
            url = found.group(1)
            break
        time.sleep(0.05)
    if not url:
        raise SystemExit(f"collectord did not start:\n{(tmp / 'collectord.log').read_text()}")
    secret = (tmp / "state" / "enroll-secret").read_text().strip()
    proc = psutil.Process(collectord.pid)

    duration = args.warmup + args.seconds
    per = -(-args.agents // args.procs)
    clients = []
    for p in range(args.procs):
        first, count = p * per, min(per, args.agents - p * per)
        if count <= 0:
            break
        clients.append(
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--client",
                    "--url",
                    url,
                    "--secret",
                    secret,
                    "--first",
                    str(first),
                    "--count",
                    str(count),
                    "--rows",
                    str(args.rows),
                    "--interval",
                    str(args.interval),
                    "--ramp",
                    str(args.ramp),
                    "--duration",
                    str(duration),
                    "--client-nice",
                    str(args.client_nice),
                ],
                stdout=subprocess.PIPE,
                env=env,
                text=True,
            )
        )

    started = time.time()
    window_start, window_end = started + args.warmup, started + duration
    latencies: list[float] = []
    rows_in_window = 0
    rss_peak = 0
    cpu_start = cpu_end = None
    clients_start = clients_end = 0.0
    offset = 0
    buffer = b""
    next_sample = time.time()
    while any(c.poll() is None for c in clients) or time.time() < window_end + 5:
        now = time.time()
        if now >= next_sample:
            rss_peak = max(rss_peak, proc.memory_info().rss)
            if cpu_start is None and now >= window_start:
                cpu_start = (now, sum(proc.cpu_times()[:2]))
                clients_start = _clients_cpu(clients)
            if cpu_end is None and now >= window_end:
                cpu_end = (now, sum(proc.cpu_times()[:2]))
                clients_end = _clients_cpu(clients)
            next_sample = now + 1.0
        try:
            with open(results, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except FileNotFoundError:
            data = b""
        if data:
            offset += len(data)
            arrival = time.time()
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            if window_start <= arrival <= window_end:
                rows_in_window += len(lines)
                for line in lines:
                    found = _SENT.search(line)
                    if found:
                        latencies.append(arrival - float(found.group(1)))
        if all(c.poll() is not None for c in clients) and now > window_end + 5:
            break
        time.sleep(0.005)

    summaries = [json.loads(c.stdout.read().strip().splitlines()[-1]) for c in clients if c.stdout is not None]
    total = {k: sum(s[k] for s in summaries) for k in summaries[0]}
    drained = time.time()
    while time.time() < drained + 120:  # let the sink catch up with what was acknowledged
        with open(results, "rb") as handle:
            if sum(1 for _ in handle) >= total["rows_acked"]:
                break
        time.sleep(0.5)
    drain_seconds = time.time() - drained
    cpu_total = sum(proc.cpu_times()[:2])
    collectord.send_signal(signal.SIGTERM)
    collectord.wait(60)
    log.close()
    with open(results, "rb") as handle:
        sink_rows = sum(1 for _ in handle)
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    span = (cpu_end[0] - cpu_start[0]) if cpu_start and cpu_end else float("nan")
    cpu = (cpu_end[1] - cpu_start[1]) / span * 100 if cpu_start and cpu_end else float("nan")
    clients_cpu = (clients_end - clients_start) / span * 100 if cpu_start and cpu_end else float("nan")
    return {
        "agents": args.agents,
        "connected": total["connected"],
        "offered_rows_per_s": args.agents * args.rows / args.interval,
        "rows_per_s": rows_in_window / args.seconds,
        "collector_cpu_percent": cpu,
        "collector_rss_mb_peak": rss_peak / 1e6,
        "clients_cpu_percent": clients_cpu,
        "latency_p50_ms": percentile(latencies, 0.50) * 1000,
        "latency_p99_ms": percentile(latencies, 0.99) * 1000,
        "collector_cpu_us_per_row": cpu_total / max(1, sink_rows) * 1e6,
        "sink_drain_after_end_s": drain_seconds,
        "rows_sent": total["rows_sent"],
        "rows_acked": total["rows_acked"],
        "rows_in_sink": sink_rows,
        "window_full": total["window_full"],
        "failed": total["failed"] + total["refused"],
        "state_dir": str(tmp) if args.keep else "(removed; --keep keeps it)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--rows", type=int, default=20, help="rows per batch")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between an agent's batches")
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window")
    parser.add_argument("--warmup", type=float, default=20.0, help="enrollment and ramp-up before the window")
    parser.add_argument("--ramp", type=float, default=10.0, help="agents connect spread over this many seconds")
    parser.add_argument("--profile", metavar="FILE", help="run collectord under cProfile, stats to FILE")
    parser.add_argument("--keep", action="store_true", help="keep the state directory (registry, results file, log)")
    parser.add_argument("--client-nice", type=int, default=10, help="niceness of the client processes (10)")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--secret", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        os.nice(args.client_nice)  # the simulated agents stand for other machines: the collector goes first
        asyncio.run(_client_main(args))
        return
    result = run(args)
    for key, value in result.items():
        print(f"{key:>24}: {value:.1f}" if isinstance(value, float) else f"{key:>24}: {value}")
    print(
        f"goals: RSS < 300 MB: {'met' if result['collector_rss_mb_peak'] < 300 else 'MISSED'}; "  # type: ignore[operator]
        f">= 20,000 rows/s: {'met' if result['rows_per_s'] >= 20000 else 'MISSED'}; "  # type: ignore[operator]
        f"p99 < 200 ms: {'met' if result['latency_p99_ms'] < 200 else 'MISSED'}"  # type: ignore[operator]
    )


if __name__ == "__main__":
    main()
