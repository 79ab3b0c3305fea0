"""Audit architectures: exec and socket rows from records of every architecture auditd logs.

The records are written here from each architecture's kernel syscall table
(arch/*/entry/syscalls/*.tbl, arch/*/kernel/syscalls/syscall.tbl, arch/arm/tools/syscall.tbl,
include/uapi/asm-generic/unistd.h) and auditd's record format; the arch values from
linux/audit.h.  The kernel prints ``arch=%x``, so 32-bit big-endian values have no leading zeros.
"""

from __future__ import annotations

import pytest

from eventsources.audit.reassemble import Reassembler
from eventsources.audit.records import parse_line
from eventsources.audit.rows import RowBuilder
from eventsources.audit.syscalls import ARCHES, arch_name, syscall_name

# arch as logged, name, big-endian, {call: number} from the architecture's table, socketcall number or None
ARCH_TABLES = [
    (
        "c000003e",
        "x86_64",
        False,
        {"execve": 59, "execveat": 322, "connect": 42, "bind": 49, "accept": 43, "accept4": 288},
        None,
    ),
    ("40000003", "i386", False, {"execve": 11, "execveat": 358, "connect": 362, "bind": 361, "accept4": 364}, 102),
    (
        "c00000b7",
        "aarch64",
        False,
        {"execve": 221, "execveat": 281, "connect": 203, "bind": 200, "accept": 202, "accept4": 242},
        None,
    ),
    (
        "40000028",
        "arm",
        False,
        {"execve": 11, "execveat": 387, "connect": 283, "bind": 282, "accept": 285, "accept4": 366},
        None,
    ),
    (
        "28",
        "armeb",
        True,
        {"execve": 11, "execveat": 387, "connect": 283, "bind": 282, "accept": 285, "accept4": 366},
        None,
    ),
    (
        "80000015",
        "ppc64",
        True,
        {"execve": 11, "execveat": 362, "connect": 328, "bind": 327, "accept": 330, "accept4": 344},
        102,
    ),
    (
        "c0000015",
        "ppc64le",
        False,
        {"execve": 11, "execveat": 362, "connect": 328, "bind": 327, "accept": 330, "accept4": 344},
        102,
    ),
    (
        "14",
        "ppc",
        True,
        {"execve": 11, "execveat": 362, "connect": 328, "bind": 327, "accept": 330, "accept4": 344},
        102,
    ),
    ("80000016", "s390x", True, {"execve": 11, "execveat": 354, "connect": 362, "bind": 361, "accept4": 364}, 102),
    ("16", "s390", True, {"execve": 11, "execveat": 354, "connect": 362, "bind": 361, "accept4": 364}, 102),
    (
        "c00000f3",
        "riscv64",
        False,
        {"execve": 221, "execveat": 281, "connect": 203, "bind": 200, "accept": 202, "accept4": 242},
        None,
    ),
    (
        "400000f3",
        "riscv32",
        False,
        {"execve": 221, "execveat": 281, "connect": 203, "bind": 200, "accept": 202, "accept4": 242},
        None,
    ),
]
IDS = "auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000"


def sockaddr_in(port: int, addr: str, *, big_endian: bool) -> str:
    family = (2).to_bytes(2, "big" if big_endian else "little")
    return (family + port.to_bytes(2, "big") + bytes(int(x) for x in addr.split(".")) + bytes(8)).hex().upper()


def event_lines(
    serial: int, arch: str, nr: int, *, a0: str = "3", saddr: str | None = None, args: str | None = None
) -> list[str]:
    stamp = f"1700000000.{serial:03d}:{serial}"
    lines = [
        f"type=SYSCALL msg=audit({stamp}): arch={arch} syscall={nr} success=yes exit=0 a0={a0} a1=7ff0 a2=10 a3=0 "
        f'items=1 ppid=1 pid={1000 + serial} {IDS} tty=(none) ses=1 comm="prog" exe="/usr/bin/prog" key=(null)'
    ]
    if args is not None:
        lines.append(f"type=SOCKETCALL msg=audit({stamp}): nargs=3 {args}")
    if saddr is not None:
        lines.append(f"type=SOCKADDR msg=audit({stamp}): saddr={saddr}")
    else:
        lines += [
            f'type=EXECVE msg=audit({stamp}): argc=2 a0="prog" a1="--flag"',
            f'type=CWD msg=audit({stamp}): cwd="/srv"',
            f'type=PATH msg=audit({stamp}): item=0 name="/usr/bin/prog" inode=7 dev=08:01 mode=0100755 ouid=0 ogid=0',
        ]
    lines.append(f"type=PROCTITLE msg=audit({stamp}): proctitle=70726F67")
    return lines


