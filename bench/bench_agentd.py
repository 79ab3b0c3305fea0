"""agentd's idle cost (RSS, CPU) with osquery's example schedule, and the cost of a 100,000-row diff.

    PYTHONPATH=. python bench/bench_agentd.py [--duration 120] [--disable-events | --audit]

Starts a real agentd (bench/osquery.example.conf, state and logs in a temporary directory),
waits for READY=1 and a short warm-up, then samples /proc/<pid>/stat and /proc/<pid>/status
over ``--duration`` seconds.  Goals: RSS < 60 MB, CPU < 1 % of a core idle, diff < 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.diff import diff  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def forks_total() -> int:
    """Processes created since boot (/proc/stat), to show how idle the host really was."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("processes "):
                return int(line.split()[1])
    return 0


def bench_idle(duration: float, warmup: float, disable_events: bool, audit: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-agentd-") as tmp:
        text = (REPO / "bench" / "osquery.example.conf").read_text()
        config_path = Path(tmp) / "agentd.conf"
        if audit:  # the default event source: kernel audit (agentd restores the audit state on SIGTERM)
            text = text.replace('"disable_audit": true', '"disable_audit": false')
        if disable_events:
            text = re.sub(r'"options": \{', '"options": {\n    "disable_events": true,', text, count=1)
        config_path.write_text(text)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(f"{tmp}/notify.sock")
        notify.settimeout(60)
        env = {**os.environ, "PYTHONPATH": str(REPO), "NOTIFY_SOCKET": f"{tmp}/notify.sock"}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent.daemon",
                "--config",
                str(config_path),
                "--state-dir",
                f"{tmp}/state",
                "--log-dir",
                f"{tmp}/log",
            ],
            cwd=REPO,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            ready = notify.recv(4096).decode()
            time.sleep(warmup)
            cpu0, t0, forks0 = cpu_seconds(proc.pid), time.monotonic(), forks_total()
            rss_samples = []
            while time.monotonic() - t0 < duration:
                time.sleep(min(3.0, max(0.0, duration - (time.monotonic() - t0))))
                rss_samples.append(status_kb(proc.pid, "VmRSS"))
            cpu1, t1, forks1 = cpu_seconds(proc.pid), time.monotonic(), forks_total()
            hwm = status_kb(proc.pid, "VmHWM")
            proc.send_signal(signal.SIGTERM)
            stop0 = time.monotonic()
            _, _err = proc.communicate(timeout=15)
            stop_s = time.monotonic() - stop0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            notify.close()
    return {
        "ready": ready.replace("\n", "; "),
        "duration_s": round(t1 - t0, 1),
        "cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 3),
        "host_forks_per_s": round((forks1 - forks0) / (t1 - t0), 1),
        "rss_mb_last": round(rss_samples[-1] / 1024, 1),
        "rss_mb_max": round(max(rss_samples) / 1024, 1),
        "vmhwm_mb": round(hwm / 1024, 1),
        "sigterm_stop_s": round(stop_s, 2),
        "exit_status": proc.returncode,
    }


def bench_diff(rows: int = 100_000, changed: float = 0.01, repeat: int = 5) -> dict:
    rng = random.Random(1)
    previous = [
        {
            "pid": str(i),
            "name": f"proc{i % 977}",
            "path": f"/usr/bin/p{i % 977}",
            "cmdline": f"p{i} --flag {i * 7}",
            "uid": str(i % 1000),
            "gid": str(i % 1000),
            "parent": str(i // 3),
            "state": "S",
        }
        for i in range(rows)
    ]
    current = [dict(r) for r in previous]
    for i in rng.sample(range(rows), int(rows * changed)):
        current[i]["state"] = "R"
    timings = {}
    for label, cur in (("unchanged", [dict(r) for r in previous]), (f"{changed:.0%} changed", current)):
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            added, removed = diff(previous, cur)
            best = min(best, time.perf_counter() - start)
        timings[label] = {"best_s": round(best, 4), "added": len(added), "removed": len(removed)}
    return timings


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=120.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--disable-events", action="store_true", help="run agentd with disable_events")
    p.add_argument(
        "--audit",
        action="store_true",
        help="process_events from kernel audit (agentd's default) instead of the proc connector",
    )
    p.add_argument("--skip-idle", action="store_true")
    args = p.parse_args()
    out = {"cores": os.cpu_count(), "python": sys.version.split()[0]}
    if not args.skip_idle:
        out["idle"] = bench_idle(args.duration, args.warmup, args.disable_events, args.audit)
    out["diff_100k"] = bench_diff()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
