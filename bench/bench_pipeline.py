"""The pipeline to Zeek: exec-to-event latency at the Zeek endpoint, and collectord's rows/s into Broker JSON.

    flock /tmp/zeek-agent-audit-tests.lock flock /tmp/zeek-bench.lock \\
        env PYTHONPATH=. .venv/bin/python bench/bench_pipeline.py [--rate 200] [--seconds 30] [--zeek [PATH]]

1. Latency: a real agentd (kernel audit, owner mode: run as root, holding the audit tests' lock),
   a real collectord sending to a Zeek endpoint (the strict double of tests/zeek_double.py, or
   with ``--zeek`` the real Zeek running the package), and a subscription from that endpoint to
   ``process_events`` rows of the bench's processes. This process execs ``/bin/true
   bench-pipeline-<run>-<i>`` ``--rate`` times a second (posix_spawn, paced on an absolute
   schedule); a row's latency is when its event was accepted at the endpoint (the double's
   clock; in Zeek, ``current_time()`` in the event handler) minus when the exec was issued, on
   this machine's clock.
2. Throughput: collectord's Zeek sink turning stored result batches (process_events' and
   socket_events' columns, 500 rows each) into Broker JSON frames, on one core (this process
   pinned to one CPU): ZeekSink's encoding and LinkCore's framing, as collectord runs them;
   ``*_broker_padded``: the same with every frame padded to 2,048 bytes, as collectord sends
   to Broker's endpoint (Zeek 5.0-7.1).

Goals (issue 10): p99 < 500 ms at 200 execs/s, >= 20,000 rows/s into Broker JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EVENT = "osquery::bench_exec"
EVENT_TYPE = "event(resultInfo:osquery::ResultInfo, pid:int, cmdline:string)"
SQL = (
    "SELECT pid, cmdline FROM process_events WHERE cmdline LIKE 'bench-pipeline-%' OR cmdline LIKE '% bench-pipeline-%'"
)

ZEEK_SCRIPT = f"""
@load osquery
redef exit_only_after_terminate = T;
redef osquery::websocket_port = %PORT%/tcp;
module osquery;
export {{ global bench_exec: event(resultInfo: osquery::ResultInfo, pid: int, cmdline: string); }}
event osquery::bench_exec(resultInfo: osquery::ResultInfo, pid: int, cmdline: string)
  {{ print fmt("%.6f %s", current_time(), cmdline); }}
event zeek_init()
  {{ osquery::subscribe([$ev=osquery::bench_exec, $query="{SQL}", $inter=1]); }}
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---------------------------------------------------------------------------
# 1. exec -> event at the Zeek endpoint
# ---------------------------------------------------------------------------


class Endpoint:
    """The double, or the real Zeek with the package and the bench's subscription."""

    def __init__(self, workdir: Path, zeek: str | None) -> None:
        self.workdir = workdir
        self.zeek = zeek
        self.thread: Any = None
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        if self.zeek is None:
            from tests.zeek_double import DoubleThread, ScriptRequest, request_record

            self.thread = DoubleThread()
            self.thread.decls.declare_event(EVENT, EVENT_TYPE)
            record = request_record(self.thread.decls, EVENT, SQL, "ADD", 1)
            self.thread.start(requests=[ScriptRequest("osquery::subscribe_v1", (record,))])
            self.url = self.thread.url
            return
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        (self.workdir / "bench.zeek").write_text(ZEEK_SCRIPT.replace("%PORT%", str(port)))
        zeekpath = subprocess.run(
            [str(Path(self.zeek).parent / "zeek-config"), "--zeekpath"], capture_output=True, text=True, check=True
        ).stdout.strip()
        env = dict(os.environ, ZEEKPATH=f"{ROOT / 'zeek' / 'scripts'}:{zeekpath}")
        self.process = subprocess.Popen(
            [self.zeek, "-b", "bench.zeek"],
            cwd=self.workdir,
            env=env,
            stdout=open(self.workdir / "zeek.out", "w"),  # noqa: SIM115
            stderr=open(self.workdir / "zeek.err", "w"),  # noqa: SIM115
        )
        self.url = f"ws://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while "listening for collectord" not in self._text("osquery.log"):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"Zeek did not start: {self._text('zeek.err')}")
            time.sleep(0.1)

    def _text(self, name: str) -> str:
        path = self.workdir / name
        return path.read_text() if path.exists() else ""

    def arrivals(self) -> dict[str, float]:
        """cmdline -> when its event reached the endpoint (the double: while running)."""
        if self.thread is not None:
            double = self.thread.double
            pairs = self.thread.call(lambda: list(zip(double.delivered, double.arrived, strict=True)))
            return {e.args[2]: t for e, t in pairs if e.name == EVENT}
        out = {}
        for line in self._text("zeek.out").splitlines():
            when, _, cmdline = line.partition(" ")
            out[cmdline] = float(when)
        return out

    def stop(self) -> None:
        if self.thread is not None and not self.thread.loop.is_closed():
            self.thread.close()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("NOTIFY_SOCKET", None)
    return env


