"""Reading the host's small config files, and osquery's ``pid_with_namespace`` roots.

Shared by the file-backed tables (users, groups, etc_hosts, os_version, deb_packages,
crontab, ...).  Missing files read as None; the caller decides what "missing" means.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace

from ._paths import expand
from .spec import HostPaths, QueryContext
from .text import decode

__all__ = [
    "Namespace",
    "directory_entries",
    "list_files",
    "mount_namespace_id",
    "namespace_views",
    "namespaces",
    "query_paths",
    "read_bytes",
    "read_text",
]

log = logging.getLogger(__name__)


def read_bytes(path: str) -> bytes | None:
    """The file's bytes, or None when it is missing, unreadable or not a regular file."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError):
        return None


def read_text(path: str) -> str | None:
    """The file as text (bytes that are not UTF-8 kept: :func:`tables.text.decode`), or None if unreadable."""
    data = read_bytes(path)
    return None if data is None else decode(data)


def list_files(directory: str) -> list[str]:
    """Regular files directly in ``directory``, sorted by name; [] when it is missing."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []
    out = []
    for entry in entries:
        try:
            if entry.is_file():
                out.append(entry.path)
        except OSError:
            continue
    return out


def mount_namespace_id(paths: HostPaths, pid: int | str = "self") -> str | None:
    """The inode of ``pid``'s mount namespace (``mnt:[4026531840]`` -> ``4026531840``)."""
    try:
        link = os.readlink(os.path.join(paths.proc, str(pid), "ns", "mnt"))
    except OSError:
        return None
    start, end = link.find("["), link.rfind("]")
    return link[start + 1 : end] if 0 <= start < end else None


def namespace_views(context: QueryContext) -> Iterator[tuple[int, HostPaths]]:
    """(pid_with_namespace, paths) pairs the query asks for, osquery style.

    Without a ``pid_with_namespace`` constraint: one view, ``(0, context.paths)``.
    With one: for each pid, the files as that process sees them (``/proc/<pid>/root``);
    pids that do not exist are skipped.
    """
    pids = context.values("pid_with_namespace")
    if not pids:
        yield 0, context.paths
        return
    for pid in sorted(p for p in pids if isinstance(p, int) and p > 0):
        root = os.path.join(context.paths.proc, str(pid), "root")
        if os.path.isdir(root):
            yield pid, replace(context.paths, root=root)


@dataclass(frozen=True, slots=True)
class Namespace:
    """Where ``file``/``hash`` resolve paths: the host (prefix ``""``) or a process's mount namespace."""

    prefix: str  # prepended to every path: ``/proc/<pid>/root`` or ""
    pid: int  # osquery's pid_with_namespace (0: the agent's own namespace)
    mount_namespace_id: str | None


def namespaces(context: QueryContext) -> list[Namespace]:
    """:func:`namespace_views` as path prefixes, for tables that take absolute paths from the query.

    ``pid_with_namespace = 0`` names the agent's own namespace; a vanished or inaccessible
    pid is skipped.
    """
    pids = context.values("pid_with_namespace")
    if not pids:
        return [Namespace("", 0, None)]
    found: list[Namespace] = [Namespace("", 0, None)] if 0 in pids else []
    for pid in sorted(p for p in pids if isinstance(p, int) and p > 0):
        ns_id = mount_namespace_id(context.paths, pid)
        if ns_id is not None:
            found.append(Namespace(os.path.join(context.paths.proc, str(pid), "root"), pid, ns_id))
    return found


def query_paths(
    context: QueryContext, ns: Namespace, column: str, *, folders: bool = True, files: bool = True
) -> list[str]:
    """The paths the query names in ``column`` (``=``/``IN`` values, LIKE patterns expanded inside ``ns``).

    As the query sees them (without the namespace's root prefix), sorted, each once;
    ``folders``/``files`` keep only directories or only files among the LIKE matches.
    """
    found = {v for v in context.values(column) or () if isinstance(v, str) and v}
    for pattern in context.likes.get(column, ()):
        for match in expand(ns.prefix + pattern, folders=folders, files=files, check=context.check_deadline):
            found.add(match[len(ns.prefix) :])
    return sorted(found)


def directory_entries(context: QueryContext, ns: Namespace, directories: list[str]) -> Iterator[tuple[str, str]]:
    """(path, directory) of every entry directly inside each directory, by name; unlistable ones are skipped."""
    for directory in directories:
        try:
            names = sorted(os.listdir(ns.prefix + directory))
        except OSError as exc:  # not a directory, unreadable, vanished
            log.debug("%s: cannot list %s: %s", context.table, directory, exc)
            continue
        for name in names:
            context.check_deadline()
            yield (directory + name if directory.endswith("/") else f"{directory}/{name}"), directory
