"""Audit record parsing, reassembly and row building, on record text the tests write."""

from __future__ import annotations

import pytest

from eventsources.audit.reassemble import Reassembler
from eventsources.audit.records import (
    CWD,
    CWD_LAYOUT,
    EOE,
    EXECVE,
    PATH,
    PATH_LAYOUT,
    PROCTITLE,
    SADDR_LAYOUT,
    SOCKADDR,
    SOCKETCALL,
    SYSCALL,
    SYSCALL_LAYOUT,
    Damage,
    InterpretedFormatError,
    Layout,
    Record,
    RecordError,
    SockAddr,
    decode_sockaddr,
    decode_untrusted,
    execve_args,
    parse_fields,
    parse_line,
    parse_message,
    read_hex,
    read_untrusted,
    scan_fields,
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


def test_fields_read_one_by_one_as_auparse_does() -> None:
    """Split at spaces; a user message's fields are the record's own; quoted values never span a space."""
    fields, damage = scan_fields('pid=1 msg=\'op=login acct="root" res=success\' junk a="b c" z=')
    assert fields == {"pid": "1", "op": "login", "acct": '"root"', "res": "success", "a": '"b"', "z": ""}
    assert damage == (
        Damage(None, "text that is not a field: 'junk'"),
        Damage("a", "no closing quote (the record is cut short?)"),
        Damage(None, "text that is not a field: 'c\"'"),
    )
    assert parse_fields("arch=c000003e syscall=59") == {"arch": "c000003e", "syscall": "59"}


# go-libaudit's audit-ubuntu17 sample ends its SYSCALL record with a stray quote after the hex key
UBUNTU17_KEY = 'key=65786563013634626974"'


def test_stray_quote_loses_only_what_is_unreadable() -> None:
    body = f'arch=c000003e syscall=59 success=yes exit=0 pid=27854 comm="grep" exe="/bin/grep" {UBUNTU17_KEY}'
    fields, damage = scan_fields(body)
    assert fields["exe"] == '"/bin/grep"' and fields["pid"] == "27854"
    assert fields["key"] == "65786563013634626974"  # the readable hex: "exec\x0164bit"
    assert damage == (Damage("key", "stray quote in '65786563013634626974\"'"),)


def test_text_after_a_closing_quote_does_not_leak_into_the_value() -> None:
    fields, damage = scan_fields('argc=3 a0="docker" a1="inspect" a2="721df12151a7"\' a3=x')
    assert fields == {"argc": "3", "a0": '"docker"', "a1": '"inspect"', "a2": '"721df12151a7"', "a3": "x"}
    assert damage == (Damage("a2", 'text after the closing quote: "\'"'),)
    assert execve_args([parse_message(EXECVE, 'audit(1.0:1): argc=3 a0="docker" a1="inspect" a2="721df12151a7"\'')])[
        0
    ] == ["docker", "inspect", "721df12151a7"]


def test_repeated_fields_and_unprintable_bytes_are_damage() -> None:
    # a cut record followed by the next record on the same line repeats fields
    fields, damage = scan_fields('argc=2 a0="ls" a1="/etc/patype=SYSCALL argc=9 a0="x"')
    assert fields["argc"] == "2" and fields["a0"] == '"ls"'
    assert [d.field for d in damage] == ["a1", "argc", "a0"]
    fields, damage = scan_fields("pid=12\x00\x00 uid=0 cwd=\ufffd")
    assert fields == {"pid": "12\x00\x00", "uid": "0", "cwd": "\ufffd"}
    assert [d.field for d in damage] == ["pid", "cwd"] and "unprintable" in damage[0].what


def test_record_damage_is_parsed_lazily_and_names_a_cut_line() -> None:
    rec = parse_line('type=CWD msg=audit(1.5:7): cwd="/ro', lineno=12, cut=True)
    assert rec._fields is None  # nothing parsed yet
    assert rec.damage == (
        Damage(None, "the line ends without a newline (cut short)"),
        Damage("cwd", "no closing quote (the record is cut short?)"),
    )
    assert (rec.name, rec.lineno, rec.event_id) == ("CWD", 12, "1.500:7")


@pytest.mark.parametrize(
    ("value", "data", "problem"),
    [
        ("414243", b"ABC", None),
        ("41424", b"AB", "odd number of hex digits (5: cut short?)"),
        ("4142ZZ", b"AB", "not hex after 4 digits: 'ZZ'"),
        ("", b"", None),
    ],
)
def test_read_hex_keeps_the_readable_prefix(value: str, data: bytes, problem: str | None) -> None:
    assert read_hex(value) == (data, problem)


def test_read_untrusted_names_what_it_could_not_read() -> None:
    assert read_untrusted('"/bin/true"') == ("/bin/true", None)
    assert read_untrusted(hexs("/tmp/a b")[:-1]) == ("/tmp/a ", "odd number of hex digits (15: cut short?)")
    assert read_untrusted("plain-word") == ("plain-word", "neither quoted nor hex: 'plain-word'")
    assert read_untrusted("(null)") == (None, None)


def test_untrusted_values_decoded_by_form() -> None:
    assert decode_untrusted('"/bin/true"') == "/bin/true"
    assert decode_untrusted(hexs("hello world")) == "hello world"
    assert decode_untrusted(hexs("grüße")) == "grüße"
    assert decode_untrusted(hexs(b"\xff\xfeok")) == "\udcff\udcfeok"  # bytes that are not UTF-8 kept (surrogateescape)
    assert decode_untrusted("(null)") is None
    assert decode_untrusted(None) is None
    assert decode_untrusted("not-hex") == "not-hex"


def test_execve_split_argument_across_records() -> None:
    long_arg = ("0123456789" * 900).encode()  # 9,000 bytes -> 18,000 hex chars in chunks
    h = hexs(long_arg)
    r1 = parse_message(EXECVE, f'audit(1.0:9): argc=4 a0="/bin/true" a1={hexs("a b")} a2_len={len(h)} a2[0]={h[:7000]}')
    r2 = parse_message(EXECVE, f"audit(1.0:9): a2[1]={h[7000:14000]}")
    r3 = parse_message(EXECVE, f'audit(1.0:9): a2[2]={h[14000:]} a3="z"')
    argv, argc, damage = execve_args([r1, r2, r3])
    assert argc == 4 and damage == []
    assert argv == ["/bin/true", "a b", long_arg.decode(), "z"]


def test_execve_split_argument_with_quoted_chunks() -> None:
    # an argument that needs no encoding may be split in "quoted" chunks; a bad chunk loses only what it holds
    r = parse_message(
        EXECVE,
        'audit(1.0:9): argc=4 a0="ls" a1_len=12 a1[0]="abcdef" a1[1]="ghijkl" a2="-l" a3_len=4 a3[0]=ZZ a3[1]="ab"',
    )
    assert execve_args([r]) == (
        ["ls", "abcdefghijkl", "-l", "ab"],
        4,
        [(r, Damage("a3[0]", "not hex after 0 digits: 'ZZ'"))],
    )


def test_execve_args_sorted_numerically_beyond_ten() -> None:
    body = "argc=12 " + " ".join(f'a{i}="x{i}"' for i in range(12))
    argv, _, _ = execve_args([parse_message(EXECVE, f"audit(1.0:9): {body}")])
    assert argv == [f"x{i}" for i in range(12)]


def test_execve_multibyte_char_split_between_chunks() -> None:
    h = hexs("é")  # C3A9: split in the middle of the character
    r = parse_message(EXECVE, f"audit(1.0:9): argc=1 a0_len=4 a0[0]={h[:2]} a0[1]={h[2:]}")
    assert execve_args([r]) == (["é"], 1, [])


def test_execve_damage_odd_hex_length_mismatch_and_missing_chunks() -> None:
    h = hexs("/usr/share/doc/a-long-name")
    cut = parse_message(EXECVE, f'audit(1.0:9): argc=2 a0="cat" a1={h[:9]}')  # the line was cut inside a1
    argv, _, damage = execve_args([cut])
    assert argv == ["cat", "/usr"] and damage == [(cut, Damage("a1", "odd number of hex digits (9: cut short?)"))]
    # aN_len says more than the chunks hold: the record with the rest was lost
    first = parse_message(EXECVE, f"audit(1.0:9): argc=1 a0_len={len(h)} a0[0]={h[:20]}")
    argv, _, damage = execve_args([first])
    assert argv == ["/usr/share"]
    assert damage == [(first, Damage("a0", f"a0_len={len(h)} but 20 characters were logged (cut short?)"))]
    # a chunk in the middle missing, and no aN_len at all
    gap = parse_message(EXECVE, f"audit(1.0:9): argc=1 a0[0]={h[:4]} a0[2]={h[8:12]}")
    argv, _, damage = execve_args([gap])
    assert argv == ["/u" + "/s"]
    assert [d.field for _, d in damage] == ["a0[1]", "a0_len"]
    # the kernel gives an argument of 7,500 bytes or more its length in bytes, not hex digits
    big = ("é" * 4000).encode()
    r = parse_message(
        EXECVE, f"audit(1.0:9): argc=1 a0_len={len(big)} a0[0]={hexs(big[:5000])} a0[1]={hexs(big[5000:])}"
    )
    assert execve_args([r]) == (["é" * 4000], 1, [])


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


def test_sockaddr_family_in_the_abis_byte_order() -> None:
    # ppc64 and s390x write sa_family big-endian; the port and address are network order everywhere
    assert decode_sockaddr("00021F900A0102030000000000000000", big_endian=True) == SockAddr(2, "10.1.2.3", 8080)
    assert decode_sockaddr("000A0050" + "00" * 4 + "00" * 15 + "01" + "00" * 4, big_endian=True) == SockAddr(
        10, "::1", 80
    )
    assert decode_sockaddr("0001" + hexs("/run/s") + "00", big_endian=True) == SockAddr(1, path="/run/s")


def test_parse_line_variants() -> None:
    plain = parse_line('type=CWD msg=audit(1700000000.5:77): cwd="/root"\n')
    assert (plain.type, plain.serial, plain.fields["cwd"]) == (CWD, 77, '"/root"')
    node = parse_line("node=web-1 type=SYSCALL msg=audit(1700000000.5:78): arch=40000003 syscall=11")
    assert (node.type, node.serial, node.node) == (SYSCALL, 78, "web-1")
    assert plain.node is None
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


def test_interpreted_ausearch_output_is_recognised() -> None:
    line = (
        "type=SYSCALL msg=audit(11/14/2023 10:22:01.123:456) : arch=x86_64 syscall=execve success=yes exit=0 "
        "a0=0x55d a1=0x55e a2=0x55f a3=0x0 items=2 ppid=900 pid=901 auid=alice uid=alice comm=ls exe=/usr/bin/ls"
    )
    with pytest.raises(InterpretedFormatError, match="raw format"):
        parse_line(line)


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
    records = [rec(SYSCALL, 500, "arch=zz syscall=59 pid=1"), rec(EOE, 500, "")]
    records += [rec(SYSCALL, 501, "arch=c000003e syscall=59"), rec(EOE, 501, "")]  # no pid
    rows, builder, _ = assemble(records)
    assert rows == [] and builder.malformed == 2 and builder.skipped == {"malformed": 2}
    assert builder.examples == [
        "SYSCALL record of event 1700000000.123:500: arch: unreadable: 'zz'",
        "SYSCALL record of event 1700000000.123:501: pid: unreadable: None",
    ]


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
    # a port the records do not name is 0, as osquery's socket_events gives it; addresses stay NULL
    assert got == [
        ("connect", 2, None, 0, "127.0.0.1", 9, None, "failed", 0, "26"),
        ("connect", 10, None, 0, "::1", 80, None, "in_progress", 1, "26"),
        ("bind", 2, "0.0.0.0", 8080, None, 0, None, "succeeded", 1, "26"),
        ("accept", 2, None, 0, "192.168.0.1", 50000, None, "succeeded", 1, "26"),
        ("accept", None, None, 0, None, 0, None, "no_client", 0, "26"),
        ("connect", 1, None, 0, "@abstract-x", 0, "@abstract-x", "failed", 0, "26"),
        ("connect", 1, None, 0, "/run/x.sock", 0, "/run/x.sock", "succeeded", 1, "26"),
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
        ("connect", "11", None, 0, "127.0.0.1", 22, "failed", "/opt/i386/nc"),
        ("bind", "12", "0.0.0.0", 8080, None, 0, "succeeded", "/opt/i386/nc"),
        ("accept", "12", None, 0, "192.168.0.1", 50000, "succeeded", "/opt/i386/nc"),
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


# -- events keyed on node, timestamp and serial ----------------------------------------------
def test_same_serial_on_two_hosts_is_two_events() -> None:
    """A log aggregated from several hosts: node=a and node=b both have serial 77 at the same time."""
    reasm = Reassembler(timeout=60, end_on_proctitle=True)
    builder = RowBuilder()
    lines = [
        "node=a type=SYSCALL msg=audit(1700000000.100:77): arch=c000003e syscall=59 success=yes exit=0 a0=1 ppid=1 "
        'pid=100 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 exe="/usr/bin/id"',
        "node=b type=SYSCALL msg=audit(1700000000.100:77): arch=c000003e syscall=59 success=yes exit=0 a0=1 ppid=1 "
        'pid=200 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 exe="/usr/bin/ls"',
        'node=b type=EXECVE msg=audit(1700000000.100:77): argc=2 a0="ls" a1="-l"',
        'node=a type=EXECVE msg=audit(1700000000.100:77): argc=1 a0="id"',
        'node=a type=PROCTITLE msg=audit(1700000000.100:77): proctitle="id"',
        "node=b type=PROCTITLE msg=audit(1700000000.100:77): proctitle=6C73002D6C",
    ]
    rows = []
    for line in lines:
        event = reasm.push(parse_line(line), 0.0)
        if event is not None:
            rows.append((event.node, builder.build(event)))
    assert [(node, r[1]["pid"], r[1]["path"], r[1]["cmdline"]) for node, r in rows if r] == [
        ("a", 100, "/usr/bin/id", "id"),
        ("b", 200, "/usr/bin/ls", "ls -l"),
    ]


def test_same_serial_at_another_time_is_another_event() -> None:
    """Serials start again after a reboot: the timestamp tells the events apart."""
    reasm = Reassembler(timeout=60)
    reasm.push(parse_message(*syscall(5)), 0.0)
    reasm.push(parse_message(SYSCALL, "audit(1800000000.000:5): arch=c000003e syscall=59 pid=9"), 0.0)
    assert len(reasm) == 2
    (event,) = [e for e in reasm.flush() if e.ts == 1800000000.0]
    assert len(event.records) == 1


def test_reversed_record_order_as_ausearch_prints_it() -> None:
    """ausearch prints PROCTITLE first and SYSCALL last: the event ends at whichever of the two comes second."""
    reasm = Reassembler(timeout=60, end_on_proctitle=True)
    records = [r for r in exec_event(700, f'argc=2 a0="/bin/true" a1={hexs("x y")}') if r[0] != EOE][::-1]
    ended = [reasm.push(parse_message(rtype, text), 0.0) for rtype, text in records]
    assert ended[:-1] == [None] * (len(records) - 1)
    event = ended[-1]
    assert event is not None and event.complete and len(event.records) == len(records)
    ((table, row),) = [RowBuilder().build(event)]
    assert (table, row["cmdline"], row["cwd"], row["mode"]) == (
        "process_events",
        "/bin/true x y",
        "/home/a user",
        "0100755",
    )


def test_boundary_ends_every_open_event() -> None:
    reasm = Reassembler(timeout=60, end_on_proctitle=True)
    reasm.push(parse_message(*syscall(1)), 0.0)
    reasm.push(parse_message(*rec(CWD, 2, 'cwd="/"')), 0.0)
    events = reasm.boundary()
    assert [(e.serial, e.complete) for e in events] == [(1, True), (2, True)]
    assert len(reasm) == 0 and reasm.completed == 2 and reasm.timed_out == 0


# -- damage reaches the rows as overflows, and the counts as named problems ------------------
def test_damaged_records_mark_the_row_and_are_named() -> None:
    h = hexs("/etc/passwd")
    records = [
        syscall(800, exe=f"{hexs('/usr/bin/cat')}'"),  # stray quote after the hex of exe
        rec(EXECVE, 800, f'argc=2 a0="cat" a1={h[:-3]}'),  # odd hex: the record was cut inside a1
        rec(CWD, 800, 'cwd="/root"'),
        rec(PATH, 800, 'item=0 name="/usr/bin/cat" inode=1 dev=fe:00 mode=0100755 ouid=0 ogid=0'),
        rec(EOE, 800, ""),
    ]
    problems: list = []
    builder = RowBuilder(on_problem=problems.append)
    reasm = Reassembler()
    (event,) = [e for e in (reasm.push(parse_message(*r), 0.0) for r in records) if e is not None]
    _table, row = builder.build(event)
    assert (row["path"], row["cmdline"], row["cwd"]) == ("/usr/bin/cat", "cat /etc/pass", "/root")
    assert row["overflows"] == "cmdline,syscall"
    assert builder.malformed == 2
    assert [str(p) for p in problems] == [
        'SYSCALL record of event 1700000000.123:800: exe: stray quote in "2F7573722F62696E2F636174\'"',
        "EXECVE record of event 1700000000.123:800: a1: odd number of hex digits (19: cut short?)",
    ]


def test_damage_in_a_field_no_row_reads_counts_but_leaves_the_row_whole() -> None:
    records = [
        (t, x.replace('key="zeek-agent"', 'key=65786563013634626974"')) for t, x in exec_event(801, 'argc=1 a0="x"')
    ]
    rows, builder, _ = assemble(records)
    ((_, row),) = rows
    assert row["overflows"] == "" and row["cmdline"] == "x"
    assert builder.malformed == 1 and "key: stray quote" in builder.examples[0]


def test_bad_sockaddr_is_named_as_a_sockaddr_problem() -> None:
    records = sock_event(9, 42, "02000050C0A8")  # AF_INET cut after 6 bytes
    rows, builder, _ = assemble(records)
    ((_, row),) = rows
    assert (row["action"], row["remote_address"], row["overflows"]) == ("connect", None, "sockaddr")
    assert builder.examples == [
        "SOCKADDR record of event 1700000000.123:9: saddr: AF_INET sockaddr too short: '02000050C0A8'"
    ]


# -- linear work -----------------------------------------------------------------------------
def _string_work(line: str) -> int:
    """Characters of the new strings the record parser binds, plus those of strings handed to its calls.

    A deterministic stand-in for its running time: re-joining a growing value on each of n
    pieces (quadratic) shows as ~n^2/2 characters, reading each piece once as ~n.  Traced
    with sys.settrace over every frame of records.py.
    """
    import sys

    import eventsources.audit.records as records

    total = 0
    target = records.__file__

    def local(frame, event, _arg):
        nonlocal total
        code = frame.f_code
        nargs = code.co_argcount + code.co_kwonlyargcount
        seen = seen_by_frame.setdefault(id(frame), {})
        for name, value in frame.f_locals.items():
            if not isinstance(value, (str, bytes)):
                continue
            if name in code.co_varnames[:nargs]:
                if event == "call":
                    total += len(value)  # a call handed a long string counts it once
                continue
            if seen.get(name) is not value:
                seen[name] = value
                total += len(value)
        return local

    seen_by_frame: dict[int, dict[str, object]] = {}

    def calls(frame, event, _arg):
        if frame.f_code.co_filename == target:
            local(frame, "call", None)
            return local
        return None

    sys.settrace(calls)
    try:
        rec_ = parse_line(line)
        assert rec_.damage is not None  # parses the fields
        execve_args([rec_])
    finally:
        sys.settrace(None)
    return total


SHAPES = {
    "quoted value with many spaces": lambda k: 'a0="' + "x " * k + '"',
    "many small fields": lambda k: "a=b " * k,
    "one long hex value": lambda k: "a0=" + "41" * k,
    "quotes and spaces": lambda k: 'a0="' + '" ' * k,
    "a message in single quotes": lambda k: "msg='" + "op=x " * k + "'",
    "many chunks of one argument": lambda k: f"a0_len={k} " + " ".join(f"a0[{i}]=41" for i in range(k // 8)),
    "equals signs": lambda k: "a=" + "=" * k,
    "stray quotes in bare values": lambda k: 'a="b"c"d ' * (k // 8),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_parsing_work_is_linear_in_the_line_length(shape: str) -> None:
    """Four times the line, four times the work (a quadratic parser would do sixteen times)."""
    small, large = (f"type=EXECVE msg=audit(1.0:1): {SHAPES[shape](k)}\n" for k in (2_000, 8_000))
    w_small, w_large = _string_work(small), _string_work(large)
    assert w_large <= 5 * w_small, (shape, w_small, w_large)
    assert w_large <= 40 * len(large), (shape, w_large, len(large))


# -- layouts: the kernel's usual text matched whole reads exactly what the field reader reads ------
KERNEL_SYSCALL = (
    "arch=c000003e syscall=59 success=yes exit=0 a0=7f9995896690 a1=7f99958970f0 a2=7f9995b2cb70 a3=8 items=2 "
    f"ppid=29454 pid=29467 {IDS} tty=(none) ses=4294967295 "
    'comm="true" exe="/usr/bin/true" key="zeek-agent"'
)
KERNEL_PATH = (
    'item=0 name="/bin/true" inode=260958 dev=fe:00 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL '
    "cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0"
)
LAYOUT_BODIES = {
    SYSCALL_LAYOUT: [
        KERNEL_SYSCALL,
        KERNEL_SYSCALL.replace(" success=yes exit=0", ""),  # no return value (a record written on entry)
        KERNEL_SYSCALL.replace("syscall=59", "syscall=59 per=400000"),  # a personality
        KERNEL_SYSCALL.replace(' key="zeek-agent"', ' subj=unconfined key="zeek-agent"'),  # an LSM
        KERNEL_SYSCALL.replace(' key="zeek-agent"', " subj=system_u:system_r:unconfined_t:s0 key=(null)"),
        KERNEL_SYSCALL + " newfield=1 other=x",  # a newer kernel's fields at the end
        KERNEL_SYSCALL + " pid=7",  # two records run together: pid twice
        KERNEL_SYSCALL + " newfield=1 newfield=2",
        KERNEL_SYSCALL.replace('exe="/usr/bin/true"', f"exe={hexs('/tmp/a b')}"),
        KERNEL_SYSCALL.replace('exe="/usr/bin/true"', "exe=(null)"),
        KERNEL_SYSCALL.replace('exe="/usr/bin/true"', 'exe="/usr/bin/true'),  # cut quote
        KERNEL_SYSCALL.replace('key="zeek-agent"', 'key=65786563"'),  # stray quote
        KERNEL_SYSCALL.replace("pid=29467", "pid=29\x01467"),  # unprintable
        KERNEL_SYSCALL.replace("uid=0 gid=0", "gid=0 uid=0"),  # another order
        KERNEL_SYSCALL.replace(" ppid=29454", ""),  # a field missing
        KERNEL_SYSCALL.replace("  ", " ").replace(" tty=", "  tty="),  # two spaces
        KERNEL_SYSCALL.replace("arch=c000003e", "arch=zz"),
        KERNEL_SYSCALL[:200],  # cut short
        "",
    ],
    PATH_LAYOUT: [
        KERNEL_PATH,
        KERNEL_PATH.replace(" cap_frootid=0", ""),  # older kernels
        KERNEL_PATH.replace(" cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0", ""),
        KERNEL_PATH.replace(" nametype", " obj=system_u:object_r:bin_t:s0 nametype"),
        'item=0 name="/nonexistent" nametype=UNKNOWN cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0',
        KERNEL_PATH + " mode=0100644",  # repeated
        KERNEL_PATH.replace('name="/bin/true"', 'name="/bin/tr"ue"'),
        KERNEL_PATH.replace("item=0", "item=1"),
    ],
    CWD_LAYOUT: ['cwd="/root"', f"cwd={hexs('/home/a user')}", "cwd=(null)", 'cwd="/ro', "cwd=/x y", 'cwd="a" cwd="b"'],
    SADDR_LAYOUT: ["saddr=020000097F0000010000000000000000", "saddr=0200 x=1", "saddr=02'00", 'saddr="x"'],
}


def _check_layout(layout: Layout, body: str, rtype: int = SYSCALL) -> bool:
    fields, damage = scan_fields(body)
    rec_ = Record(rtype, 1.0, 1, body)
    assert layout.values(rec_) == tuple(fields.get(name) for name in layout.names), body
    if rec_.checked and rec_._fields is None:  # matched whole: known undamaged without a field-by-field read
        assert damage == (), body
    assert rec_.damage == damage, body
    return rec_._fields is None


def test_layouts_read_exactly_what_the_field_reader_reads() -> None:
    matched = [body for layout, bodies in LAYOUT_BODIES.items() for body in bodies if _check_layout(layout, body)]
    assert KERNEL_SYSCALL in matched and KERNEL_PATH in matched and 'cwd="/root"' in matched
    assert KERNEL_SYSCALL + " pid=7" not in matched and KERNEL_PATH + " mode=0100644" not in matched


def test_layouts_on_mutated_kernel_text() -> None:
    """Random damage to the kernel's text: whatever a layout accepts, the field reader reads alike."""
    import random

    rng = random.Random(8)
    pieces = [" ", '"', "'", "=", "\x01", "é", "\ufffd", "a=", " a0=", " pid=1", "(", ")", "x"]
    matched = 0
    for layout, body in [(SYSCALL_LAYOUT, KERNEL_SYSCALL), (PATH_LAYOUT, KERNEL_PATH), (CWD_LAYOUT, 'cwd="/r"')]:
        for _ in range(600):
            text = body
            for _ in range(rng.randint(1, 3)):
                at = rng.randrange(len(text) + 1)
                if rng.random() < 0.3:
                    text = text[:at] + text[at + rng.randint(1, 5) :]
                else:
                    text = text[:at] + rng.choice(pieces) + text[at:]
            matched += _check_layout(layout, text)
    assert matched > 50  # many mutations keep the text clean (a changed value), and those are matched whole


EXECVE_BODIES = [
    'argc=3 a0="/bin/true" a1="x" a2=""',
    f'argc=2 a0="ls" a1={hexs("a b")}',
    "argc=1 a0=FFFE",  # not UTF-8
    'argc=3 a0="ls" a1="x"',  # fewer arguments than argc
    'argc=1 a0="ls" a1="x"',  # more
    'argc=2 a1="x" a0="ls"',  # another order
    'argc=2 a0="ls" a0="x"',  # twice
    f'argc=2 a0="cat" a1={hexs("/etc/passwd")[:-3]}',  # odd hex: cut inside a1
    'argc=2 a0="ls" a1="x',
    "argc=x a0=1",
    'argc=²  a0="x"',
    "argc=12 " + " ".join(f'a{i}="x{i}"' for i in range(12)),
    "argc=100 " + " ".join(f'a{i}="{i}"' for i in range(100)),  # more than a layout is made for
    'argc=2 a0="ls" a1_len=4 a1[0]=6162 a1[1]=6364',
    "argc=0",
]


@pytest.mark.parametrize("body", EXECVE_BODIES)
def test_execve_whole_record_reads_like_the_field_reader(body: str) -> None:
    from eventsources.audit.records import _read_execve

    whole, by_field = Record(EXECVE, 1.0, 1, body), Record(EXECVE, 1.0, 1, body)
    assert execve_args([whole]) == _read_execve([by_field])._replace(
        damage=[(whole, d) for _, d in _read_execve([by_field]).damage]
    )
    assert whole.damage == by_field.damage


def test_source_keeps_to_a_cpu_budget_lean_rows_then_shed_events(tmp_path) -> None:
    """Under a budget the source makes rows without /proc reads, then drops new events unread; all counted.

    The source's clocks are the test's: each read (tick, datagrams, tock) costs what the test says.
    """
    from eventsources.audit.source import AuditSource

    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "cgroup").write_text(f"0::/system.slice/docker-{'ab' * 32}.scope\n")
    now, cpu = [0.0], [0.0]
    rows: list[dict] = []
    source = AuditSource(
        lambda t, r: rows.append(r), proc_root=str(tmp_path), clock=lambda: now[0], cpu_clock=lambda: cpu[0]
    )

    def read(datagrams: list[bytes], cost: float) -> None:
        source._tick()
        source._feed_many(datagrams)
        cpu[0] += cost
        source._tock()

    def event(serial: int) -> list[bytes]:
        return [datagram(rtype, text) for rtype, text in exec_event(serial, f'argc=1 a0="e{serial}"')]

    read(event(1), 0.001)  # no budget: the whole row
    assert rows[-1]["cmdline"] == "e1" and rows[-1]["container_id"] == "ab" * 32
    source.set_cpu_budget(0.01)  # 1 % of a core: the bucket starts with 0.01 s
    read(event(2), 0.02)  # still whole (the bucket held time), and 0.01 s in debt after it
    assert rows[-1]["cmdline"] == "e2" and rows[-1]["cgroup_path"] is not None
    c, d = event(3), event(4)
    read(c[:3] + d, 0.0001)  # 0.01 s in debt: new events are dropped unread, even one split over two reads
    now[0] += 0.7  # 0.007 s back: out of the shedding debt, still lean
    read(c[3:] + event(5), 0.0001)
    assert [r["cmdline"] for r in rows] == ["e1", "e2", "e5"]
    lean = rows[-1]
    assert (lean["cgroup_path"], lean["container_id"], lean["atime"], lean["mtime"], lean["ctime"]) == (None,) * 5
    assert list(lean) == list(rows[0])  # the same columns in the same order, NULL
    status = source.status()
    assert (status.shed, status.degraded, status.events_seen) == (2, 1, 3)
    assert status.extra["cpu_budget"] == 0.01 and "CPU budget 1.0% of a core" in status.detail
    assert status.cpu_seconds == pytest.approx(0.0212)
    source.set_cpu_budget(None)
    read(event(6), 0.1)
    assert rows[-1]["cmdline"] == "e6" and rows[-1]["cgroup_path"] is not None
    assert source.status().extra["cpu_budget"] is None and len(source._dropping) == 0
