"""Replaying auditd text logs (as other kernels and distributions write them) into rows."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma

import pytest

from eventsources.audit.logfile import LogInput, ReplayError, ReplayStats, replay


def h(text: str) -> str:
    return text.encode().hex().upper()


def lines_of(*records: str) -> list[str]:
    """Log lines as a file gives them: each with its newline."""
    return [r + "\n" for r in records]


def accounted(stats: ReplayStats) -> bool:
    """Every event made a row or was counted as skipped, by reason."""
    return stats.events == stats.rows + sum(stats.skipped.values())


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
    rows = list(replay(lines_of(*ENRICHED), stats))
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
    rows = list(replay(lines_of(*RHEL6), stats))
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
    assert stats.skipped == {"failed_exec": 1} and accounted(stats)
    assert stats.other_types == {"USER_START": 1}


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
    lines = [lines[0], lines[2], lines[1]]  # the cut line is the last line of the log
    stats = ReplayStats()
    rows = list(replay(lines, stats))
    assert [(r["pid"], r["cmdline"], r["cwd"], r["overflows"]) for _, r in rows] == [
        (21, "/opt/i386/old /etc/pa", "/tmp", "cmdline")  # what was there, marked as cut short
    ]
    assert stats.malformed == 1
    assert stats.examples == [
        (
            3,
            "EXECVE record of event 1400000000.200:301: the line ends without a newline (cut short); "
            "a1: no closing quote (the record is cut short?)",
        )
    ]


def test_cut_inside_a_hex_argument() -> None:
    arg = h("--config=/etc/app/settings.ini")
    log = lines_of(
        RHEL6[1],
        f'type=EXECVE msg=audit(1400000000.200:301): argc=2 a0="/opt/i386/old" a1_len={len(arg)} a1[0]={arg[:31]}',
    )
    log[-1] = log[-1][:-1]  # no newline: the log ends in the middle of a1
    stats = ReplayStats()
    ((_, row),) = list(replay(log, stats))
    assert (row["cmdline"], row["overflows"]) == ("/opt/i386/old --config=/etc/a", "cmdline")  # no raw hex in cmdline
    assert stats.malformed == 1 and stats.examples[0][0] == 2
    assert "odd number of hex digits (31" in stats.examples[0][1]
    assert f"a1_len={len(arg)} but 31 characters were logged" in stats.examples[0][1]


def test_odd_hex_and_length_mismatch_inside_a_log() -> None:
    arg = h("payload")
    log = lines_of(
        RHEL6[1],
        f'type=EXECVE msg=audit(1400000000.200:301): argc=3 a0="/opt/i386/old" a1={arg[:-1]} a2_len=99 a2[0]={arg}',
        RHEL6[3],
    )
    stats = ReplayStats()
    ((_, row),) = list(replay(log, stats))
    assert (row["cmdline"], row["overflows"], row["cwd"]) == ("/opt/i386/old payloa payload", "cmdline", "/tmp")
    assert stats.malformed == 1
    ((lineno, why),) = stats.examples
    assert lineno == 2 and why.startswith("EXECVE record of event 1400000000.200:301: a1: odd number of hex digits")
    assert "a2: a2_len=99 but 14 characters were logged" in why


# go-libaudit's audit-ubuntu17 sample: a stray quote after the hex of key= on a SYSCALL execve record
UBUNTU17 = (
    "type=SYSCALL msg=audit(1515619721.392:106081): arch=c000003e syscall=59 success=yes exit=0 a0=55df1048ec88 "
    "a1=55df1048ec38 a2=55df1048ec58 a3=1 items=2 ppid=27851 pid=27854 auid=4294967295 uid=0 gid=0 euid=0 suid=0 "
    'fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="grep" exe="/bin/grep" key=65786563013634626974"'
)


def test_stray_quote_keeps_the_event() -> None:
    stats = ReplayStats()
    rows = list(replay(lines_of(UBUNTU17), stats))
    assert [(r["pid"], r["parent"], r["path"], r["uid"], r["overflows"]) for _, r in rows] == [
        (27854, 27851, "/bin/grep", 0, "")  # the damaged key is no column: the row is whole
    ]
    assert stats.malformed == 1
    assert stats.examples == [
        (1, "SYSCALL record of event 1515619721.392:106081: key: stray quote in '65786563013634626974\"'")
    ]


def test_text_after_a_closing_quote_stays_out_of_cmdline() -> None:
    log = lines_of(
        'type=SYSCALL msg=audit(1600000000.000:5): arch=c000003e syscall=59 success=yes exit=0 a0=1 ppid=1 pid=50 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 exe="/usr/bin/docker"',
        'type=EXECVE msg=audit(1600000000.000:5): argc=3 a0="docker" a1="inspect" a2="721df12151a7"\'',
        'type=PROCTITLE msg=audit(1600000000.000:5): proctitle="docker"',
    )
    stats = ReplayStats()
    ((_, row),) = list(replay(log, stats))
    assert row["cmdline"] == "docker inspect 721df12151a7"
    assert (
        stats.malformed == 1
        and stats.examples[0][0] == 2
        and "a2: text after the closing quote" in stats.examples[0][1]
    )


def test_multi_host_log_with_the_same_serials() -> None:
    """Logs aggregated from two hosts (auditd's name_format): serial 4711 at the same time on both."""

    def host(node: str, pid: int, exe: str, argv: list[str]) -> list[str]:
        stamp = "1700000000.500:4711"
        return [
            f"node={node} type=SYSCALL msg=audit({stamp}): arch=c000003e syscall=59 success=yes exit=0 a0=1 ppid=1 "
            f'pid={pid} auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 exe="{exe}"',
            f"node={node} type=EXECVE msg=audit({stamp}): argc={len(argv)} "
            + " ".join(f'a{i}="{a}"' for i, a in enumerate(argv)),
            f'node={node} type=CWD msg=audit({stamp}): cwd="/home/{node}"',
            f"node={node} type=PROCTITLE msg=audit({stamp}): proctitle={h(argv[0])}",
        ]

    a, b = (
        host("web-1", 100, "/usr/bin/curl", ["curl", "-s", "example.org"]),
        host("db-1", 200, "/usr/bin/psql", ["psql"]),
    )
    log = lines_of(*[x for pair in zip(a, b, strict=True) for x in pair])  # interleaved record by record
    stats = ReplayStats()
    rows = [r for _, r in replay(log, stats)]
    assert [(r["pid"], r["path"], r["cmdline"], r["cwd"]) for r in rows] == [
        (100, "/usr/bin/curl", "curl -s example.org", "/home/web-1"),
        (200, "/usr/bin/psql", "psql", "/home/db-1"),
    ]
    assert (stats.events, stats.rows, stats.malformed) == (2, 2, 0)


def test_ausearch_output_with_reversed_records() -> None:
    """ausearch's default output: ``----``, ``time->``, then each event's records from last to first."""
    event = [
        f"type=PROCTITLE msg=audit(1700000200.010:90): proctitle={h('ls')}002D6C61",
        'type=PATH msg=audit(1700000200.010:90): item=1 name="/lib64/ld-linux-x86-64.so.2" inode=2 dev=fd:01 mode=0100755 ouid=0 ogid=0',
        'type=PATH msg=audit(1700000200.010:90): item=0 name="/usr/bin/ls" inode=1 dev=fd:01 mode=0100755 ouid=0 ogid=0',
        'type=CWD msg=audit(1700000200.010:90): cwd="/var/log"',
        'type=EXECVE msg=audit(1700000200.010:90): argc=2 a0="ls" a1="-la"',
        'type=SYSCALL msg=audit(1700000200.010:90): arch=c000003e syscall=59 success=yes exit=0 a0=1 ppid=5 pid=6 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 exe="/usr/bin/ls"',
    ]
    old = [  # an old kernel's event without PROCTITLE: it ends at the next ----
        'type=CWD msg=audit(1400000000.200:301):  cwd="/tmp"',
        'type=EXECVE msg=audit(1400000000.200:301): argc=1 a0="/opt/i386/old"',
        RHEL6[1],
    ]
    log = lines_of(
        "----", "time->Tue Nov 14 22:13:20 2023", *event, "----", "time->Sat May 13 16:53:20 2014", *old, "----"
    )
    stats = ReplayStats()
    rows = [r for _, r in replay(log, stats)]
    assert [(r["pid"], r["cmdline"], r["cwd"], r["mode"]) for r in rows] == [
        (6, "ls -la", "/var/log", "0100755"),
        (21, "/opt/i386/old", "/tmp", None),
    ]
    assert (stats.malformed, stats.records, stats.events) == (0, 9, 2)
    assert stats.other_lines == {"ausearch ----": 3, "ausearch time->": 2}


def test_interpreted_ausearch_output_is_refused_with_the_reason() -> None:
    log = lines_of(
        "----",
        "type=PROCTITLE msg=audit(11/14/2023 22:13:20.010:90) : proctitle=ls -la",
        "type=SYSCALL msg=audit(11/14/2023 22:13:20.010:90) : arch=x86_64 syscall=execve success=yes exit=0",
    )
    with pytest.raises(ReplayError, match=r"line 2: this is ausearch's interpreted output .*raw format"):
        list(replay(log, ReplayStats()))


def test_other_architectures_and_skips_are_counted_and_named() -> None:
    def sys_line(serial: int, arch: str, nr: int) -> str:
        return (
            f"type=SYSCALL msg=audit(1700000300.000:{serial}): arch={arch} syscall={nr} success=yes exit=0 a0=3 "
            f'ppid=1 pid={serial} auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 exe="/bin/x"'
        )

    log = lines_of(
        sys_line(1, "80000015", 327),  # ppc64 bind, big-endian sa_family
        "type=SOCKADDR msg=audit(1700000300.000:1): saddr=0002005000000000" + "00" * 8,
        sys_line(2, "8", 11),  # MIPS
        sys_line(3, "c000003e", 257),  # openat
        sys_line(4, "c000003e", 59).replace("success=yes", "success=no"),
        "type=USER_LOGIN msg=audit(1700000300.000:5): pid=1 uid=0 msg='op=login acct=\"root\" res=success'",
    )
    stats = ReplayStats()
    rows = list(replay(log, stats))
    assert [(t, r["action"], r["local_port"]) for t, r in rows] == [("socket_events", "bind", 80)]
    assert stats.skipped == {"unknown_arch": 1, "other_syscall": 1, "failed_exec": 1}
    assert stats.skipped_detail == {"unknown_arch": {"0x00000008": 1}, "other_syscall": {"x86_64 #257": 1}}
    assert stats.other_types == {"USER_LOGIN": 1}
    assert accounted(stats) and stats.malformed == 0


def test_a_bad_sockaddr_is_reported_as_what_it_is() -> None:
    log = lines_of(
        RHEL6[0],
        'type=SYSCALL msg=audit(1700000100.002:21): arch=c000003e syscall=42 success=no exit=-115 a0=3 a1=7ff a2=10 a3=0 items=0 ppid=1 pid=950 auid=0 uid=33 gid=33 euid=33 suid=33 fsuid=33 egid=33 sgid=33 fsgid=33 exe="/usr/bin/php"',
        "type=SOCKADDR msg=audit(1700000100.002:21): saddr=0A00005020",
        'type=PROCTITLE msg=audit(1700000100.002:21): proctitle="php"',
    )
    stats = ReplayStats()
    ((_, row),) = list(replay(log, stats))
    assert (row["status"], row["remote_address"], row["overflows"]) == ("in_progress", None, "sockaddr")
    assert stats.examples == [
        (3, "SOCKADDR record of event 1700000100.002:21: saddr: AF_INET6 sockaddr too short: '0A00005020'")
    ]


# -- reading files ---------------------------------------------------------------------------
LOG_BYTES = "".join(lines_of(*RHEL6)).encode()


@pytest.mark.parametrize(
    ("kind", "compress"), [("gzip", gzip.compress), ("bzip2", bz2.compress), ("xz", lzma.compress), (None, bytes)]
)
def test_log_input_reads_compressed_logs(tmp_path, kind, compress) -> None:
    path = tmp_path / "audit.log.1"
    path.write_bytes(compress(LOG_BYTES))
    with LogInput(str(path)) as log:
        stats = ReplayStats()
        rows = list(replay(log, stats))
    assert (log.compression, log.error, len(rows), rows[0][1]["pid"], stats.lines) == (kind, None, 1, 21, 7)


def test_log_input_names_what_it_cannot_read(tmp_path) -> None:
    path = tmp_path / "audit.log.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(20))
    with pytest.raises(ReplayError, match="zstd-compressed; decompress it first"):
        LogInput(str(path))
    cut = tmp_path / "audit.log.2.gz"
    data = gzip.compress(LOG_BYTES * 50)
    cut.write_bytes(data[: len(data) // 2])
    with LogInput(str(cut)) as log:
        stats = ReplayStats()
        rows = list(replay(log, stats))
    assert log.error == "the gzip data ends early (the file is cut short)"
    assert rows and stats.lines < 7 * 50  # what could be read was replayed


def test_log_input_reads_standard_input() -> None:
    stdin = io.BufferedReader(io.BytesIO(gzip.compress(LOG_BYTES)))  # type: ignore[arg-type]
    log = LogInput("-", stdin=stdin)
    assert log.name == "standard input"
    assert [r["pid"] for _, r in replay(log, ReplayStats())] == [21]


def test_window_flushes_events_without_end_marker() -> None:
    lines = []
    for i in range(300):  # long log of exec events with no PROCTITLE at all: each flushed by the window
        s = 1000 + i
        lines.append(
            f'type=SYSCALL msg=audit(1.0:{s}): arch=c000003e syscall=59 success=yes exit=0 a0=0 ppid=1 pid={s} auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 exe="/bin/x"'
        )
        lines.append(f'type=EXECVE msg=audit(1.0:{s}): argc=1 a0="x{i}"')
    lines = lines_of(*lines)
    stats = ReplayStats()
    seen = []
    for _table, row in replay(lines, stats, window=16):
        seen.append(row["cmdline"])
        if len(seen) == 1:
            assert stats.lines < 100  # rows come while reading, not only at the end
    assert seen == [f"x{i}" for i in range(300)]
