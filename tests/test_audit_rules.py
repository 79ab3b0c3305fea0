"""Audit rule bytes (struct audit_rule_data) and the netlink codec, pure."""

from __future__ import annotations

import struct

import pytest

from eventsources.audit.netlink import AuditStatus, pack_message, parse_control_datagram
from eventsources.audit.rules import (
    AUDIT_ARCH,
    AUDIT_ARCH_I386,
    AUDIT_ARCH_X86_64,
    AUDIT_EQUAL,
    AUDIT_FILTERKEY,
    AUDIT_NOT_EQUAL,
    AUDIT_PID,
    agent_rules,
    build_rule,
    native_abis,
    parse_rule,
    syscall_name,
)


def test_rule_round_trip() -> None:
    raw = build_rule(AUDIT_ARCH_X86_64, ("execve", "execveat", "connect"), key="zeek-agent", exclude_pid=1234)
    assert len(raw) == 1040 + len("zeek-agent")
    rule = parse_rule(raw)
    assert (rule.flags, rule.action) == (0x04, 2)  # exit list, always
    assert rule.syscalls == {59, 322, 42}
    assert rule.fields == (
        (AUDIT_ARCH, AUDIT_EQUAL, AUDIT_ARCH_X86_64),
        (AUDIT_PID, AUDIT_NOT_EQUAL, 1234),
        (AUDIT_FILTERKEY, AUDIT_EQUAL, "zeek-agent"),
    )
    assert rule.key == "zeek-agent" and rule.raw == raw


def test_rule_32bit_numbers_and_missing_syscalls() -> None:
    rule = parse_rule(build_rule(AUDIT_ARCH_I386, ("execve", "execveat", "connect", "bind", "accept", "accept4")))
    assert rule.syscalls == {11, 358, 362, 361, 364}  # i386 has no plain accept syscall (socketcall)
    with pytest.raises(ValueError, match="none of"):
        build_rule(AUDIT_ARCH_I386, ("accept",))
    with pytest.raises(ValueError, match="no syscall table"):
        build_rule(0x1234, ("execve",))
    with pytest.raises(ValueError, match="at least"):
        parse_rule(b"\0" * 100)


def test_agent_rules_add_socketcall_on_i386_only_with_socket_events() -> None:
    assert [parse_rule(r).syscalls for r in agent_rules(AUDIT_ARCH_I386, socket_events=False)] == [{11, 358}]
    assert len(agent_rules(AUDIT_ARCH_X86_64, socket_events=True)) == 1  # no socketcall on x86_64
    rules = [parse_rule(r) for r in agent_rules(AUDIT_ARCH_I386, socket_events=True, key="k", exclude_pid=7)]
    assert [r.syscalls for r in rules] == [{11, 358, 362, 361, 364}, {102}, {102}]
    a0 = 200  # AUDIT_ARG0
    assert [r.fields for r in rules[1:]] == [
        (
            (AUDIT_ARCH, AUDIT_EQUAL, AUDIT_ARCH_I386),
            (a0, 0x60000000, 2),
            (a0, 0x50000000, 5),  # 2 <= a0 <= 5
            (AUDIT_PID, AUDIT_NOT_EQUAL, 7),
            (AUDIT_FILTERKEY, AUDIT_EQUAL, "k"),
        ),
        (
            (AUDIT_ARCH, AUDIT_EQUAL, AUDIT_ARCH_I386),
            (a0, AUDIT_EQUAL, 18),  # accept4
            (AUDIT_PID, AUDIT_NOT_EQUAL, 7),
            (AUDIT_FILTERKEY, AUDIT_EQUAL, "k"),
        ),
    ]


def test_syscall_names_per_abi() -> None:
    assert syscall_name(AUDIT_ARCH_X86_64, 59) == "execve"
    assert syscall_name(AUDIT_ARCH_I386, 11) == "execve"
    assert syscall_name(AUDIT_ARCH_I386, 59) is None
    assert syscall_name(0xDEAD, 1) is None
    assert native_abis("x86_64") == (AUDIT_ARCH_X86_64, AUDIT_ARCH_I386)
    with pytest.raises(ValueError, match="unsupported machine"):
        native_abis("sparc64")


def test_netlink_codec() -> None:
    msg = pack_message(1000, b"abc", seq=7)
    assert len(msg) == 20 and struct.unpack_from("=IHHII", msg) == (19, 1000, 5, 7, 0)
    ack = struct.pack("=IHHII", 36, 2, 0, 7, 0) + struct.pack("=i", 0) + msg[:16]
    record = struct.pack("=IHHII", 5, 1300, 0, 0, 0) + b"audit(1.0:1): x=1"  # unicast: length without header
    assert parse_control_datagram(ack + record) == [(2, 0, 7, ack[16:]), (1300, 0, 0, b"audit(1.0:1): x=1")]


def test_status_pads_short_replies() -> None:
    short = struct.pack("=8I", 0, 1, 1, 99, 0, 64, 3, 0)  # a 32-byte status from an old kernel
    st = AuditStatus.unpack(short)
    assert (st.enabled, st.pid, st.backlog_limit, st.lost, st.backlog_wait_time) == (1, 99, 64, 3, 0)
    assert AuditStatus.unpack(st.pack()) == st
