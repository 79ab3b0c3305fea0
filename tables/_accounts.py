"""Pure parsers for /etc/passwd and /etc/group (the users, groups, user_groups tables)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GroupEntry", "PasswdEntry", "parse_group", "parse_passwd", "signed32"]


@dataclass(frozen=True, slots=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    gecos: str
    home: str
    shell: str


@dataclass(frozen=True, slots=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


def signed32(value: int) -> int:
    """``value`` as a C int32 (osquery's uid_signed/gid_signed: 4294967294 -> -2)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _is_entry(line: str) -> bool:
    # Blank lines, comments and NIS compat entries (+name, -name) are not local accounts.
    return bool(line) and line[0] not in "#+-"


def parse_passwd(text: str) -> list[PasswdEntry]:
    """Entries of a passwd(5) file; lines with too few fields or a bad uid/gid are skipped."""
    entries = []
    for line in text.split("\n"):
        line = line.strip()
        if not _is_entry(line):
            continue
        fields = line.split(":")
        if len(fields) < 7:
            continue
        try:
            uid, gid = int(fields[2]), int(fields[3])
        except ValueError:
            continue
        entries.append(PasswdEntry(fields[0], uid, gid, fields[4], fields[5], ":".join(fields[6:])))
    return entries


def parse_group(text: str) -> list[GroupEntry]:
    """Entries of a group(5) file; the member list may be missing or empty."""
    entries = []
    for line in text.split("\n"):
        line = line.strip()
        if not _is_entry(line):
            continue
        fields = line.split(":")
        if len(fields) < 3:
            continue
        try:
            gid = int(fields[2])
        except ValueError:
            continue
        members = tuple(m.strip() for m in fields[3].split(",") if m.strip()) if len(fields) > 3 else ()
        entries.append(GroupEntry(fields[0], gid, members))
    return entries
