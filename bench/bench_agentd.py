"""agentd's cost: idle, under sustained exec load, with full event buffers; query speed over a full buffer.

    PYTHONPATH=. python bench/bench_agentd.py idle [--duration 120] [--disable-events | --audit]
    PYTHONPATH=. python bench/bench_agentd.py load [--rate 1600] [--duration 600] [--spawners 4]   # root
    PYTHONPATH=. python bench/bench_agentd.py full [--settle 150]                                   # root
    PYTHONPATH=. python bench/bench_agentd.py buffer [--rows 50000] [--repeat 5]
    PYTHONPATH=. python bench/bench_agentd.py diff

``idle``: a real agentd on bench/osquery.example.conf; RSS and CPU sampled over ``--duration``
(goals: RSS < 60 MB, CPU < 1 % of a core).  Without a mode name, ``idle`` runs (old command lines).

``load``: a real agentd on its embedded default config (kernel audit, events_max 50,000, the
process_events query every 60 s) while ``--spawners`` processes posix_spawn ``/bin/true <token>``
at ``--rate`` execs/s in total for ``--duration`` s.  RSS is sampled every second; a watchdog exit
(status 75) ends the run early.  When the load stops, the bench waits for the next scheduled
process_events run, then accounts every exec: captured (a results.log line of process_events with
the token) or counted (rows the process_events query missed because events_max pushed them out
first, the kernel's lost counter, events the audit source shed under the watchdog's CPU budget).
Goals: no watchdog exit, every exec captured or counted, peak RSS < 120 MB.  Hold the audit lock and
the bench lock (it owns audit).

``full``: a real agentd on its embedded default config; the process_events and socket_events
buffers are filled to events_max (50,000) with execs and UDP connect()s, then the host is left
quiet for ``--settle`` s (the scheduled queries run over the full buffers meanwhile); RSS is
sampled throughout.  Goal: RSS < 80 MB with every buffer full.  (hardware_events cannot be filled
here: no USB device to plug in a VM; ``buffer`` fills all three in-process.)

``buffer``: in-process, no kernel: the three event stores filled with ``--rows`` synthetic rows
shaped like audit's, then the default config's process_events query, ad hoc (Database.execute)
and scheduled (QueryRunner: SQL, diff, outbox, result log), also with the collector uplink's
queue attached (the run's typed rows queued in its commit transaction); and a differential
query over a ``--diff-rows`` (100,000) row table: first run, 1 % of rows changed, unchanged,
with the uplink queue.  Each measurement runs in a fresh subprocess so its RSS and peak RSS
(VmHWM) are its own.  A tree without agent/uplink (``--tree``-style exports run from their own
directory) reports the uplink measurements as absent.
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
import threading
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TICK = os.sysconf("SC_CLK_TCK")
EXIT_WATCHDOG = 75
PROCESS_EVENTS_QUERY = "SELECT pid, parent, path, cmdline, cwd, uid, euid, time FROM process_events;"


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def status_kb(pid: int | str, key: str) -> int:
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


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---------------------------------------------------------------------------
# A real agentd
# ---------------------------------------------------------------------------


class Agentd:
    """agentd in a subprocess (READY=1 awaited), sampled by a thread until it exits or stop()."""

    def __init__(self, tmp: str, config_text: str | None = None) -> None:
        self.tmp = tmp
        self.socket = f"{tmp}/state/agentd.sock"
        self.log_dir = f"{tmp}/log"
        args = [sys.executable, "-m", "agent.daemon", "--state-dir", f"{tmp}/state", "--log-dir", self.log_dir]
        if config_text is not None:
            Path(tmp, "agentd.conf").write_text(config_text)
            args += ["--config", f"{tmp}/agentd.conf"]
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(f"{tmp}/notify.sock")
        self.notify.settimeout(120)
        env = {**os.environ, "PYTHONPATH": str(REPO), "NOTIFY_SOCKET": f"{tmp}/notify.sock"}
        self.stderr = open(f"{tmp}/agentd.stderr", "w+")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, cwd=REPO, env=env, stderr=self.stderr, text=True)
        self.samples: list[tuple[float, int]] = []  # (monotonic, VmRSS kB)
        self.exited_at: float | None = None
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def wait_ready(self) -> str:
        while True:
            message = self.notify.recv(4096).decode()
            if "READY=1" in message:
                return message.replace("\n", "; ")

    def start_sampling(self, every: float = 1.0) -> None:
        def sample() -> None:
            while not self._stop.is_set():
                if self.proc.poll() is not None:
                    self.exited_at = time.monotonic()
                    return
                try:
                    self.samples.append((time.monotonic(), status_kb(self.proc.pid, "VmRSS")))
                except (OSError, KeyError):
                    pass
                self._stop.wait(every)

        self._sampler = threading.Thread(target=sample, daemon=True)
        self._sampler.start()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def vmhwm_kb(self) -> int:
        return status_kb(self.proc.pid, "VmHWM")

    def query(self, sql: str) -> list[dict]:
        from agent.control import remote_query

        columns, rows = remote_query(self.socket, sql, timeout=120)
        return [dict(zip(columns, r, strict=True)) for r in rows]

    def status(self) -> dict:
        from agent.control import remote_status

        return remote_status(self.socket, timeout=60).to_json()

    def stop(self) -> tuple[int, float]:
        """SIGTERM; (exit status, seconds to exit)."""
        self._stop.set()
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.notify.close()
        return self.proc.returncode, time.monotonic() - started

    def log_text(self) -> str:
        self.stderr.flush()
        self.stderr.seek(0)
        return self.stderr.read()

    def result_lines(self) -> list[dict]:
        """Every line of results.log and its rotations, oldest first."""

        def age(path: Path) -> int:  # results.log.N is older than results.log.N-1 and results.log
            suffix = path.name.rsplit(".", 1)[-1]
            return int(suffix) if suffix.isdigit() else 0

        files = sorted(Path(self.log_dir).glob("results.log*"), key=age, reverse=True)
        lines = []
        for path in files:
            with open(path, "rb") as f:
                lines.extend(json.loads(line) for line in f if line.strip())
        return lines

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def rss_summary(agent: Agentd, t0: float) -> dict:
    samples = [(t - t0, kb) for t, kb in agent.samples if t >= t0]
    if not samples:
        return {}
    per_minute: dict[int, int] = {}
    for t, kb in samples:
        minute = int(t // 60)
        per_minute[minute] = max(per_minute.get(minute, 0), kb)
    return {
        "rss_mb_max_sampled": round(max(kb for _, kb in samples) / 1024, 1),
        "rss_mb_last": round(samples[-1][1] / 1024, 1),
        "rss_mb_max_per_minute": [round(kb / 1024, 1) for _, kb in sorted(per_minute.items())],
    }


def default_config(overrides: list[str]) -> str | None:
    """The embedded default config with ``NAME=VALUE`` options changed; None: no change (no --config)."""
    if not overrides:
        return None
    from agent.daemon import DEFAULT_CONFIG

    config = json.loads(DEFAULT_CONFIG)
    for item in overrides:
        name, _, value = item.partition("=")
        config["options"][name] = json.loads(value) if value[:1].isdigit() or value in ("true", "false") else value
    return json.dumps(config, indent=2)


# ---------------------------------------------------------------------------
# idle
# ---------------------------------------------------------------------------


def bench_idle(duration: float, warmup: float, disable_events: bool, audit: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-agentd-") as tmp:
        text = (REPO / "bench" / "osquery.example.conf").read_text()
        if audit:  # the default event source: kernel audit (agentd restores the audit state on SIGTERM)
            text = text.replace('"disable_audit": true', '"disable_audit": false')
        if disable_events:
            text = re.sub(r'"options": \{', '"options": {\n    "disable_events": true,', text, count=1)
        agent = Agentd(tmp, text)
        try:
            ready = agent.wait_ready()
            time.sleep(warmup)
            pid = agent.proc.pid
            cpu0, t0, forks0 = cpu_seconds(pid), time.monotonic(), forks_total()
            rss_samples = []
            while time.monotonic() - t0 < duration:
                time.sleep(min(3.0, max(0.0, duration - (time.monotonic() - t0))))
                rss_samples.append(status_kb(pid, "VmRSS"))
            cpu1, t1, forks1 = cpu_seconds(pid), time.monotonic(), forks_total()
            hwm = agent.vmhwm_kb()
            status, stop_s = agent.stop()
        finally:
            agent.close()
    return {
        "ready": ready,
        "duration_s": round(t1 - t0, 1),
        "cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 3),
        "host_forks_per_s": round((forks1 - forks0) / (t1 - t0), 1),
        "rss_mb_last": round(rss_samples[-1] / 1024, 1),
        "rss_mb_max": round(max(rss_samples) / 1024, 1),
        "vmhwm_mb": round(hwm / 1024, 1),
        "sigterm_stop_s": round(stop_s, 2),
        "exit_status": status,
    }


# ---------------------------------------------------------------------------
# load: sustained execs on the default config
# ---------------------------------------------------------------------------

SPAWNER = """
import os, signal, sys, time
seconds, rate, token = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
limit = int(sys.argv[4]) if len(sys.argv) > 4 else None
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
argv = ["/bin/true", token]
n, t0 = 0, time.monotonic()
end = t0 + seconds
while not stop:
    now = time.monotonic()
    if now >= end or (limit is not None and n >= limit):
        break
    if rate > 0:
        due = t0 + n / rate
        if due > now:
            time.sleep(due - now)
    pid = os.posix_spawn("/bin/true", argv, {})
    os.waitpid(pid, 0)
    n += 1
