"""Audit event capture: every exec captured, and what it costs the agent.

Run as root (owner mode; audit state is restored on every exit, Ctrl-C and SIGTERM included):

    PYTHONPATH=. .venv/bin/python bench/bench_audit.py [--seconds 10] [--spawners 4] [--rate 1600] [--no-full]

Run 1: ``--spawners`` processes posix_spawn /bin/true as fast as they can; the AuditSource
(owner mode) feeds an EventStore.  Reports spawned vs process_events rows of those
children, the kernel's lost counter, the agent's CPU (utime+stime from /proc/self/stat;
spawners are separate processes) and the exec rate.
Run 2: the same, throttled to ``--rate`` execs/s in total; reports CPU % of one core.
``audit_path_cpu_pct`` is the part of it the source measured itself (the event loop thread's
CPU time while it read and turned records into rows, the sink's store included); the rest
is the bench's own work (starting and reaping the spawners, the per-parent counts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from eventsources.audit.source import AuditSource
from tables.events import EventStore

TRUE = os.path.realpath("/bin/true")
CLK_TCK = os.sysconf("SC_CLK_TCK")

SPAWNER = """
import os, sys, time
seconds, rate = float(sys.argv[1]), float(sys.argv[2])
n, t0 = 0, time.monotonic()
end = t0 + seconds
while True:
    now = time.monotonic()
    if now >= end:
        break
    if rate > 0:
        due = t0 + n / rate
        if due > now:
            time.sleep(due - now)
    pid = os.posix_spawn("/bin/true", ["/bin/true"], {})
    os.waitpid(pid, 0)
    n += 1
print(n, flush=True)
"""


def cpu_seconds() -> float:
    """utime + stime of this process (all threads) from /proc/self/stat."""
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def run(seconds: float, spawners: int, rate: float) -> dict[str, float | int | str]:
    store = EventStore("process_events", max_events=10_000_000, expiry=0)
    per_parent: dict[int, int] = {}

    def sink(table: str, row: dict) -> None:
        store.add(row)
        if row["path"] == TRUE:
            parent = row["parent"]
            per_parent[parent] = per_parent.get(parent, 0) + 1

    source = AuditSource(sink)
    await source.start()
    try:
        st0 = source.poll_status_now()
        await asyncio.sleep(0.5)
        cpu0, t0, path0 = cpu_seconds(), time.monotonic(), getattr(source.status(), "cpu_seconds", 0.0)
        per = rate / spawners if rate else 0
        procs: list[asyncio.subprocess.Process] = []
        try:
            for _ in range(spawners):
                procs.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable, "-c", SPAWNER, str(seconds), str(per), stdout=asyncio.subprocess.PIPE
                    )
                )
            spawned = 0
            for p in procs:
                spawned += int((await p.communicate())[0])
        finally:
            for p in procs:
                if p.returncode is None:
                    p.kill()
        parents = {p.pid for p in procs}
        elapsed = time.monotonic() - t0

        def captured() -> int:
            return sum(per_parent.get(p, 0) for p in parents)

        drain_until = time.monotonic() + 10
        while captured() < spawned and time.monotonic() < drain_until:
            await asyncio.sleep(0.1)
        cpu = cpu_seconds() - cpu0
        wall = time.monotonic() - t0
        path_cpu = getattr(source.status(), "cpu_seconds", 0.0) - path0  # 0: a tree that does not measure it
        st1 = source.poll_status_now()
        status = source.status()
    finally:
        await source.stop()
    return {
        "mode": status.mode,
        "spawners": spawners,
        "target_rate": rate or "max",
        "spawned": spawned,
        "rows": captured(),
        "store_rows": store.stats().added,
        "exec_rate": round(spawned / elapsed),
        "kernel_lost": (st1.lost - st0.lost) if st0 and st1 else -1,
        "socket_overruns": status.extra["socket_overruns"],
        "incomplete_events": status.extra["incomplete_events"],
        "parse_errors": status.parse_errors,
        "records": status.extra["records"],
        "agent_cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "cpu_pct_one_core": round(100 * cpu / wall, 1),
        "audit_path_cpu_pct": round(100 * path_cpu / wall, 1),
        "batches": status.extra.get("batches"),
    }


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--spawners", type=int, default=4)
    ap.add_argument("--rate", type=float, default=1600.0, help="execs/s of the throttled run (0: skip it)")
    ap.add_argument("--no-full", action="store_true", help="skip the full-rate run")
    ap.add_argument("--json", action="store_true")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_audit: needs root (kernel audit control)", file=sys.stderr)
        return 2
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)  # cancel -> finally -> source.stop() restores audit
    results = [] if opts.no_full else [await run(opts.seconds, opts.spawners, 0)]
    if opts.rate:
        results.append(await run(opts.seconds, opts.spawners, opts.rate))
    for res in results:
        print(json.dumps(res) if opts.json else "  ".join(f"{k}={v}" for k, v in res.items()))
    return 0 if all(r["spawned"] == r["rows"] for r in results) else 1


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except asyncio.CancelledError:
        sys.exit(130)
