"""Audit log replay throughput (``agent-cli watch ... --audit-log``), and 10 MB lines of hostile shapes.

    PYTHONPATH=. python bench/bench_replay.py [--events 100000] [--runs 3] [--log FILE]

Run 1: a generated auditd log (or ``--log FILE``, e.g. a real audit.log) replayed through
eventsources.audit.logfile.replay, as the CLI reads it (LogInput over the file); reports
rows/s, lines/s and MB/s (median of ``--runs``).  The generated log mixes what auditd writes
on a busy host: execs (SYSCALL, EXECVE with quoted and hex arguments, CWD, two PATH, PROCTITLE)
interleaved two at a time, connect/bind calls with SOCKADDR, a long argument split over
aN[i] chunks, and records of other types (USER_*, CRED_*) between them.
Run 2: one 10 MB line of each shape the parser must read in linear time (a quoted value with
many spaces, many stray quotes, one long hex value, ...): parse + fields + argv, seconds each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from eventsources.audit.logfile import LogInput, ReplayStats, replay
from eventsources.audit.records import execve_args, parse_line

IDS = "auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000"


def _hex(text: str) -> str:
    return text.encode().hex().upper()


def exec_records(serial: int, i: int) -> list[str]:
    stamp = f"1700000000.{serial % 1000:03d}:{serial}"
    argv = ["/usr/bin/python3", "-m", "pip", "install", f"pkg-{i}", "--target", f"/srv/app dir/{i}"]
    args = " ".join(f'a{n}="{a}"' if " " not in a else f"a{n}={_hex(a)}" for n, a in enumerate(argv))
    return [
        f"type=SYSCALL msg=audit({stamp}): arch=c000003e syscall=59 success=yes exit=0 a0=55d0a a1=55d1b "
        f'a2=55d2c a3=0 items=2 ppid={1000 + i % 50} pid={2000 + i} {IDS} tty=pts0 ses=1 comm="python3" '
        f'exe="/usr/bin/python3.11" subj=unconfined key="exec"',
        f"type=EXECVE msg=audit({stamp}): argc={len(argv)} {args}",
        f"type=CWD msg=audit({stamp}): cwd={_hex('/home/user/my project')}",
        f'type=PATH msg=audit({stamp}): item=0 name="/usr/bin/python3" inode=1234 dev=fd:01 mode=0100755 ouid=0 '
        "ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0",
        f'type=PATH msg=audit({stamp}): item=1 name="/lib64/ld-linux-x86-64.so.2" inode=99 dev=fd:01 '
        "mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0",
        f"type=PROCTITLE msg=audit({stamp}): proctitle={_hex(' '.join(argv[:4]))}",
    ]


def socket_records(serial: int, i: int) -> list[str]:
    stamp = f"1700000000.{serial % 1000:03d}:{serial}"
    nr, saddr = (42, "0200005DC0A800010000000000000000") if i % 2 else (49, "0A001F90" + "00" * 20 + "00000000")
    return [
        f"type=SYSCALL msg=audit({stamp}): arch=c000003e syscall={nr} success=yes exit=0 a0=3 a1=7ffd a2=10 a3=0 "
        f'items=0 ppid=1 pid={3000 + i} {IDS} tty=(none) ses=1 comm="curl" exe="/usr/bin/curl" key="net"',
        f"type=SOCKADDR msg=audit({stamp}): saddr={saddr}",
        f"type=PROCTITLE msg=audit({stamp}): proctitle=6375726C",
    ]


def long_arg_records(serial: int) -> list[str]:
    stamp = f"1700000000.{serial % 1000:03d}:{serial}"
    arg = _hex("x" * 6000 + "\n")
    return [
        f"type=SYSCALL msg=audit({stamp}): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=0 "
        f'items=1 ppid=1 pid=9 {IDS} tty=(none) ses=1 comm="sh" exe="/usr/bin/dash" key=(null)',
        f'type=EXECVE msg=audit({stamp}): argc=3 a0="sh" a1="-c" a2_len={len(arg)} a2[0]={arg[:7000]}',
        f"type=EXECVE msg=audit({stamp}): a2[1]={arg[7000:]}",
        f'type=CWD msg=audit({stamp}): cwd="/"',
        f"type=PROCTITLE msg=audit({stamp}): proctitle=7368002D63",
    ]


def other_records(serial: int) -> list[str]:
    stamp = f"1700000000.{serial % 1000:03d}:{serial}"
    return [
        f"type=USER_START msg=audit({stamp}): pid=1 uid=0 auid=1000 ses=1 msg='op=PAM:session_open "
        'grantors=pam_unix acct="root" exe="/usr/bin/sudo" hostname=? addr=? terminal=/dev/pts/0 res=success\'',
        f"type=CRED_ACQ msg=audit({stamp}): pid=1 uid=0 auid=1000 ses=1 msg='op=PAM:setcred grantors=pam_unix "
        'acct="root" exe="/usr/bin/sudo" hostname=? addr=? terminal=/dev/pts/0 res=success\'',
    ]


def write_log(path: str, events: int) -> tuple[int, int]:
    """A log of about ``events`` events; returns (lines, rows expected)."""
    lines = rows = 0
    with open(path, "w") as f:
        serial = 1
        i = 0
        while i < events:
            a, b = exec_records(serial, i), exec_records(serial + 1, i + 1)
            block = [x for pair in zip(a, b, strict=True) for x in pair]  # two CPUs: interleaved
            block += socket_records(serial + 2, i) + other_records(serial + 3)
            rows += 3
            serial += 4
            i += 3
            if i % 300 == 0:
                block += long_arg_records(serial)
                serial += 1
                rows += 1
                i += 1
            f.write("\n".join(block) + "\n")
            lines += len(block)
    return lines, rows


def replay_once(path: str) -> tuple[float, ReplayStats]:
    stats = ReplayStats()
    start = time.perf_counter()
    with LogInput(path) as log:
        for _ in replay(log, stats):
            pass
    return time.perf_counter() - start, stats


SHAPES = {
    "quoted value with many spaces": lambda n: 'a0="' + "x " * (n // 2) + '"',
    "many small fields": lambda n: "a=b " * (n // 4),
    "one long hex value": lambda n: "a0=" + "41" * (n // 2),
    "quotes and spaces": lambda n: 'a0="' + '" ' * (n // 2),
    "a message in single quotes": lambda n: "msg='" + "op=x " * (n // 5) + "'",
    "many chunks of one argument": lambda n: f"a0_len={n} " + " ".join(f"a0[{i}]=41" for i in range(n // 10)),
    "equals signs": lambda n: "a=" + "=" * n,
    "stray quotes in bare values": lambda n: 'a="b"c"d ' * (n // 10),
}


def long_lines(size: int) -> list[tuple[str, int, float]]:
    out = []
    for shape, make in SHAPES.items():
        line = f"type=EXECVE msg=audit(1.0:1): {make(size)}\n"
        start = time.perf_counter()
        rec = parse_line(line)
        damage = rec.damage
        execve_args([rec])
        out.append((shape, len(line), time.perf_counter() - start))
        del damage
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000, help="events in the generated log")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--log", help="replay this log instead of a generated one")
    ap.add_argument("--line-mb", type=float, default=10.0, help="size of the hostile lines (0: skip)")
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = opts.log or os.path.join(tmp, "audit.log")
        expected = None
        if not opts.log:
            _, expected = write_log(path, opts.events)
        size = os.path.getsize(path)
        times, stats = [], ReplayStats()
        for _ in range(opts.runs):
            elapsed, stats = replay_once(path)
            times.append(elapsed)
        t = statistics.median(times)
        print(
            f"replay of {path if opts.log else 'a generated log'}: {size / 1e6:.1f} MB, {stats.lines:,} lines, "
            f"{stats.records:,} records, {stats.events:,} events, {stats.rows:,} rows, {stats.malformed} malformed"
        )
        print(
            f"  median of {opts.runs}: {t:.2f} s = {stats.rows / t:,.0f} rows/s, {stats.lines / t:,.0f} lines/s, "
            f"{size / 1e6 / t:.1f} MB/s (runs: {', '.join(f'{x:.2f}' for x in times)})"
        )
        if expected is not None and stats.rows != expected:
            print(f"  ERROR: {expected:,} rows expected", file=sys.stderr)
            return 1
    if opts.line_mb:
        n = int(opts.line_mb * 1_000_000)
        print(f"one line of {opts.line_mb:g} MB, parsed (fields, damage, argv):")
        for shape, length, seconds in long_lines(n):
            print(f"  {shape:32} {length / 1e6:5.1f} MB  {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