print(n, flush=True)
"""


def spawn_load(spawners: int, seconds: float, rate: float, token: str, limit: int | None = None) -> list:
    per = rate / spawners if rate else 0.0
    extra = [str(-(-limit // spawners))] if limit else []
    return [
        subprocess.Popen(
            [sys.executable, "-c", SPAWNER, str(seconds), str(per), token, *extra], stdout=subprocess.PIPE, text=True
        )
        for _ in range(spawners)
    ]


def finish_load(procs: list) -> int:
    spawned = 0
    for p in procs:
        out, _ = p.communicate()
        spawned += int(out.strip() or 0)
    return spawned


def schedule_entry(agent: Agentd, name: str) -> dict:
    for entry in agent.status().get("schedule", []):
        if entry.get("name") == name:
            return entry
    return {}


def wait_for_run(agent: Agentd, name: str, after: float, timeout: float) -> bool:
    """Until the scheduled query ``name`` finished a run that started after unix time ``after``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and agent.alive():
        try:
            status = agent.status()
        except Exception:
            time.sleep(1)
            continue
        entry = next((e for e in status.get("schedule", []) if e.get("name") == name), {})
        if entry.get("last_executed", 0) > after + 1 and status["agent"].get("running") != name:
            return True
        time.sleep(1)
    return False


