"""Audit rules as the kernel takes them: ``struct audit_rule_data`` built and read back.

Our rules are ``exit,always`` syscall rules, one per ABI (``arch=b64`` and
``arch=b32``), with a ``pid!=`` field excluding the agent itself and our filter key.
With socket events, ABIs that multiplex socket calls through ``socketcall(2)``
(i386: glibc still uses it there) get two more rules for its bind, connect and
accept calls (``a0``: 2-5, where listen=4 is skipped by the row builder, and 18).
The kernel deletes a rule only when given the same fields, so deleting replays
the bytes we added (or the bytes AUDIT_LIST_RULES returned).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from .syscalls import (
    AUDIT_ARCH_AARCH64,
    AUDIT_ARCH_ARM,
    AUDIT_ARCH_I386,
    AUDIT_ARCH_X86_64,
    SOCKETCALL_CALLS,
    SYSCALL_TABLES,
    syscall_name,
)

__all__ = [
    "ABIS",
    "AUDIT_ARCH_AARCH64",
    "AUDIT_ARCH_ARM",
    "AUDIT_ARCH_I386",
    "AUDIT_ARCH_X86_64",
    "DEFAULT_KEY",
    "EXEC_SYSCALLS",
    "SOCKETCALL_CALLS",
    "SOCKET_SYSCALLS",
    "SYSCALL_TABLES",
    "AuditRule",
    "agent_rules",
    "build_rule",
    "native_abis",
    "parse_rule",
    "syscall_name",
]

DEFAULT_KEY = "zeek-agent"

AUDIT_FILTER_EXIT = 0x04
AUDIT_ALWAYS = 2
AUDIT_MAX_FIELDS = 64
AUDIT_BITMASK_SIZE = 64

# field ids
AUDIT_PID = 0
AUDIT_ARCH = 11
AUDIT_ARG0 = 200
AUDIT_FILTERKEY = 210
# string-valued fields: subj_* 13-17, obj_* 19-23, watch 105, dir 107, exe 112, key 210
_STRING_FIELDS = frozenset({13, 14, 15, 16, 17, 19, 20, 21, 22, 23, 105, 107, 112, AUDIT_FILTERKEY})

# operators (userspace encoding of fieldflags)
AUDIT_EQUAL = 0x40000000
AUDIT_NOT_EQUAL = 0x30000000
AUDIT_LESS_THAN_OR_EQUAL = 0x50000000
AUDIT_GREATER_THAN_OR_EQUAL = 0x60000000

#: machine -> (64-bit ABI, 32-bit compat ABI)
ABIS: dict[str, tuple[int, int]] = {
    "x86_64": (AUDIT_ARCH_X86_64, AUDIT_ARCH_I386),
    "aarch64": (AUDIT_ARCH_AARCH64, AUDIT_ARCH_ARM),
}

EXEC_SYSCALLS = ("execve", "execveat")
SOCKET_SYSCALLS = ("connect", "bind", "accept", "accept4")

_RULE = struct.Struct(f"=3I{AUDIT_BITMASK_SIZE}I{AUDIT_MAX_FIELDS}I{AUDIT_MAX_FIELDS}I{AUDIT_MAX_FIELDS}II")


def native_abis(machine: str | None = None) -> tuple[int, int]:
    """(b64, b32) audit arch values of this machine; ValueError when unsupported."""
    machine = machine or os.uname().machine
    try:
        return ABIS[machine]
    except KeyError:
        raise ValueError(f"audit rules: unsupported machine {machine!r} (known: {sorted(ABIS)})") from None


@dataclass(frozen=True, slots=True)
class AuditRule:
    """A decoded ``struct audit_rule_data``: enough to recognise our rules."""

    flags: int
    action: int
    syscalls: frozenset[int]
    fields: tuple[tuple[int, int, int | str], ...]  # (field id, operator, value or string)
    raw: bytes

    @property
    def key(self) -> str | None:
        for fid, _op, value in self.fields:
            if fid == AUDIT_FILTERKEY:
                return str(value)
        return None

    def field_value(self, fid: int, op: int | None = None) -> int | str | None:
        for f, o, value in self.fields:
            if f == fid and (op is None or o == op):
                return value
        return None


def agent_rules(
    arch: int, *, socket_events: bool, key: str = DEFAULT_KEY, exclude_pid: int | None = None
) -> list[bytes]:
    """The rules the agent installs for one ABI: exec calls, and socket calls when ``socket_events``."""
    rules = [
        build_rule(arch, EXEC_SYSCALLS + (SOCKET_SYSCALLS if socket_events else ()), key=key, exclude_pid=exclude_pid)
    ]
    if socket_events and "socketcall" in SYSCALL_TABLES.get(arch, {}):
        for fields in (
            ((AUDIT_ARG0, AUDIT_GREATER_THAN_OR_EQUAL, 2), (AUDIT_ARG0, AUDIT_LESS_THAN_OR_EQUAL, 5)),
            ((AUDIT_ARG0, AUDIT_EQUAL, 18),),
        ):
            rules.append(build_rule(arch, ("socketcall",), key=key, exclude_pid=exclude_pid, fields=fields))
    return rules


def build_rule(
    arch: int,
    syscalls: list[str] | tuple[str, ...],
    *,
    key: str = DEFAULT_KEY,
    exclude_pid: int | None = None,
    fields: tuple[tuple[int, int, int], ...] = (),
) -> bytes:
    """``-a exit,always -F arch=ARCH -S ... [-F FIELD OP VALUE ...] [-F pid!=PID] -k KEY`` as rule bytes."""
    table = SYSCALL_TABLES.get(arch)
    if table is None:
        raise ValueError(f"audit rules: no syscall table for arch 0x{arch:08x}")
    mask = [0] * AUDIT_BITMASK_SIZE
    numbers = [table[s] for s in syscalls if s in table]
    if not numbers:
        raise ValueError(f"audit rules: none of {list(syscalls)} exists for arch 0x{arch:08x}")
    for nr in numbers:
        mask[nr // 32] |= 1 << (nr % 32)
    fids, values, ops = [AUDIT_ARCH], [arch], [AUDIT_EQUAL]
    for fid, op, value in fields:
        fids.append(fid)
        values.append(value)
        ops.append(op)
    if exclude_pid is not None:
        fids.append(AUDIT_PID)
        values.append(exclude_pid)
        ops.append(AUDIT_NOT_EQUAL)
    key_bytes = key.encode()
    fids.append(AUDIT_FILTERKEY)
    values.append(len(key_bytes))
    ops.append(AUDIT_EQUAL)
    pad = [0] * (AUDIT_MAX_FIELDS - len(fids))
    return (
        _RULE.pack(
            AUDIT_FILTER_EXIT, AUDIT_ALWAYS, len(fids), *mask, *fids, *pad, *values, *pad, *ops, *pad, len(key_bytes)
        )
        + key_bytes
    )


def parse_rule(raw: bytes) -> AuditRule:
    """Decode rule bytes from AUDIT_LIST_RULES; ValueError when too short."""
    if len(raw) < _RULE.size:
        raise ValueError(f"audit rule: {len(raw)} bytes, need at least {_RULE.size}")
    v = _RULE.unpack_from(raw)
    flags, action, count = v[0], v[1], v[2]
    mask = v[3 : 3 + AUDIT_BITMASK_SIZE]
    base = 3 + AUDIT_BITMASK_SIZE
    fids = v[base : base + AUDIT_MAX_FIELDS]
    values = v[base + AUDIT_MAX_FIELDS : base + 2 * AUDIT_MAX_FIELDS]
    ops = v[base + 2 * AUDIT_MAX_FIELDS : base + 3 * AUDIT_MAX_FIELDS]
    buflen = v[-1]
    buf = raw[_RULE.size : _RULE.size + buflen]
    syscalls = frozenset(i * 32 + b for i, word in enumerate(mask) for b in range(32) if word >> b & 1)
    decoded: list[tuple[int, int, int | str]] = []
    pos = 0
    for i in range(min(count, AUDIT_MAX_FIELDS)):
        fid, value, op = fids[i], values[i], ops[i]
        if fid in _STRING_FIELDS:
            decoded.append((fid, op, buf[pos : pos + value].decode("utf-8", "replace")))
            pos += value
        else:
            decoded.append((fid, op, value))
    return AuditRule(flags, action, syscalls, tuple(decoded), raw[: _RULE.size + buflen])
