"""Audit record parsing, reassembly and row building, on record text the tests write."""

from __future__ import annotations

import pytest

from eventsources.audit.reassemble import Reassembler
from eventsources.audit.records import (
    CWD,
    EOE,
    EXECVE,
    PATH,
    PROCTITLE,
    SOCKADDR,
    SOCKETCALL,
    SYSCALL,
    RecordError,
    SockAddr,
    decode_sockaddr,
    decode_untrusted,
    execve_args,
    parse_fields,
    parse_line,
    parse_message,
)
from eventsources.audit.rows import RowBuilder

IDS = "auid=1000 uid=1001 gid=1002 euid=1003 suid=1004 fsuid=1005 egid=1006 sgid=1007 fsgid=1008"


def hexs(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return data.hex().upper()


def syscall(
    serial: int,
    *,
    arch: str = "c000003e",
    nr: int = 59,
    success: str = "yes",
    exit_: int = 0,
    a0: str = "7ffd1",
    pid: int = 4242,
    ppid: int = 4000,
    exe: str = '"/usr/bin/true"',
) -> tuple[int, str]:
    return SYSCALL, (
        f"audit(1700000000.123:{serial}): arch={arch} syscall={nr} success={success} exit={exit_} a0={a0} a1=0 "
        f'a2=0 a3=0 items=2 ppid={ppid} pid={pid} {IDS} tty=pts0 ses=3 comm="true" exe={exe} '
        f'subj=unconfined key="zeek-agent"'
    )


def rec(rtype: int, serial: int, body: str) -> tuple[int, str]:
    return rtype, f"audit(1700000000.123:{serial}): {body}"


def exec_event(serial: int, args_body: str, **kw) -> list[tuple[int, str]]:
    return [
        syscall(serial, **kw),
        rec(EXECVE, serial, args_body),
        rec(CWD, serial, f"cwd={hexs('/home/a user')}"),
        rec(
            PATH,
            serial,
            'item=0 name="/bin/true" inode=260958 dev=fe:00 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL',
        ),
        rec(PATH, serial, 'item=1 name="/lib64/ld-linux-x86-64.so.2" inode=1 dev=fe:00 mode=0100644 ouid=7 ogid=7'),
        rec(PROCTITLE, serial, "proctitle=2F62696E2F74727565"),
        rec(EOE, serial, ""),
    ]


def assemble(records: list[tuple[int, str]], **builder_kw):
    reasm = Reassembler(timeout=2.0)
    builder = RowBuilder(boot_time=1_699_999_000.0, **builder_kw)
    rows = []
    for rtype, text in records:
        event = reasm.push(parse_message(rtype, text), now=0.0)
        if event is not None:
            built = builder.build(event)
            if built:
                rows.append(built)
    return rows, builder, reasm


# -- records ---------------------------------------------------------------------------------
def test_parse_message_header_and_fields() -> None:
    r = parse_message(SYSCALL, 'audit(1700000000.123:456): arch=c000003e syscall=59 comm="true"\0')
    assert (r.type, r.ts, r.serial) == (SYSCALL, 1700000000.123, 456)
    assert r.fields == {"arch": "c000003e", "syscall": "59", "comm": '"true"'}


@pytest.mark.parametrize("text", ["", "type=SYSCALL", "audit(1700000000.1): x=1", "audit(abc:12): x=1", "audit(1.2:3"])
def test_parse_message_rejects_garbage(text: str) -> None:
    with pytest.raises(RecordError):
        parse_message(SYSCALL, text)


def test_fields_with_quoted_spaces_and_bare_words() -> None:
    f = parse_fields('pid=1 msg=\'op=login acct="root" res=success\' junk a="b c" z=')
    assert f == {"pid": "1", "msg": "'op=login acct=\"root\" res=success'", "a": '"b c"', "z": ""}


def test_untrusted_values_decoded_by_form() -> None:
    assert decode_untrusted('"/bin/true"') == "/bin/true"
    assert decode_untrusted(hexs("hello world")) == "hello world"
    assert decode_untrusted(hexs("grüße")) == "grüße"
    assert decode_untrusted(hexs(b"\xff\xfeok")) == "\ufffd\ufffdok"  # invalid UTF-8 replaced, rest kept
    assert decode_untrusted("(null)") is None
    assert decode_untrusted(None) is None
    assert decode_untrusted("not-hex") == "not-hex"


def test_execve_split_argument_across_records() -> None:
    long_arg = ("0123456789" * 900).encode()  # 9,000 bytes -> 18,000 hex chars in chunks
    h = hexs(long_arg)
    r1 = parse_message(EXECVE, f'audit(1.0:9): argc=4 a0="/bin/true" a1={hexs("a b")} a2_len={len(h)} a2[0]={h[:7000]}')
    r2 = parse_message(EXECVE, f"audit(1.0:9): a2[1]={h[7000:14000]}")
    r3 = parse_message(EXECVE, f'audit(1.0:9): a2[2]={h[14000:]} a3="z"')
    argv, argc = execve_args([r1, r2, r3])
    assert argc == 4
    assert argv == ["/bin/true", "a b", long_arg.decode(), "z"]


def test_execve_split_argument_with_quoted_chunks() -> None:
    # an argument that needs no encoding may be split in "quoted" chunks; a bad chunk loses only its argument
    r = parse_message(
        EXECVE,
        'audit(1.0:9): argc=4 a0="ls" a1_len=12 a1[0]="abcdef" a1[1]="ghijkl" a2="-l" a3_len=4 a3[0]=ZZ a3[1]="ab"',
    )
    assert execve_args([r]) == (["ls", "abcdefghijkl", "-l"], 4)


def test_execve_args_sorted_numerically_beyond_ten() -> None:
    body = "argc=12 " + " ".join(f'a{i}="x{i}"' for i in range(12))
    argv, _ = execve_args([parse_message(EXECVE, f"audit(1.0:9): {body}")])
    assert argv == [f"x{i}" for i in range(12)]


def test_execve_multibyte_char_split_between_chunks() -> None:
    h = hexs("é")  # C3A9: split in the middle of the character
    r = parse_message(EXECVE, f"audit(1.0:9): argc=1 a0_len=4 a0[0]={h[:2]} a0[1]={h[2:]}")
    assert execve_args([r]) == (["é"], 1)


@pytest.mark.parametrize(
    ("saddr", "expected"),
    [
        ("020000097F0000010000000000000000", SockAddr(2, "127.0.0.1", 9)),
        ("0200D431C0A800FE0000000000000000", SockAddr(2, "192.168.0.254", 54321)),
        ("0A000009000000000000000000000000000000000000000100000000", SockAddr(10, "::1", 9)),
        ("0A0001BB00000000FE800000000000000000000000000001" + "02000000", SockAddr(10, "fe80::1", 443)),
        ("01002F746D702F782E736F636B00", SockAddr(1, path="/tmp/x.sock")),
        ("0100" + "00" + hexs("abstract-x"), SockAddr(1, path="@abstract-x")),
        ("0100", SockAddr(1, path="")),
        ("1000000039300000FFFFFFFF", SockAddr(16)),
    ],
)
def test_sockaddr_families(saddr: str, expected: SockAddr) -> None:
    assert decode_sockaddr(saddr) == expected


@pytest.mark.parametrize("saddr", ["02", "0200", "020000097F", "0A0000090000", "XYZ"])
def test_sockaddr_malformed(saddr: str) -> None:
    with pytest.raises(ValueError):
        decode_sockaddr(saddr)


def test_parse_line_variants() -> None:
    plain = parse_line('type=CWD msg=audit(1700000000.5:77): cwd="/root"\n')
    assert (plain.type, plain.serial, plain.fields["cwd"]) == (CWD, 77, '"/root"')
    node = parse_line("node=web-1 type=SYSCALL msg=audit(1700000000.5:78): arch=40000003 syscall=11")
    assert (node.type, node.serial) == (SYSCALL, 78)
    enriched = parse_line(
        'type=SYSCALL msg=audit(1.5:79): arch=c000003e syscall=59 uid=0\x1dARCH=x86_64 SYSCALL=execve UID="root"'
    )
    assert enriched.fields == {"arch": "c000003e", "syscall": "59", "uid": "0"}
    numeric = parse_line("type=UNKNOWN[1327] msg=audit(1.5:80): proctitle=6C73")
    assert numeric.type == PROCTITLE
    other = parse_line("type=USER_LOGIN msg=audit(1.5:81): pid=1 uid=0 msg='op=login res=success'")
    assert other.type == 0
    for bad in ("garbage", "type=SYSCALL", "type=SYSCALL msg=nonsense", "type=SYSCALL foo=audit(1.5:3): x"):
        with pytest.raises(RecordError):
            parse_line(bad)


# -- reassembly ------------------------------------------------------------------------------
def test_interleaved_and_out_of_order_serials() -> None:
    a, b = exec_event(101, 'argc=1 a0="/bin/a"'), exec_event(100, 'argc=1 a0="/bin/b"', pid=5)
    mixed = [x for pair in zip(a, b, strict=False) for x in pair]  # 101 and 100 interleaved record by record
    rows, _, reasm = assemble(mixed)
    assert [r["cmdline"] for _, r in rows] == ["/bin/a", "/bin/b"]
    assert len(reasm) == 0 and reasm.completed == 2


def test_missing_eoe_flushed_by_timeout() -> None:
    reasm = Reassembler(timeout=2.0)
    for rtype, text in exec_event(7, 'argc=1 a0="x"')[:-1]:  # no EOE
        assert reasm.push(parse_message(rtype, text), now=10.0) is None
    assert reasm.expire(11.0) == []
    (event,) = reasm.expire(12.5)
    assert event.serial == 7 and not event.complete and len(event.records) == 6
    assert reasm.timed_out == 1 and len(reasm) == 0


def test_max_pending_evicts_oldest_without_losing_it() -> None:
    reasm = Reassembler(timeout=60, max_pending=2)
    for serial in (1, 2, 3):
        reasm.push(parse_message(*syscall(serial)), now=0.0)
    assert reasm.evicted == 1
    assert [e.serial for e in reasm.expire(1.0)] == [1]
    assert [e.serial for e in reasm.flush()] == [2, 3]


# -- rows ------------------------------------------------------------------------------------
def test_process_row_columns() -> None:
    rows, _, _ = assemble(exec_event(300, f'argc=3 a0="/bin/true" a1={hexs("hello world")} a2={hexs("ünï")}'))
    ((table, row),) = rows
    assert table == "process_events"
    assert row == {
        "pid": 4242,
        "path": "/usr/bin/true",
        "auid": 1000,
        "time": 1700000000,
        "timestamp": 1700000000.123,
        "uptime": 1000,
        "uid": 1001,
        "gid": 1002,
        "euid": 1003,
        "suid": 1004,
        "fsuid": 1005,
        "egid": 1006,
        "sgid": 1007,
        "fsgid": 1008,
        "cmdline": "/bin/true hello world ünï",
        "cmdline_size": len("/bin/true hello world ünï".encode()),
        "overflows": "",
        "cwd": "/home/a user",
        "parent": 4000,
        "syscall": "execve",
        "status": 0,
        "mode": "0100755",
        "owner_uid": 0,
        "owner_gid": 0,
        "btime": 0,
    }


def test_32bit_exec_and_truncated_argv() -> None:
    records = exec_event(301, 'argc=3 a0="/opt/old/bin32"', arch="40000003", nr=11, exe='"/opt/old/bin32"')
    ((_, row),) = assemble(records)[0]
    assert (row["syscall"], row["path"], row["cmdline"], row["overflows"]) == (
        "execve",
        "/opt/old/bin32",
        "/opt/old/bin32",
        "cmdline",
    )
    # 32-bit execveat (358) too; syscall 59 on the 32-bit ABI is not an exec and makes no row
    assert assemble(exec_event(302, 'argc=1 a0="x"', arch="40000003", nr=358))[0][0][1]["syscall"] == "execveat"
    rows, builder, _ = assemble(exec_event(303, 'argc=1 a0="x"', arch="40000003", nr=59))
    assert rows == [] and builder.skipped == {"other_syscall": 1}


def test_failed_exec_own_pid_and_lonely_records_skipped() -> None:
    records = exec_event(400, 'argc=1 a0="nope"', success="no", exit_=-2)
    records += exec_event(401, 'argc=1 a0="me"', pid=77)
    records += [rec(CWD, 402, 'cwd="/"'), rec(EOE, 402, "")]
    rows, builder, _ = assemble(records, own_pid=77)
    assert rows == []
    assert builder.skipped == {"failed_exec": 1, "own_pid": 1, "no_syscall_record": 1}


def test_malformed_syscall_counted() -> None:
    records = [(SYSCALL, "audit(1.0:500): arch=zz syscall=59 pid=1"), rec(EOE, 500, "")]
    records += [(SYSCALL, "audit(1.0:501): arch=c000003e syscall=59"), rec(EOE, 501, "")]  # no pid
    rows, builder, _ = assemble(records)
    assert rows == [] and builder.malformed == 2


def sock_event(
    serial: int, nr: int, saddr: str | None, *, success: str = "yes", exit_: int = 0, arch: str = "c000003e"
):
    records = [syscall(serial, nr=nr, success=success, exit_=exit_, a0="1a", arch=arch, exe='"/usr/bin/curl"')]
    if saddr is not None:
        records.append(rec(SOCKADDR, serial, f"saddr={saddr}"))
    records += [rec(PROCTITLE, serial, "proctitle=6375726C"), rec(EOE, serial, "")]
    return records


def test_socket_rows() -> None:
    records = (
        sock_event(1, 42, "020000097F0000010000000000000000", success="no", exit_=-111)
        + sock_event(2, 42, "0A000050000000000000000000000000000000000000000100000000", success="no", exit_=-115)
        + sock_event(3, 49, "02001F90000000000000000000000000")
        + sock_event(4, 288, "0200C350C0A800010000000000000000", exit_=5)
        + sock_event(5, 43, None, success="no", exit_=-11)
        + sock_event(6, 42, "0100" + "00" + hexs("abstract-x"), success="no", exit_=-111)
        + sock_event(7, 362, "01002F72756E2F782E736F636B00", arch="40000003")
        + sock_event(8, 49, "1000000039300000FFFFFFFF")
    )
    rows, builder, _ = assemble(records)
    assert builder.skipped == {"netlink_socket": 1}
    got = [
        (
            r["action"],
            r["family"],
            r["local_address"],
            r["local_port"],
            r["remote_address"],
            r["remote_port"],
            r["socket"],
            r["status"],
            r["success"],
            r["fd"],
        )
        for _, r in rows
    ]
    assert got == [
        ("connect", 2, None, None, "127.0.0.1", 9, None, "failed", 0, "26"),
        ("connect", 10, None, None, "::1", 80, None, "in_progress", 1, "26"),
        ("bind", 2, "0.0.0.0", 8080, None, None, None, "succeeded", 1, "26"),
        ("accept", 2, None, None, "192.168.0.1", 50000, None, "succeeded", 1, "26"),
        ("accept", None, None, None, None, None, None, "no_client", 0, "26"),
        ("connect", 1, None, None, "@abstract-x", None, "@abstract-x", "failed", 0, "26"),
        ("connect", 1, None, None, "/run/x.sock", None, "/run/x.sock", "succeeded", 1, "26"),
    ]
    assert all(t == "socket_events" and r["path"] == "/usr/bin/curl" and r["pid"] == 4242 for t, r in rows)
    # the caller's ids and parent come from the SYSCALL record; the source adds what /proc knows
    first = rows[0][1]
    assert (first["uid"], first["euid"], first["gid"], first["parent"]) == (1001, 1003, 1002, 4000)
    assert first["timestamp"] == 1700000000.123 and first["time"] == 1700000000
    assert first["process_start_time"] is None and first["community_id"] is None


def test_i386_socketcall_rows_take_fd_from_the_socketcall_record() -> None:
    def socketcall(serial: int, call: int, fd: int, saddr: str, **kw) -> list[tuple[int, str]]:
        return [
            syscall(serial, nr=102, a0=f"{call:x}", arch="40000003", exe='"/opt/i386/nc"', **kw),
            rec(SOCKETCALL, serial, f"nargs=3 a0={fd:x} a1=ffd0 a2=10"),
            rec(SOCKADDR, serial, f"saddr={saddr}"),
            rec(EOE, serial, ""),
        ]

    records = (
        socketcall(1, 3, 11, "020000167F0000010000000000000000", success="no", exit_=-111)  # connect
        + socketcall(2, 2, 12, "02001F90000000000000000000000000")  # bind
        + socketcall(3, 4, 12, "02001F90000000000000000000000000")  # listen: not a socket event
        + socketcall(4, 18, 12, "0200C350C0A800010000000000000000", exit_=5)
    )  # accept4
    rows, builder, _ = assemble(records)
    got = [
        (
            r["action"],
            r["fd"],
            r["local_address"],
            r["local_port"],
            r["remote_address"],
            r["remote_port"],
            r["status"],
            r["path"],
        )
        for _, r in rows
    ]
    assert got == [
        ("connect", "11", None, None, "127.0.0.1", 22, "failed", "/opt/i386/nc"),
        ("bind", "12", "0.0.0.0", 8080, None, None, "succeeded", "/opt/i386/nc"),
        ("accept", "12", None, None, "192.168.0.1", 50000, "succeeded", "/opt/i386/nc"),
    ]
    assert builder.skipped == {"other_syscall": 1}


def test_socket_events_off_skips_socket_calls() -> None:
    rows, builder, _ = assemble(sock_event(1, 42, "020000097F0000010000000000000000"), socket_events=False)
    assert rows == [] and builder.skipped == {"socket_events_off": 1}


def datagram(rtype: int, text: str, *, unicast: bool = True) -> bytes:
    """A record datagram as the kernel sends it (unicast: nlmsg_len counts the payload only)."""
    import struct

    payload = text.encode("latin-1")
    length = len(payload) + (0 if unicast else 16)
    return struct.pack("=IHHII", length, rtype, 0, 0, 0) + payload


def test_source_hot_path_on_datagrams() -> None:
    """AuditSource's datagram reader (no kernel involved): ignored types, bad headers, a full event."""
    from eventsources.audit.source import AuditSource

    rows: list[tuple[str, dict]] = []
    source = AuditSource(lambda t, r: rows.append((t, r)), proc_root="/nonexistent")
    for rtype, text in exec_event(900, f'argc=2 a0="/bin/true" a1={hexs("x y")}'):
        source._feed(datagram(rtype, text))
        source._feed(datagram(1321, "audit(1700000000.123:900): fver=0 fp=0"))  # BPRM_FCAPS: not used
    source._feed(datagram(SYSCALL, "audit(garbage): arch=c000003e"))
    source._feed(datagram(CWD, "no header at all"))
    source._feed(b"\x10\x00")  # shorter than a netlink header
    assert [(t, r["pid"], r["cmdline"], r["cwd"], r["mode"], r["cgroup_path"]) for t, r in rows] == [
        ("process_events", 4242, "/bin/true x y", "/home/a user", "0100755", None)
    ]
    status = source.status()
    assert status.parse_errors == 2 and len(status.extra["parse_error_examples"]) == 2
    assert status.extra["records"] == 7 + 7 + 3
    assert status.extra["ignored_records"] == 1 + 1 + 7 + 1  # PROCTITLE, PATH item 1, 7 BPRM_FCAPS, the short one
    assert status.events_seen == 1 and status.mode == "inactive"