def event_counters(agent: Agentd) -> dict:
    status = agent.status()
    buffers = {b["name"]: b for b in status["events"]["buffers"]}
    sources = {s["name"]: s for s in status["events"]["sources"]}
    return {"buffers": buffers, "sources": sources, "agent": status["agent"]}


def missed_by(buffer: dict, consumer: str) -> int | None:
    extra = buffer.get("extra") or {}
    if isinstance(extra, str):  # agent_events_status's column (JSON text); the status reply has the object
        extra = json.loads(extra)
    missed = extra.get("missed")
    if missed is None:
        return None
    return int(missed.get(consumer, 0))


def bench_load(rate: float, duration: float, spawners: int, options: list[str]) -> dict:
    token = f"zbench-load-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="bench-agentd-") as tmp:
        agent = Agentd(tmp, default_config(options))
        try:
            ready = agent.wait_ready()
            start_unix = time.time()
            agent.start_sampling(1.0)
            t0 = time.monotonic()
            forks0, cpu0, loadavg0 = forks_total(), cpu_seconds(agent.proc.pid), loadavg()
            procs = spawn_load(spawners, duration, rate, token)
            while any(p.poll() is None for p in procs) and agent.alive():
                time.sleep(0.5)
            died_under_load = not agent.alive()
            if died_under_load:
                for p in procs:
                    p.terminate()
            spawned = finish_load(procs)
            load_s = time.monotonic() - t0
            forks1 = forks_total()
            end_unix = time.time()
            drained = False if died_under_load else wait_for_run(agent, "process_events", end_unix, 120)
            out: dict = {
                "ready": ready,
                "config": "embedded default" + (f" with {', '.join(options)}" if options else ""),
                "target_rate": rate,
                "spawners": spawners,
                "load_s": round(load_s, 1),
                "spawned": spawned,
                "exec_rate": round(spawned / load_s),
                "host_forks_per_s": round((forks1 - forks0) / load_s),
                "loadavg_start": loadavg0,
                "loadavg_end": loadavg(),
            }
            if agent.alive():
                counters = event_counters(agent)
                buffer = counters["buffers"]["process_events"]
                audit = counters["sources"].get("audit", {})
                out["cpu_percent_of_one_core"] = round(
                    100 * (cpu_seconds(agent.proc.pid) - cpu0) / (time.monotonic() - t0), 1
                )
                out["vmhwm_mb"] = round(agent.vmhwm_kb() / 1024, 1)
                out["final_run_seen"] = drained
                out["process_events_buffer"] = {
                    k: buffer.get(k) for k in ("added", "buffered", "dropped_overflow", "dropped_expired", "extra")
                }
                out["audit_source"] = {
                    k: audit.get(k) for k in ("mode", "events_seen", "kernel_lost", "parse_errors", "shed", "degraded")
                }
                audit_extra = audit.get("extra") or {}
                out["audit_source"]["cpu_budget"] = audit_extra.get("cpu_budget")  # CPU s/s the watchdog set (or None)
                out["audit_source"]["level"] = audit_extra.get("level")
                out["audit_source"]["cpu_s"] = audit_extra.get("cpu_s")
                status_out, _ = agent.stop()
            else:
                status_out = agent.proc.returncode
                out["died_after_s"] = round((agent.exited_at or time.monotonic()) - t0, 1)
            out.update(rss_summary(agent, t0))
            out["exit_status"] = status_out
            out["watchdog_exit"] = status_out == EXIT_WATCHDOG
            log_text = agent.log_text()
            watchdog_lines = [line for line in log_text.splitlines() if "watchdog" in line]
            out["watchdog_log"] = watchdog_lines[:2] + watchdog_lines[2:][-3:]  # the first two and the last three
            out["watchdog_log_lines"] = len(watchdog_lines)
            out["loss_log"] = [line for line in log_text.splitlines() if "events lost" in line][-3:]
            lines = agent.result_lines()
            captured = sum(
                1
                for line in lines
                if line.get("name") == "process_events" and token in line.get("columns", {}).get("cmdline", "")
            )
            out["captured"] = captured
            if not died_under_load and "process_events_buffer" in out:
                missed = missed_by(buffer, "process_events")
                kernel_lost = int(audit.get("kernel_lost") or 0)
                shed = int(audit.get("shed") or 0)  # dropped unread under the watchdog's CPU budget, counted
                out["counted"] = {"missed_by_query": missed, "kernel_lost": kernel_lost, "shed": shed}
                if missed is not None:
                    out["unaccounted"] = max(0, spawned - captured - missed - kernel_lost - shed)
                    out["every_exec_captured_or_counted"] = out["unaccounted"] == 0
            out["results_log_lines"] = len(lines)
            out["run_started_unix"] = int(start_unix)
        finally:
            agent.close()
    return out


