"""suid_bin: setuid/setgid files in osquery's fixed list of binary directories."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

from ._accounts import parse_group, parse_passwd
from ._files import namespace_views, read_text
from .spec import Column, HostPaths, QueryContext, Row, TableSpec

__all__ = ["SEARCH_PATHS", "SPEC", "generate", "permission_flags"]

#: The directories osquery searches (recursively; symlinked subdirectories are not entered).
SEARCH_PATHS = ("/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin", "/tmp")


def permission_flags(mode: int) -> str:
    """``S`` for setuid, ``G`` for setgid (osquery's permissions column), e.g. ``SG``."""
    return ("S" if mode & stat.S_ISUID else "") + ("G" if mode & stat.S_ISGID else "")


def _names(paths: HostPaths) -> tuple[dict[int, str], dict[int, str]]:
    users = {e.uid: e.name for e in parse_passwd(read_text(paths.host("/etc/passwd")) or "")}
    groups = {e.gid: e.name for e in parse_group(read_text(paths.host("/etc/group")) or "")}
    return users, groups


def _walk(top: str, context: QueryContext) -> Iterator[tuple[str, os.stat_result]]:
    """(path, stat) of every entry below ``top``; symlinks are followed for files only."""
    stack = [top]
    while stack:
        context.check_deadline()
        directory = stack.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            try:
                st = entry.stat()  # follows symlinks, as osquery's stat() does
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if not entry.is_symlink():
                    subdirs.append(entry.path)
                continue
            yield entry.path, st
        stack.extend(reversed(subdirs))


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per regular file with the setuid or setgid bit."""
    for pid_ns, paths in namespace_views(context):
        users, groups = _names(paths)
        prefix = paths.host("/").rstrip("/")
        for top in SEARCH_PATHS:
            for full, st in _walk(paths.host(top), context):
                if not stat.S_ISREG(st.st_mode) or not st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                    continue
                yield {
                    "path": full[len(prefix) :] if prefix else full,
                    "username": users.get(st.st_uid, str(st.st_uid)),
                    "groupname": groups.get(st.st_gid, str(st.st_gid)),
                    "permissions": permission_flags(st.st_mode),
                    "pid_with_namespace": pid_ns,
                }


SPEC = TableSpec(
    name="suid_bin",
    description="suid binaries in common locations.",
    columns=(
        Column("path", "TEXT", "Binary path"),
        Column("username", "TEXT", "Binary owner username"),
        Column("groupname", "TEXT", "Binary owner group"),
        Column("permissions", "TEXT", "Binary permissions"),
        Column("pid_with_namespace", "INTEGER", "Pids that contain a namespace", hidden=True, additional=True),
    ),
    generate=generate,
    examples=("SELECT path, username, permissions FROM suid_bin WHERE username = 'root'",),
)
