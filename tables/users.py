"""users: local user accounts from /etc/passwd (osquery's Linux users table)."""

from __future__ import annotations

import pwd
from collections.abc import Iterator

from ._accounts import PasswdEntry, parse_passwd, signed32
from ._files import namespace_views, read_text
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["SPEC", "generate"]


def _remote_entries() -> list[PasswdEntry]:
    """Every account NSS knows (files, LDAP, sssd, ...): osquery's include_remote = 1."""
    return [PasswdEntry(p.pw_name, p.pw_uid, p.pw_gid, p.pw_gecos, p.pw_dir, p.pw_shell) for p in pwd.getpwall()]


def generate(context: QueryContext) -> Iterator[Row]:
    """Rows of /etc/passwd (or NSS with include_remote = 1), filtered by uid/username."""
    uids = context.values("uid")
    names = context.values("username")
    remote = 1 in (context.values("include_remote") or ())
    for pid_ns, paths in namespace_views(context):
        if remote and pid_ns == 0 and paths.root in ("", "/"):
            entries = _remote_entries()
        else:
            text = read_text(paths.host("/etc/passwd"))
            entries = parse_passwd(text) if text is not None else []
        for e in entries:
            if uids is not None and e.uid not in uids:
                continue
            if names is not None and e.name not in names:
                continue
            yield {
                "uid": e.uid,
                "gid": e.gid,
                "uid_signed": signed32(e.uid),
                "gid_signed": signed32(e.gid),
                "username": e.name,
                "description": e.gecos,
                "directory": e.home,
                "shell": e.shell,
                "uuid": "",
                "pid_with_namespace": pid_ns,
                "include_remote": 1 if remote else 0,
            }


SPEC = TableSpec(
    name="users",
    description="Local user accounts from /etc/passwd.",
    columns=(
        Column("uid", "BIGINT", "User ID", index=True),
        Column("gid", "BIGINT", "Group ID (unsigned)"),
        Column("uid_signed", "BIGINT", "User ID as int64 signed (Apple)"),
        Column("gid_signed", "BIGINT", "Default group ID as int64 signed (Apple)"),
        Column("username", "TEXT", "Username", additional=True),
        Column("description", "TEXT", "Optional user description"),
        Column("directory", "TEXT", "User's home directory"),
        Column("shell", "TEXT", "User's configured default shell"),
        Column("uuid", "TEXT", "User's UUID (Apple) or SID (Windows)", index=True),
        Column("type", "TEXT", "Whether the account is roaming (domain), local, or a system profile", hidden=True),
        Column("is_hidden", "INTEGER", "IsHidden attribute set in OpenDirectory", hidden=True),
        Column("pid_with_namespace", "INTEGER", "Pids that contain a namespace", hidden=True, additional=True),
        Column(
            "include_remote",
            "INTEGER",
            "1 to include remote (LDAP/AD) accounts (default 0)",
            hidden=True,
            additional=True,
        ),
    ),
    generate=generate,
    examples=(
        "SELECT uid, username, shell FROM users WHERE uid >= 1000",
        "SELECT * FROM users WHERE username = 'root'",
    ),
)