# ---------------------------------------------------------------------------
# full: every event buffer at events_max on a quiet host
# ---------------------------------------------------------------------------

CONNECTOR = """
import socket, sys, time
n, rate = int(sys.argv[1]), 4000.0
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
t0 = time.monotonic()
for i in range(n):
    wait = t0 + i / rate - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    s.connect(("127.0.0.1", 9 + i % 1000))
print(n, flush=True)
"""


def bench_full(settle: float, options: list[str], events_max: int = 50_000) -> dict:
    token = f"zbench-full-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="bench-agentd-") as tmp:
        agent = Agentd(tmp, default_config(options))
        try:
            ready = agent.wait_ready()
            agent.start_sampling(1.0)
            t0 = time.monotonic()
            rss_ready = status_kb(agent.proc.pid, "VmRSS")
            spawned = connects = 0
            buffered: dict[str, int] = {}
            big_runs: dict[str, dict] = {}
            for _ in range(20):  # top up until both buffers hold events_max rows (the kernel may drop some)
                if not agent.alive():
                    return _died(agent, t0, ready, spawned, connects, buffered)
                buffered = {
                    name: event_counters(agent)["buffers"][name]["buffered"]
                    for name in ("process_events", "socket_events")
                }
                if min(buffered.values()) >= events_max:
                    break
                missing_execs = events_max - buffered["process_events"]
                if missing_execs > 0:
                    spawned += finish_load(spawn_load(2, 600, 4_000, token, limit=missing_execs + 500))
                missing_connects = events_max - buffered["socket_events"]
                if missing_connects > 0:
                    command = [sys.executable, "-c", CONNECTOR, str(missing_connects + 500)]
                    connector = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
                    connects += int(connector.communicate()[0].strip() or 0)
                time.sleep(3)  # the last records through the reassembler
            filled_s = time.monotonic() - t0
            filled_unix = time.time()
            t_quiet = time.monotonic()
            forks0 = forks_total()
            for name in ("process_events", "socket_events"):  # the scheduled runs over the full buffers
                if agent.alive() and wait_for_run(agent, name, filled_unix - 1, settle):
                    entry = schedule_entry(agent, name)
                    big_runs[name] = {k: entry.get(k) for k in ("last_rows", "last_wall_time_ms", "last_error")}
            time.sleep(max(0.0, settle - (time.monotonic() - t_quiet)))
            forks1 = forks_total()
            if not agent.alive():
                return _died(agent, t0, ready, spawned, connects, buffered)
            counters = event_counters(agent)
            audit = counters["sources"].get("audit", {})
            out = {
                "ready": ready,
                "config": "embedded default" + (f" with {', '.join(options)}" if options else ""),
                "rss_mb_at_ready": round(rss_ready / 1024, 1),
                "execs": spawned,
                "udp_connects": connects,
                "fill_s": round(filled_s, 1),
                "buffered_after_fill": buffered,
                "buffered_after_settle": {
                    name: counters["buffers"][name]["buffered"]
                    for name in ("process_events", "socket_events", "hardware_events")
                },
                "audit_source": {k: audit.get(k) for k in ("mode", "events_seen", "kernel_lost", "parse_errors")},
                "scheduled_runs_over_full_buffers": big_runs,
                "settle_s": settle,
                "host_forks_per_s_while_settling": round((forks1 - forks0) / settle, 1),
                "loadavg_end": loadavg(),
                "vmhwm_mb": round(agent.vmhwm_kb() / 1024, 1),
            }
            quiet = [(t, kb) for t, kb in agent.samples if t >= t_quiet]
            out["rss_mb_quiet_max"] = round(max(kb for _, kb in quiet) / 1024, 1) if quiet else None
            out["rss_mb_quiet_last"] = round(quiet[-1][1] / 1024, 1) if quiet else None
            out.update(rss_summary(agent, t0))
            status_out, _ = agent.stop()
            out["exit_status"] = status_out
            out["watchdog_exit"] = status_out == EXIT_WATCHDOG
        finally:
            agent.close()
    return out


