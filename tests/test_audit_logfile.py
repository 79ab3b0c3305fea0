"""Replaying auditd text logs (as other kernels and distributions write them) into rows."""

from __future__ import annotations

from eventsources.audit.logfile import ReplayStats, replay


def h(text: str) -> str:
    return text.encode().hex().upper()


# auditd writes no EOE; an Ubuntu 6.x host with enriched format, node= prefix, interleaved serials
ENRICHED = [
    'node=web-1 type=SYSCALL msg=audit(1700000100.001:20): arch=c000003e syscall=59 success=yes exit=0 a0=55d a1=55e a2=55f a3=0 items=2 ppid=900 pid=901 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=2 comm="ls" exe="/usr/bin/ls" subj=unconfined key="exec"\x1dARCH=x86_64 SYSCALL=execve AUID="alice" UID="alice" GID="alice"',
    f'node=web-1 type=EXECVE msg=audit(1700000100.001:20): argc=2 a0="ls" a1={h("my dir")}',
    'node=web-1 type=SYSCALL msg=audit(1700000100.002:21): arch=c000003e syscall=42 success=no exit=-115 a0=3 a1=7ff a2=10 a3=0 items=0 ppid=1 pid=950 auid=4294967295 uid=33 gid=33 euid=33 suid=33 fsuid=33 egid=33 sgid=33 fsgid=33 tty=(none) ses=4294967295 comm="php" exe="/usr/bin/php8.1" key=(null)\x1dARCH=x86_64 SYSCALL=connect',
    'node=web-1 type=CWD msg=audit(1700000100.001:20): cwd="/home/alice"',
    "node=web-1 type=SOCKADDR msg=audit(1700000100.002:21): saddr=02000050C0000201000000000000000000\x1dSADDR={ saddr_fam=inet laddr=192.0.2.1 lport=80 }",
    'node=web-1 type=PATH msg=audit(1700000100.001:20): item=0 name="/usr/bin/ls" inode=5 dev=fd:01 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0\x1dOUID="root" OGID="root"',
    'node=web-1 type=PROCTITLE msg=audit(1700000100.002:21): proctitle="php"',
    "node=web-1 type=PROCTITLE msg=audit(1700000100.001:20): proctitle=6C73006D7920646972",
]

# RHEL 6 style (2.6.32): no PROCTITLE, 32-bit exec (arch=40000003 syscall=11), login records around it
RHEL6 = [
    'type=USER_START msg=audit(1400000000.100:300): user pid=10 uid=0 auid=500 ses=1 msg=\'op=PAM:session_open acct="root" exe="/usr/sbin/sshd" res=success\'',
    'type=SYSCALL msg=audit(1400000000.200:301): arch=40000003 syscall=11 success=yes exit=0 a0=8c1 a1=8c2 a2=8c3 a3=0 items=2 ppid=20 pid=21 auid=500 uid=500 gid=500 euid=500 suid=500 fsuid=500 egid=500 sgid=500 fsgid=500 tty=pts1 ses=1 comm="old" exe="/opt/i386/old" key=(null)',
    'type=EXECVE msg=audit(1400000000.200:301): argc=1 a0="/opt/i386/old"',
    'type=CWD msg=audit(1400000000.200:301):  cwd="/tmp"',
    'type=PATH msg=audit(1400000000.200:301): item=0 name="/opt/i386/old" inode=1 dev=08:01 mode=0104755 ouid=0 ogid=0 rdev=00:00',
    'type=SYSCALL msg=audit(1400000000.300:302): arch=c000003e syscall=59 success=no exit=-2 a0=1 a1=2 a2=3 a3=0 items=1 ppid=20 pid=22 auid=500 uid=500 gid=500 euid=500 suid=500 fsuid=500 egid=500 sgid=500 fsgid=500 tty=pts1 ses=1 comm="sh" exe="/bin/sh" key=(null)',
    'type=PATH msg=audit(1400000000.300:302): item=0 name="/usr/local/bin/nothere" nametype=UNKNOWN',
]