def rows_of(lines: list[str]) -> tuple[list[tuple[str, dict]], RowBuilder]:
    reasm = Reassembler(timeout=60, end_on_proctitle=True)
    builder = RowBuilder()
    rows = []
    for line in lines:
        event = reasm.push(parse_line(line + "\n"), 0.0)
        if event is not None:
            built = builder.build(event)
            if built is not None:
                rows.append(built)
    return rows, builder


@pytest.mark.parametrize(
    ("arch", "name", "big_endian", "calls", "socketcall"), ARCH_TABLES, ids=[a[1] for a in ARCH_TABLES]
)
def test_exec_and_socket_rows_of_every_architecture(
    arch: str, name: str, big_endian: bool, calls: dict[str, int], socketcall: int | None
) -> None:
    lines = event_lines(1, arch, calls["execve"]) + event_lines(2, arch, calls["execveat"])
    expected = [("process_events", "execve", None, None), ("process_events", "execveat", None, None)]
    serial = 3
    for call, action in (("bind", "bind"), ("connect", "connect"), ("accept", "accept"), ("accept4", "accept")):
        if call not in calls:
            continue
        saddr = sockaddr_in(8080, "10.1.2.3", big_endian=big_endian)
        lines += event_lines(serial, arch, calls[call], saddr=saddr)
        expected.append(("socket_events", action, "10.1.2.3", 8080))
        serial += 1
    if socketcall is not None:  # bind (SYS_BIND 2) and accept (SYS_ACCEPT 5) through socketcall(2)
        for sys_call, action in ((2, "bind"), (5, "accept")):
            saddr = sockaddr_in(443, "192.0.2.7", big_endian=big_endian)
            lines += event_lines(serial, arch, socketcall, a0=f"{sys_call:x}", saddr=saddr, args="a0=9 a1=7ff0 a2=10")
            expected.append(("socket_events", action, "192.0.2.7", 443))
            serial += 1
    rows, builder = rows_of(lines)
    got = []
    for table, row in rows:
        if table == "process_events":
            assert (row["cmdline"], row["cwd"], row["path"], row["overflows"]) == (
                "prog --flag",
                "/srv",
                "/usr/bin/prog",
                "",
            )
            got.append((table, row["syscall"], None, None))
        else:
            side = "local" if row["action"] == "bind" else "remote"
            assert row["family"] == 2 and row["overflows"] == ""
            got.append((table, row["action"], row[f"{side}_address"], row[f"{side}_port"]))
    assert got == expected
    assert builder.skipped == {} and builder.malformed == 0
    assert arch_name(int(arch, 16)) == name


def test_ppc64_big_endian_bind() -> None:
    """The reported case: arch=80000015 syscall=327, sa_family written big-endian."""
    lines = event_lines(1, "80000015", 327, saddr="0002005000000000" + "00" * 8)
    ((table, row),) = rows_of(lines)[0]
    assert (table, row["action"], row["family"], row["local_address"], row["local_port"]) == (
        "socket_events",
        "bind",
        2,
        "0.0.0.0",
        80,
    )


def test_x32_exec_under_the_x86_64_arch() -> None:
    x32 = 0x40000000
    rows, _ = rows_of(event_lines(1, "c000003e", x32 + 520) + event_lines(2, "c000003e", x32 + 545))
    assert [r["syscall"] for _, r in rows] == ["execve", "execveat"]
    assert syscall_name(0xC000003E, x32 + 59) is None  # 59 is execve only in the 64-bit ABI


def test_unknown_architectures_and_other_syscalls_are_counted_and_named() -> None:
    lines = event_lines(1, "8", 11)  # MIPS (EM_MIPS 8, big-endian o32): not an architecture we read
    lines += event_lines(2, "c000003e", 2) + event_lines(3, "c000003e", 2) + event_lines(4, "80000016", 11)
    lines += event_lines(5, "40000003", 102, a0="4", saddr=sockaddr_in(1, "1.2.3.4", big_endian=False))  # listen
    rows, builder = rows_of(lines)
    assert [r["syscall"] for _, r in rows] == ["execve"]  # the s390x exec
    assert builder.skipped == {"unknown_arch": 1, "other_syscall": 3}
    assert builder.skipped_detail == {
        "unknown_arch": {"0x00000008": 1},
        "other_syscall": {"x86_64 #2": 2, "i386 socketcall 4": 1},
    }


def test_arch_values_match_linux_audit_h() -> None:
    assert {f"{v:08x}": a.name for v, a in ARCHES.items()} == {
        "c000003e": "x86_64",
        "40000003": "i386",
        "c00000b7": "aarch64",
        "40000028": "arm",
        "00000028": "armeb",
        "00000014": "ppc",
        "80000015": "ppc64",
        "c0000015": "ppc64le",
        "00000016": "s390",
        "80000016": "s390x",
        "400000f3": "riscv32",
        "c00000f3": "riscv64",
    }
    assert [a.name for a in ARCHES.values() if a.big_endian] == ["armeb", "ppc", "ppc64", "s390", "s390x"]