def _died(agent: Agentd, t0: float, ready: str, spawned: int, connects: int, buffered: dict) -> dict:
    """What a full-buffer run shows when agentd exited before the end (its watchdog, usually)."""
    status = agent.proc.wait()
    out = {
        "ready": ready,
        "execs": spawned,
        "udp_connects": connects,
        "buffered_last_seen": buffered,
        "died_after_s": round((agent.exited_at or time.monotonic()) - t0, 1),
        "exit_status": status,
        "watchdog_exit": status == EXIT_WATCHDOG,
        "watchdog_log": [line for line in agent.log_text().splitlines() if "watchdog" in line][-3:],
        "loadavg_end": loadavg(),
    }
    out.update(rss_summary(agent, t0))
    agent.close()
    return out


# ---------------------------------------------------------------------------
# buffer: in-process query speed and memory over full event stores
# ---------------------------------------------------------------------------

_BINARIES = [
    "/usr/bin/bash", "/usr/bin/env", "/usr/bin/cat", "/usr/bin/readlink", "/usr/bin/mkdir", "/usr/bin/mv",
    "/usr/bin/git", "/usr/bin/rm", "/usr/bin/grep", "/usr/bin/sed", "/usr/bin/python3.11", "/usr/bin/ls",
    "/usr/lib/git-core/git-remote-https", "/usr/bin/dirname", "/usr/bin/basename", "/usr/bin/head",
    "/usr/bin/tail", "/usr/bin/sort", "/usr/bin/uname", "/usr/bin/id", "/usr/sbin/ip", "/usr/bin/systemctl",
]  # fmt: skip
_CWDS = ["/", "/root", "/tmp", "/home/dev/src/agent", "/var/lib/build/work", "/srv/app/releases/2026-11-24"]
_CGROUPS = ["/", "/user.slice/user-0.slice/session-3.scope", "/system.slice/cron.service", None]