def _wait_log(path: Path, text: str, process: subprocess.Popen[Any], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        if process.poll() is not None:
            raise RuntimeError(f"{path.name}: the process exited:\n{content[-3000:]}")
        time.sleep(0.1)
    raise RuntimeError(f"{path.name}: no {text!r} within {timeout} s")


def _zeek_idle(url: str, token_file: Path) -> bool:
    """collectord's link to Zeek has delivered everything (nothing unacknowledged or waiting)."""
    import asyncio

    from protocol import operator as op
    from tests._collector import Operator

    async def status() -> dict[str, int]:
        async with Operator(url, token_file.read_text().strip()) as operator:
            (reply,) = await operator.request(op.GetStatus(operator.session.next_req()))
            (zeek,) = [c for c in reply.components if c.kind == "zeek"]
            return {c.name: c.value for c in zeek.counters}

    counters = asyncio.run(status())
    return counters["unacknowledged"] == 0 and counters["buffered"] == 0


def latency(args: argparse.Namespace) -> dict[str, Any]:
    import re

    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    endpoint = Endpoint(work, args.zeek)
    procs: list[subprocess.Popen[Any]] = []
    try:
        endpoint.start()
        (work / "c").mkdir()
        collectord_log = work / "c" / "collectord.log"
        (work / "c" / "collectord.toml").write_text("")
        collectord = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "collector.daemon",
                "--config",
                str(work / "c" / "collectord.toml"),
                "--listen",
                "127.0.0.1:0",
                "--state-dir",
                str(work / "c" / "state"),
                "--zeek",
                endpoint.url,
            ],
            stdout=open(collectord_log, "w"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            env=_env(),
        )
        procs.append(collectord)
        text = _wait_log(collectord_log, "listening on", collectord)
        url = re.search(r"listening on (ws://[^ ]+?)/agent", text).group(1)  # type: ignore[union-attr]
        _wait_log(collectord_log, "synced with zeek_", collectord)
        (work / "a").mkdir()
        config = {
            "options": {"schedule_splay_percent": 0, "watchdog_level": -1, "events_max": 200000},
            "collector": {"urls": [url], "enroll_secret_file": str(work / "c" / "state" / "enroll-secret")},
        }
        (work / "a" / "agentd.conf").write_text(json.dumps(config))
        agentd_log = work / "a" / "agentd.log"
        agentd = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent.daemon",
                "--config",
                str(work / "a" / "agentd.conf"),
                "--state-dir",
                str(work / "a" / "state"),
                "--log-dir",
                str(work / "a" / "log"),
                "--socket",
                str(work / "a" / "agentd.sock"),
            ],
            stdout=open(agentd_log, "w"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            env=_env(),
        )
        procs.append(agentd)
        agent_text = _wait_log(agentd_log, "ready:", agentd)
        source = re.search(r"process_events from (\S+)", agent_text)
        _wait_log(agentd_log, "collector subscription", agentd)
        time.sleep(2.0)  # the subscription's first (empty) run

        run = uuid.uuid4().hex[:8]
        issued: dict[str, float] = {}
        true = shutil.which("true") or "/bin/true"
        stop_reaper = threading.Event()

        def reap() -> None:
            while not stop_reaper.is_set() or issued_count[0] > reaped[0]:
                try:
                    pid, _ = os.waitpid(-1, 0)
                    if pid:
                        reaped[0] += 1
                except ChildProcessError:
                    time.sleep(0.01)

        issued_count, reaped = [0], [0]
        total = int(args.rate * args.seconds)
        reaper = threading.Thread(target=reap, daemon=True)
        start = time.monotonic() + 0.5
        reaper.start()
        began = time.time() + 0.5
        for i in range(total):
            due = start + i / args.rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            marker = f"bench-pipeline-{run}-{i}"
            issued[f"{true} {marker}"] = time.time()
            os.posix_spawn(true, [true, marker], os.environ)
            issued_count[0] += 1
        spawn_seconds = time.time() - began
        deadline = time.monotonic() + 60
        arrived: dict[str, float] = {}
        while time.monotonic() < deadline:
            if endpoint.thread is None:  # the real Zeek: settled once collectord has every row acknowledged
                time.sleep(2.0)
                if _zeek_idle(url, work / "c" / "state" / "operator-token"):
                    break
                continue
            arrived = {k: v for k, v in endpoint.arrivals().items() if k in issued}
            if len(arrived) == len(issued):
                break
            time.sleep(0.5)
        stop_reaper.set()
        for process in reversed(procs):
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        if endpoint.thread is None:  # Zeek prints its output at exit
            endpoint.stop()
            arrived = {k: v for k, v in endpoint.arrivals().items() if k in issued}
        lat = [(arrived[k] - issued[k]) * 1000 for k in arrived]
        return {
            "execs": total,
            "rate_achieved": round(total / spawn_seconds, 1),
            "arrived": len(arrived),
            "process_events_source": source.group(1) if source else "?",
            "p50_ms": round(statistics.median(lat), 1) if lat else None,
            "p99_ms": round(percentile(lat, 0.99), 1) if lat else None,
            "max_ms": round(max(lat), 1) if lat else None,
            "endpoint": "real Zeek" if args.zeek else "the double",
        }
    finally:
        for process in procs:
            if process.poll() is None:
                process.kill()
                process.wait()
        endpoint.stop()
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------
# 2. rows/s into Broker JSON on one core
# ---------------------------------------------------------------------------