def test_enriched_interleaved_log_without_eoe() -> None:
    stats = ReplayStats()
    rows = list(replay(ENRICHED, stats))
    assert [t for t, _ in rows] == ["socket_events", "process_events"]  # each ends at its PROCTITLE
    sock, proc = rows[0][1], rows[1][1]
    assert (sock["action"], sock["remote_address"], sock["remote_port"], sock["status"], sock["path"], sock["fd"]) == (
        "connect",
        "192.0.2.1",
        80,
        "in_progress",
        "/usr/bin/php8.1",
        "3",
    )
    assert (proc["pid"], proc["parent"], proc["path"], proc["cmdline"], proc["cwd"], proc["uid"], proc["mode"]) == (
        901,
        900,
        "/usr/bin/ls",
        "ls my dir",
        "/home/alice",
        1000,
        "0100755",
    )
    assert proc["time"] == 1700000100 and proc["uptime"] is None
    assert (stats.lines, stats.records, stats.events, stats.rows, stats.malformed) == (8, 8, 2, 2, 0)


def test_old_kernel_32bit_log_missing_records() -> None:
    stats = ReplayStats()
    rows = list(replay(RHEL6, stats))
    assert len(rows) == 1
    table, row = rows[0]
    assert table == "process_events"
    assert (row["pid"], row["path"], row["cmdline"], row["cwd"], row["mode"], row["syscall"], row["auid"]) == (
        21,
        "/opt/i386/old",
        "/opt/i386/old",
        "/tmp",
        "0104755",
        "execve",
        500,
    )
    assert (stats.records, stats.events, stats.rows, stats.malformed) == (7, 2, 1, 0)
    assert stats.skipped == {"failed_exec": 1}


def test_malformed_lines_counted_not_fatal() -> None:
    lines = [b"garbage line\n", b"", b"type=SYSCALL msg=audit(bad): x=1\n", b"type=EXECVE\n"]
    lines += [line.encode() + b"\n" for line in RHEL6]
    lines.insert(5, b"\xff\xfe binary junk")
    stats = ReplayStats()
    rows = list(replay(lines, stats))
    assert len(rows) == 1 and rows[0][1]["pid"] == 21
    assert stats.malformed == 4 and stats.lines == len(lines)
    assert [n for n, _ in stats.examples] == [1, 3, 4, 6]
    assert "type=" in stats.examples[0][1]


def test_truncated_last_line_is_counted_and_the_event_kept() -> None:
    lines = [line.encode() + b"\n" for line in RHEL6[1:4]]
    lines[1] = b'type=EXECVE msg=audit(1400000000.200:301): argc=2 a0="/opt/i386/old" a1="/etc/pa'  # cut off
    stats = ReplayStats()
    rows = list(replay(lines, stats))
    assert [(r["pid"], r["cmdline"], r["cwd"]) for _, r in rows] == [(21, "", "/tmp")]  # no half an argument
    assert stats.malformed == 1 and "truncated" in stats.examples[0][1] and stats.examples[0][0] == 2


def test_window_flushes_events_without_end_marker() -> None:
    lines = []
    for i in range(300):  # long log of exec events with no PROCTITLE at all: each flushed by the window
        s = 1000 + i
        lines.append(
            f'type=SYSCALL msg=audit(1.0:{s}): arch=c000003e syscall=59 success=yes exit=0 a0=0 ppid=1 pid={s} auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 exe="/bin/x"'
        )
        lines.append(f'type=EXECVE msg=audit(1.0:{s}): argc=1 a0="x{i}"')
    stats = ReplayStats()
    seen = []
    for _table, row in replay(lines, stats, window=16):
        seen.append(row["cmdline"])
        if len(seen) == 1:
            assert stats.lines < 100  # rows come while reading, not only at the end
    assert seen == [f"x{i}" for i in range(300)]