def synthetic_rows(table: str, n: int, seed: int = 1) -> Iterator[dict]:
    """Rows shaped like the sources' (fresh strings per row, as decoding records makes them)."""
    rng = random.Random(seed)
    t0 = 1_790_000_000
    for i in range(n):
        if table == "process_events":
            path = rng.choice(_BINARIES).encode().decode()
            base = path.rsplit("/", 1)[1]
            args = " ".join(f"--opt{rng.randrange(9)}={rng.randrange(10**6)}" for _ in range(rng.randrange(1, 4)))
            cmdline = f"{base} {args} ./src/module_{rng.randrange(500)}.py"
            yield (
                {
                    "pid": 200_000 + i,
                    "path": path,
                    "auid": 4294967295,
                    "time": t0 + i // 1600,
                    "uptime": 5_000 + i // 1600,
                    **dict.fromkeys(("uid", "euid", "gid", "egid", "suid", "sgid", "fsuid", "fsgid"), 0),
                    "cmdline": cmdline,
                    "cmdline_size": len(cmdline),
                    "overflows": "",
                    "cwd": rng.choice(_CWDS).encode().decode(),
                    "parent": 150_000 + rng.randrange(2_000),
                    "syscall": "execve",
                    "status": 0,
                    "mode": "0100755",
                    "owner_uid": 0,
                    "owner_gid": 0,
                    "btime": 0,
                    "cgroup_path": (c.encode().decode() if (c := rng.choice(_CGROUPS)) else None),
                    "container_id": None,
                    "atime": t0 - rng.randrange(10**6),
                    "mtime": t0 - rng.randrange(10**8),
                    "ctime": t0 - rng.randrange(10**8),
                }
            )
        elif table == "socket_events":
            yield (
                {
                    "pid": 200_000 + i // 7,
                    "path": rng.choice(_BINARIES).encode().decode(),
                    "auid": 4294967295,
                    "time": t0 + i // 1600,
                    "uptime": 5_000 + i // 1600,
                    "action": "connect",
                    "fd": str(3 + rng.randrange(20)),
                    "family": 2,
                    "protocol": 0,
                    "local_address": None,
                    "remote_address": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
                    "local_port": None,
                    "remote_port": rng.choice((53, 80, 443, 8080, 5432)),
                    "socket": None,
                    "success": 1,
                    "status": "succeeded",
                    "cgroup_path": b"/system.slice/app.service".decode(),
                    "container_id": None,
                }
            )
        else:
            yield (
                {
                    "action": rng.choice(("add", "remove")),
                    "path": f"/dev/bus/usb/001/{rng.randrange(1, 128):03d}",
                    "type": "usb_device",
                    "driver": "usb",
                    "vendor": b"Example Corp".decode(),
                    "vendor_id": "1d6b",
                    "model": b"Flash Drive".decode(),
                    "model_id": f"{rng.randrange(65536):04x}",
                    "serial": f"SN{rng.randrange(10**9)}",
                    "revision": "0100",
                    "time": t0 + i,
                }
            )