def throughput(rows_per_batch: int = 500, seconds: float = 5.0) -> dict[str, Any]:
    from types import SimpleNamespace

    from collector.config import ZeekConfig
    from collector.model import ResultBatch
    from collector.zeek import brokerjson as bj
    from collector.zeek.sink import ZeekSink
    from protocol.messages import Action
    from tests.zeek_double import Declarations, event_type

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    decls = Declarations()
    decls.add_package()
    cases = {
        "process_events": (
            "osquery::table_process_events",
            ("pid", "path", "cmdline", "cwd", "uid", "gid", "time", "parent"),
            lambda i: (
                4000 + i,
                "/usr/bin/curl",
                f"curl -s https://example.org/{i}",
                "/home/u",
                1000,
                1000,
                1714564800 + i,
                1,
            ),
        ),
        "socket_events": (
            "osquery::table_socket_events",
            (
                "action",
                "pid",
                "fd",
                "path",
                "family",
                "protocol",
                "local_address",
                "remote_address",
                "local_port",
                "remote_port",
                "time",
                "success",
            ),
            lambda i: ("connect", 4000 + i, "3", "/usr/bin/curl", 2, 6, "", "93.184.216.34", 0, 443, 1714564800 + i, 1),
        ),
    }
    from collector.zeek.link import BROKER_MIN_FRAME

    out: dict[str, Any] = {}
    for (name, (ev, columns, make)), pad in [(c, pad) for pad in (0, BROKER_MIN_FRAME) for c in cases.items()]:
        if pad:
            name += "_broker_padded"  # to Broker's endpoint (Zeek 5.0-7.1) every frame is padded
        from collector.zeek.protocol import UpdateType
        from collector.zeek.requests import Route

        route = Route(ev, event_type(decls, ev), UpdateType.ADD, "").to_json()
        sink = ZeekSink(
            ZeekConfig(url="ws://127.0.0.1:1/v1/messages/json", name="bench"), SimpleNamespace(collector_id="c")
        )  # type: ignore[arg-type]
        rows = tuple((Action.ADDED, make(i)) for i in range(rows_per_batch))
        topic = "/osquery/zeek/"
        done = 0
        position = 0
        started = time.process_time()
        while time.process_time() - started < seconds:
            position += 1
            item = ResultBatch(
                position, "host-1", "web1", position, "q", "s", "x", "zeek:bench", route, columns, rows, 1, 1, 0.0, 0.0
            )
            for batch in sink._result_batches(item):
                for event in batch.events:
                    frame = bj.data_message(topic, event)
                    if pad and len(frame) < pad:
                        frame = frame.ljust(pad)
            done += rows_per_batch
        elapsed = time.process_time() - started
        out[name] = round(done / elapsed)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=200.0, help="execs per second (200)")
    p.add_argument("--seconds", type=float, default=30.0, help="how long to exec (30)")
    p.add_argument("--zeek", nargs="?", const="auto", help="the real Zeek (PATH, default: zeek on PATH or $ZEEK)")
    p.add_argument("--skip-latency", action="store_true", help="only the throughput part (no root, no audit)")
    args = p.parse_args()
    if args.zeek == "auto":
        args.zeek = os.environ.get("ZEEK") or shutil.which("zeek")
        if not args.zeek:
            p.error("--zeek: no Zeek on PATH or in $ZEEK")
    load = os.getloadavg()[0]
    print(f"load average before: {load:.2f}", flush=True)
    print("rows/s into Broker JSON, one core:", json.dumps(throughput()), flush=True)
    if not args.skip_latency:
        if os.geteuid() != 0:
            p.error("the latency part needs root (agentd takes kernel audit); or --skip-latency")
        print("exec -> event at the Zeek endpoint:", json.dumps(latency(args)), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