_BUFFER_CHILD = """
import gc, json, os, sys, tempfile, time
sys.path.insert(0, {repo!r})
from bench.bench_agentd import synthetic_rows, status_kb, PROCESS_EVENTS_QUERY
from tables.events import EVENT_STORES, EventStore
from tables.registry import all_specs
from tables.sqlite import Database
rows_n, what, repeat = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
diff_rows = int(sys.argv[4])


def uplink_queue(state, runner):  # the collector uplink's queue as the runner's hook (None: a tree without it)
    if not os.path.isdir(os.path.join({repo!r}, "agent", "uplink")):
        return None
    from agent.uplink.queue import UplinkQueue
    queue = UplinkQueue(state, max_rows=10**9, max_bytes=1 << 40)
    runner.uplink = queue.enqueue
    return queue


if what in ("diff", "diff_uplink"):
    from agent.config import ScheduledQuery
    from agent.options import Options
    from agent.results import ResultWriter
    from agent.runner import QueryRunner
    from agent.state import StateDB
    from tables.spec import Column, TableSpec
    version = [0]

    def generate(context):  # rows made as they are read, as a /proc table does: the table holds none
        changed = version[0]
        for i in range(diff_rows):
            state = "R" if changed and i % 100 == 7 else "S"
            yield {{"pid": i, "name": f"proc{{i % 977}}", "path": f"/usr/bin/p{{i % 977}}",
                    "cmdline": f"p{{i}} --flag {{i * 7}}", "uid": i % 1000, "parent": i // 3, "state": state,
                    "resident_size": 4096.0 * (i % 500)}}

    spec = TableSpec("bench_processes", "Synthetic processes.", tuple(Column(c, t) for c, t in (
        ("pid", "BIGINT"), ("name", "TEXT"), ("path", "TEXT"), ("cmdline", "TEXT"), ("uid", "BIGINT"),
        ("parent", "BIGINT"), ("state", "TEXT"), ("resident_size", "DOUBLE"))), generate)
    db = Database([spec], time_limit=0)
    gc.collect()
    out = {{"rss_before_mb": round(status_kb("self", "VmRSS") / 1024, 1)}}
    with tempfile.TemporaryDirectory() as tmp:
        state = StateDB(os.path.join(tmp, "state.db"))
        writer = ResultWriter(os.path.join(tmp, "log"), max_bytes=1 << 40)
        runner = QueryRunner(db, state, host_identifier="bench-host", options=Options(schedule_timeout=0))
        queue = uplink_queue(state, runner) if what == "diff_uplink" else None
        if what == "diff_uplink" and queue is None:
            print(json.dumps(None))
            sys.exit(0)
        q = ScheduledQuery(name="bench_processes", query="SELECT * FROM bench_processes", interval=60)
        for label, v in (("first_s", 0), ("changed_1pc_s", 1), ("unchanged_s", 1)):
            version[0] = v
            t0 = time.perf_counter()
            outcome = runner.run(q, 1_790_000_100.0 + v, writer)
            out[label] = round(time.perf_counter() - t0, 3)
            assert outcome.error is None, outcome.error
            out[label.replace("_s", "_added_removed")] = [outcome.added, outcome.removed]
        out["log_bytes"] = os.path.getsize(writer.results.path)
        if queue is not None:
            out["uplink_rows"] = queue.stats().queued_rows
    out["rss_mb"] = round(status_kb("self", "VmRSS") / 1024, 1)
    out["vmhwm_mb"] = round(status_kb("self", "VmHWM") / 1024, 1)
    print(json.dumps(out))
    sys.exit(0)

tables = ("process_events", "socket_events", "hardware_events") if what == "fill3" else ("process_events",)
gc.collect()
rss_before = status_kb("self", "VmRSS")
stores = {{t: EventStore(t, max_events=rows_n, expiry=0, clock=lambda: 1_790_000_000.0) for t in tables}}
add_s = 0.0
for i, t in enumerate(tables):
    add = stores[t].add
    for row in synthetic_rows(t, rows_n, seed=i + 1):
        t0 = time.perf_counter()
        add(row)
        add_s += time.perf_counter() - t0
gc.collect()
out = {{"add_us_per_row": round(1e6 * add_s / (rows_n * len(tables)), 2),
       "buffer_mb": round((status_kb("self", "VmRSS") - rss_before) / 1024, 1)}}
db = Database(all_specs(), services={{EVENT_STORES: stores}}, time_limit=0)
if what == "adhoc":
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = len(db.execute(PROCESS_EVENTS_QUERY).rows)
        times.append(time.perf_counter() - t0)
    out.update(rows=n, adhoc_s=round(sorted(times)[len(times) // 2], 4), adhoc_min_s=round(min(times), 4))
    counts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        db.execute("SELECT count(*) FROM process_events")
        counts.append(time.perf_counter() - t0)
    out["count_min_s"] = round(min(counts), 4)
elif what in ("scheduled", "scheduled_uplink"):
    from agent.config import ScheduledQuery
    from agent.options import Options
    from agent.results import ResultWriter
    from agent.runner import QueryRunner
    from agent.state import StateDB
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        state = StateDB(os.path.join(tmp, "state.db"))
        writer = ResultWriter(os.path.join(tmp, "log"), max_bytes=1 << 40)
        runner = QueryRunner(db, state, host_identifier="bench-host", options=Options(schedule_timeout=0))
        queue = uplink_queue(state, runner) if what == "scheduled_uplink" else None
        if what == "scheduled_uplink" and queue is None:
            print(json.dumps(None))
            sys.exit(0)
        for i in range(repeat):
            q = ScheduledQuery(name=f"process_events_{{i}}", query=PROCESS_EVENTS_QUERY, interval=60)
            t0 = time.perf_counter()
            outcome = runner.run(q, 1_790_000_100.0 + i, writer)
            times.append(time.perf_counter() - t0)
            assert outcome.error is None, outcome.error
        out["log_bytes"] = os.path.getsize(writer.results.path)
        if queue is not None:
            out["uplink_rows"] = queue.stats().queued_rows
    out.update(rows=outcome.rows, scheduled_s=round(sorted(times)[len(times) // 2], 4))
    out["scheduled_min_s"] = round(min(times), 4)
out["rss_mb"] = round(status_kb("self", "VmRSS") / 1024, 1)
out["vmhwm_mb"] = round(status_kb("self", "VmHWM") / 1024, 1)
print(json.dumps(out))
"""


def bench_buffer(rows: int, repeat: int, diff_rows: int = 100_000) -> dict:
    def child(what: str) -> dict:
        proc = subprocess.run(
            [sys.executable, "-c", _BUFFER_CHILD.format(repo=str(REPO)), str(rows), what, str(repeat), str(diff_rows)],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"buffer bench child ({what}) failed:\n{proc.stderr}")
        return json.loads(proc.stdout)

    return {
        "rows_per_store": rows,
        "three_stores_full": child("fill3"),
        "adhoc_query": child("adhoc"),
        "scheduled_run": child("scheduled"),
        "scheduled_run_with_uplink": child("scheduled_uplink"),
        "differential_run": child("diff"),
        "differential_run_with_uplink": child("diff_uplink"),
        "loadavg": loadavg(),
    }


# ---------------------------------------------------------------------------
# diff
# ---------------------------------------------------------------------------


def bench_diff(rows: int = 100_000, changed: float = 0.01, repeat: int = 5) -> dict:
    from agent.diff import diff

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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        argv.insert(0, "idle")  # the command lines of earlier figures
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="mode", required=True)
    idle = sub.add_parser("idle", help="a real agentd idle on osquery.example.conf")
    idle.add_argument("--duration", type=float, default=120.0)
    idle.add_argument("--warmup", type=float, default=5.0)
    idle.add_argument("--disable-events", action="store_true", help="run agentd with disable_events")
    idle.add_argument("--audit", action="store_true", help="process_events from kernel audit, not the proc connector")
    idle.add_argument("--skip-idle", action="store_true", help="only the diff figures")
    load = sub.add_parser("load", help="sustained execs on the default config (root)")
    load.add_argument("--rate", type=float, default=1600.0, help="execs/s in total")
    load.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    load.add_argument("--spawners", type=int, default=4)
    load.add_argument("--option", action="append", default=[], metavar="NAME=VALUE", help="change a default option")
    full = sub.add_parser("full", help="every event buffer at events_max on a quiet host (root)")
    full.add_argument("--settle", type=float, default=150.0, help="quiet seconds after filling")
    full.add_argument("--option", action="append", default=[], metavar="NAME=VALUE", help="change a default option")
    buf = sub.add_parser("buffer", help="in-process query speed and memory over full event stores")
    buf.add_argument("--rows", type=int, default=50_000)
    buf.add_argument("--repeat", type=int, default=5)
    buf.add_argument("--diff-rows", type=int, default=100_000, help="rows of the differential query's table")
    sub.add_parser("diff", help="agent.diff.diff on 100,000 rows")
    args = p.parse_args(argv)
    out: dict = {"mode": args.mode, "cores": os.cpu_count(), "python": sys.version.split()[0], "loadavg": loadavg()}
    if args.mode in ("load", "full") and os.geteuid() != 0:
        print(f"bench_agentd {args.mode}: needs root (agentd owns kernel audit)", file=sys.stderr)
        return 2
    if args.mode == "idle":
        if not args.skip_idle:
            out["idle"] = bench_idle(args.duration, args.warmup, args.disable_events, args.audit)
        out["diff_100k"] = bench_diff()
    elif args.mode == "load":
        out["load"] = bench_load(args.rate, args.duration, args.spawners, args.option)
    elif args.mode == "full":
        out["full"] = bench_full(args.settle, args.option)
    elif args.mode == "buffer":
        out["buffer"] = bench_buffer(args.rows, args.repeat, args.diff_rows)
    else:
        out["diff_100k"] = bench_diff()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
